"""A thin Python client: NumPy arrays in, typed results with NumPy arrays out.

    >>> import numpy as np
    >>> from service.client import Client
    >>> with Client("http://127.0.0.1:8000") as client:                  # doctest: +SKIP
    ...     r = client.penalty(np.full((2, 2, 4), 3, np.float32), {"type": "l1", "l1": 0.1})
    >>> r.penalty, r.gradient.shape                                      # doctest: +SKIP
    (4.8, (2, 2, 4))

Bodies are safetensors both ways by default (``format="safetensors"``: raw little-endian
bytes, no text encoding at all); ``format="json"`` sends and asks for b64 tensors in JSON
(pybase64, orjson); the request's and the answer's text live in two buffers kept per
thread, up to 64 MiB each (:mod:`service.client.jsonbody`), so a JSON call allocates no more
fresh memory than the arrays it returns.  Arrays keep their dtype when it is float16/32/64; any other dtype is
sent as float32 (what a JSON nested array means).  Every error answer raises
:class:`ServiceError` carrying the envelope.

It needs only ``httpx``, ``numpy``, ``orjson``, ``pybase64``, ``pydantic_core`` (its JSON
parser) and :mod:`service.wire` (nothing server-side).  ``http=`` takes any ``httpx.Client`` (e.g. Starlette's
``TestClient(app)`` to call an app in process).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import numpy as np
import orjson

from service.client import jsonbody
from service.client.transport import READ_INTO, SocketTransport, joined
from service.wire import safetensors

Format = Literal["safetensors", "json"]
Spec = str | Mapping[str, Any]
Gradients = dict[str, dict[str, np.ndarray]]
_DTYPES: dict[str, np.dtype[Any]] = {"FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
_NAMES = {np.dtype(v.newbyteorder("=")): k for k, v in _DTYPES.items()}


class ServiceError(Exception):
    """An error answer: ``status``, and the envelope's ``code``, ``message``, ``details``."""

    def __init__(self, status: int, envelope: Mapping[str, Any]) -> None:
        error = envelope.get("error", {}) if isinstance(envelope, Mapping) else {}
        self.status = status
        self.envelope = dict(envelope) if isinstance(envelope, Mapping) else {}
        self.code: str = error.get("code", "unknown")
        self.message: str = error.get("message", "")
        self.details: list[dict[str, Any]] = list(error.get("details", []))
        super().__init__(f"{status} {self.code}: {self.message}")


@dataclass(frozen=True)
class PenaltyResult:
    penalty: float
    gradient: np.ndarray | None
    regularizer: dict[str, Any]


@dataclass(frozen=True)
class PenaltiesResult:
    penalties: dict[str, float]
    total: float
    gradients: dict[str, np.ndarray] | None


@dataclass(frozen=True)
class DenseResult:
    outputs: np.ndarray
    losses: dict[str, float]
    gradients: Gradients | None
    input_gradients: dict[str, np.ndarray] | None


@dataclass(frozen=True)
class NetworkResult:
    outputs: np.ndarray
    losses: dict[str, float]
    gradients: Gradients | None
    #: the weighted per-sample data losses, for a loss with ``reduction: "none"``
    data_loss_values: np.ndarray | None = None


@dataclass(frozen=True)
class ModelResult:
    outputs: np.ndarray
    losses: dict[str, float]
    layers: list[dict[str, Any]]
    gradients: Gradients | None
    diagnostics: list[dict[str, str]]
    #: layer outputs by layer name (``return_layer_outputs=True``)
    layer_outputs: dict[str, np.ndarray] | None = None
    #: training mode: BatchNormalization's updated moving statistics by weight path
    updates: dict[str, np.ndarray] | None = None
    data_loss_values: np.ndarray | None = None


def http_client(base_url: str, *, timeout: float = 120.0, **kwargs: Any) -> httpx.Client:
    """The ``httpx.Client`` :class:`Client` uses: ``http://`` over
    :class:`~service.client.transport.SocketTransport` (one buffered read per answer,
    TCP_NODELAY so that the request's pieces are not held back by Nagle's algorithm),
    ``https://`` over httpx's own transport, also with TCP_NODELAY."""
    return httpx.Client(base_url=base_url, timeout=timeout, transport=_socket_transport(), **kwargs)


def _socket_transport() -> SocketTransport:
    tls = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    return SocketTransport(fallback=tls)


@dataclass(frozen=True)
class _Direct:
    """Where :class:`Client` posts on its own ``http://`` transport, past ``httpx.Client``'s
    per-request machinery (URL merging, cookies, hooks, request and response objects)."""

    transport: SocketTransport
    address: tuple[str, int]
    prefix: str  # the base URL's path
    host: bytes  # the Host header
    timeouts: dict[str, float | None]

    @staticmethod
    def of(transport: SocketTransport, http: httpx.Client) -> _Direct | None:
        """For ``http``, made with ``transport`` and nothing else; None for an ``https://``
        base URL (httpx's own transport carries those)."""
        url = http.base_url
        if url.scheme != "http":
            return None
        return _Direct(transport, (url.host, url.port or 80), url.raw_path.decode("ascii").rstrip("/"),
                       url.netloc, http.timeout.as_dict())


class Client:
    """``Client(base_url)``: one method per compute route; see the module docstring."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        format: Format = "safetensors",
        timeout: float = 120.0,
        http: httpx.Client | None = None,
    ) -> None:
        if format not in ("safetensors", "json"):
            raise ValueError(f"format must be 'safetensors' or 'json', got {format!r}")
        self.format = format
        self._direct: _Direct | None = None
        if http is None:  # its own transport, which also takes its POSTs directly
            transport = _socket_transport()
            http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)
            self._direct = _Direct.of(transport, http)
        self.http = http
        self._buffers = jsonbody.Buffers()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # ----------------------------------------------------------------------- routes

    def penalty(self, tensor: Any, regularizer: Spec, *, return_gradient: Any = True) -> PenaltyResult:
        """``POST /v1/penalty``: the penalty of ``tensor`` and its gradient."""
        body = {"tensor": _array(tensor), "regularizer": regularizer, "return_gradient": return_gradient}
        doc, tensors = self.post("/v1/penalty", body)
        return PenaltyResult(doc["penalty"], tensors.get("gradient"), doc["regularizer"])

    def penalties(
        self, weights: Mapping[str, tuple[Any, Spec]], *, return_gradients: Any = True
    ) -> PenaltiesResult:
        """``POST /v1/penalties``: ``weights`` maps a name to ``(tensor, regularizer)``."""
        body = {
            "weights": {n: {"tensor": _array(t), "regularizer": r} for n, (t, r) in weights.items()},
            "return_gradients": return_gradients,
        }
        doc, tensors = self.post("/v1/penalties", body)
        grads = None if doc.get("gradients") is None else _under(tensors, "gradients.")
        return PenaltiesResult(doc["penalties"], doc["total"], grads)

    def dense(
        self,
        inputs: Any,
        kernel: Any,
        bias: Any = None,
        *,
        activation: Spec | None = None,
        kernel_regularizer: Spec | None = None,
        bias_regularizer: Spec | None = None,
        activity_regularizer: Spec | None = None,
        activity_normalization: str = "batch",
        return_gradients: Any = True,
    ) -> DenseResult:
        """``POST /v1/dense``: one Dense layer's outputs, penalty terms and their gradients."""
        body = _without_none({
            "inputs": _array(inputs), "kernel": _array(kernel),
            "bias": None if bias is None else _array(bias), "activation": activation,
            "kernel_regularizer": kernel_regularizer, "bias_regularizer": bias_regularizer,
            "activity_regularizer": activity_regularizer,
            "activity_normalization": activity_normalization, "return_gradients": return_gradients,
        })
        doc, tensors = self.post("/v1/dense", body)
        return DenseResult(
            tensors["outputs"], doc["losses"],
            _gradients(doc, tensors),
            None if doc.get("input_gradients") is None else _under(tensors, "input_gradients."),
        )

    def network(
        self,
        inputs: Any,
        targets: Any,
        layers: Sequence[Mapping[str, Any]],
        loss: Spec = "mean_squared_error",
        *,
        sample_weight: Any = None,
        activity_normalization: str = "batch",
        return_gradients: Any = True,
    ) -> NetworkResult:
        """``POST /v1/network``: ``layers`` as API.md (``kernel``, ``bias`` arrays; specs)."""
        body = _without_none({
            "inputs": _array(inputs), "targets": _array(targets),
            "layers": [
                {k: (_array(v) if k in ("kernel", "bias") else v) for k, v in layer.items() if v is not None}
                for layer in layers
            ],
            "loss": loss, "sample_weight": None if sample_weight is None else _array(sample_weight),
            "activity_normalization": activity_normalization, "return_gradients": return_gradients,
        })
        doc, tensors = self.post("/v1/network", body)
        return NetworkResult(tensors["outputs"], doc["losses"], _gradients(doc, tensors), tensors.get("data_loss_values"))

    def model(
        self,
        model: Mapping[str, Any],
        weights: Mapping[str, Any],
        inputs: Any,
        targets: Any = None,
        loss: Spec | None = None,
        *,
        sample_weight: Any = None,
        training: bool = False,
        activity_normalization: str = "batch",
        return_gradients: Any = True,
        return_layer_outputs: bool = False,
    ) -> ModelResult:
        """``POST /v1/model``: ``model`` as ``json.loads(model.to_json())``, ``weights`` by
        ``"<layer>/<weight>"``, ``inputs`` one array or one per input layer by name."""
        body = _without_none({
            "model": model, "weights": {name: _array(w) for name, w in weights.items()},
            "inputs": {n: _array(x) for n, x in inputs.items()} if isinstance(inputs, Mapping) else _array(inputs),
            "targets": None if targets is None else _array(targets), "loss": loss,
            "sample_weight": None if sample_weight is None else _array(sample_weight),
            "training": training, "activity_normalization": activity_normalization,
            "return_gradients": return_gradients, "return_layer_outputs": return_layer_outputs,
        })
        doc, tensors = self.post("/v1/model", body)
        return ModelResult(
            tensors["outputs"], doc["losses"], doc["layers"], _gradients(doc, tensors), doc["diagnostics"],
            None if doc.get("layer_outputs") is None else _under(tensors, "layer_outputs."),
            _under(tensors, "updates."), tensors.get("data_loss_values"),
        )

    # ----------------------------------------------------------------------- transport

    def train(
        self, request: Mapping[str, Any], *, on_progress: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """``POST /v1/train`` (a JSON body as API.md shows it), streamed as Server-Sent Events
        on this client's connection: ``on_progress`` gets each progress event (``step``,
        ``steps``, ``epoch``, ``losses``); the result is the run's JSON answer.  Errors raise
        :class:`ServiceError` (:class:`~service.client.training.TrainError`)."""
        from service.client import training

        return training.train("", dict(request), on_progress=on_progress, http=self.http)

    def post(self, path: str, body: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """POST ``body`` (arrays anywhere in it) -> ``(the rest of the answer, its arrays by
        dot-joined path)``; raises :class:`ServiceError` for an error answer."""
        handed: list[memoryview] = []  # the kept buffer an answer was read into
        into = None
        if self.format == "safetensors":
            tensors, rest = safetensors.flatten(body)
            pieces = safetensors.parts(tensors, {"json": orjson.dumps(rest).decode()})
            content: Any = _coalesced(pieces)  # large arrays are sent from their own memory
            headers = {"Content-Type": safetensors.MEDIA_TYPE, "Accept": safetensors.MEDIA_TYPE,
                       "Content-Length": str(sum(len(p) for p in pieces))}
        else:  # written into and read from this thread's kept buffers (jsonbody)
            text = jsonbody.encode({**_little(body), "encoding": "b64"}, _NAMES, self._buffers)
            content = [text]
            headers = {"Content-Type": "application/json", "Accept": "application/json",
                       "Content-Length": str(len(text))}
            into = lambda n: _kept(handed, self._buffers.get("answer", n))  # noqa: E731
        try:
            status, reason, content_type, data = self._send(path, headers, content, into)
            if status >= 400:
                raise ServiceError(status, _error_body(data, reason))
            if content_type.startswith(safetensors.MEDIA_TYPE):
                tensors, metadata = safetensors.read(bytes(data) if handed else data)
                return orjson.loads(metadata.get("json", "{}")), tensors
            if handed and data is handed[0]:  # the kept buffer's first len(data) bytes
                kept: Any = handed[0].obj
                return jsonbody.decode(kept, len(data), _DTYPES)
            return jsonbody.decode(bytes(data), len(data), _DTYPES)
        finally:  # the request and the answer (in httpx's cycle) let go of the bodies' memory now
            content.clear()
            handed.clear()

    def _send(self, path: str, headers: dict[str, str], content: list[Any],
              into: Any) -> tuple[int, str, str, Any]:
        """``(status, reason, content type, body)`` of a POST of ``content``."""
        direct = self._direct
        if direct is not None:
            raw = [(b"Host", direct.host), *((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())]
            status, reason, answer, data = direct.transport.post(direct.address, direct.prefix + path, raw, content,
                                                                 direct.timeouts, into)
            return status, reason, answer.get("content-type", ""), data
        extensions = {READ_INTO: into} if into is not None else {}
        with self.http.stream("POST", path, content=content, headers=headers, extensions=extensions) as response:
            # read past response.content: httpx's Response is part of a reference cycle, so
            # what it holds outlives the call until the garbage collector runs
            data = response.content if response.is_stream_consumed else joined(list(response.iter_bytes()))
            return response.status_code, response.reason_phrase, response.headers.get("content-type", ""), data


# --------------------------------------------------------------------------- helpers


def _array(value: Any) -> np.ndarray:
    array = np.asarray(value)
    return array if array.dtype in _NAMES else array.astype(np.float32)


def _coalesced(pieces: Sequence[Any], small: int = 1 << 16) -> list[Any]:
    """Runs of small pieces joined (fewer sends); large ones kept as they are (no copy)."""
    out: list[Any] = []
    pending: list[Any] = []
    for piece in pieces:
        if len(piece) < small:
            pending.append(piece)
            continue
        if pending:
            out.append(b"".join(pending))
            pending = []
        out.append(piece)
    if pending:
        out.append(b"".join(pending))
    return out


def _without_none(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


def _little(value: Any) -> Any:
    """``value`` with each array little-endian and C-contiguous (what b64 text encodes)."""
    if isinstance(value, np.ndarray):
        return np.ascontiguousarray(value, dtype=_DTYPES[_NAMES[value.dtype]])
    if isinstance(value, Mapping):
        return {k: _little(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_little(v) for v in value]
    return value


def _kept(handed: list[memoryview], view: memoryview) -> memoryview:
    handed.append(view)
    return view


def _gradients(doc: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> Gradients | None:
    """``gradients[parameter][term]`` of an answer (None when none were asked for)."""
    return None if doc.get("gradients") is None else _by_term(_under(tensors, "gradients."), doc["gradients"])


def _under(tensors: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {name[len(prefix):]: t for name, t in tensors.items() if name.startswith(prefix)}


def _by_term(flat: Mapping[str, np.ndarray], parameters: Mapping[str, Any]) -> Gradients:
    """``{"<parameter>.<term>": array}`` -> ``{parameter: {term: array}}``; a parameter is
    ``kernel``/``bias``/``inputs`` or ``<layer>/kernel``: its end is the first dot after
    its last ``/`` segment starts (layer names hold no ``/``)."""
    out: Gradients = {p: {} for p in parameters}  # those whose selected terms are none
    for name, array in flat.items():
        slash = name.find("/")
        dot = name.index(".", slash + 1 if slash >= 0 else 0)
        out.setdefault(name[:dot], {})[name[dot + 1:]] = array
    return out


def _error_body(data: Any, reason: str) -> dict[str, Any]:
    """The envelope of an error answer; one made up from its text for any other body."""
    raw = bytes(data)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body
    message = raw[:200].decode("utf-8", "replace") or reason
    return {"error": {"code": "http_error", "message": message, "details": []}}


__all__ = [
    "Client",
    "DenseResult",
    "ModelResult",
    "NetworkResult",
    "PenaltiesResult",
    "PenaltyResult",
    "ServiceError",
    "http_client",
]
