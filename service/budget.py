"""The cost model and admission control: a request is priced before any work starts.

Two budgets, both settings (``service.config``):

* **Cost of one request** — :func:`price` turns a *validated* request model (its
  shapes and specs, nothing computed yet) into a :class:`Cost`: ``work`` (element
  operations, roughly multiply-adds and element passes) and ``bytes`` (the memory the
  computation and its encoded response hold at their peak, an upper estimate).  Over
  ``PENALTY_MAX_WORK`` or ``PENALTY_MAX_WORK_BYTES`` it is a 413 ``too_expensive``
  naming the field and the numbers (:func:`charge`).
* **Admission of one worker** — :class:`Admission` counts the requests being served
  and the bytes they may hold: ``Content-Length × PENALTY_BODY_MEMORY_FACTOR`` (a JSON
  body becomes Python objects several times its size while it is parsed) plus the
  priced ``Cost.bytes``.  A request that does not fit is a 503 ``overloaded`` with
  ``Retry-After``, before its body is read when it declares its length
  (:class:`AdmissionControl`, an ASGI middleware that never buffers a response).

How to price something new (the hook)
-------------------------------------
* A new regularizer, activation or loss: add its class to :data:`SPEC_COSTS`, a
  function ``(spec, shape, itemsize) -> Cost`` for one tensor of ``shape``.  Unlisted classes cost
  :data:`DEFAULT_PER_ELEMENT` per element.
* A new request model: decorate ``def f(model) -> Cost`` with ``@prices(ModelClass)``
  (the routes' own pricers are in ``service/pricing.py``).
  A model with no pricer is priced by :func:`default_price`: every tensor it holds, at
  the cost of decoding, echoing and differentiating it once (so a new route is bounded
  from its first day, if roughly).
* A route whose validated body is a model gets all this from ``WireRoute``
  (``service.api.routing``), which calls :func:`charge` before the endpoint runs.

    >>> from service.core.regularizers import Orthogonal, L1
    >>> cost_of(Orthogonal(), (20000, 3)).work > 10**9      # n²·d: priced, not computed
    True
    >>> cost_of(Orthogonal(), (10**6, 1)).work               # one column: the O(n) form
    12000000
    >>> cost_of(L1(), (2, 2, 4), itemsize=4)               # 16 elements, 2 float32 temporaries
    Cost(work=96, bytes=128)
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import errors
from service.core import regularizers
from service.core.activations import Activation
from service.core.losses import Loss
from service.observability import header

#: Bytes of one element at work when the dtype is not known (float64 at worst).
ELEMENT = 8
#: Work and whole arrays of temporaries per element of a spec with no entry in :data:`SPEC_COSTS`.
DEFAULT_PER_ELEMENT = (30, 4)


def work_itemsize(x: np.ndarray) -> int:
    """Bytes of one element of ``x`` at work: float16 and float32 work in float32."""
    return 8 if x.dtype == np.float64 else 4


def encoded(itemsize: int, encoding: Any = "json") -> int:
    """Bytes of one answered element: orjson's shortest repr and a comma (at most 16
    characters for float32, 25 for float64), or b64 (the raw bytes and 4/3 of them)."""
    if str(getattr(encoding, "value", encoding)) == "b64":
        return itemsize + (4 * itemsize + 2) // 3
    return 16 if itemsize <= 4 else 25

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Cost:
    """Work (element operations) and peak bytes; costs of parts add up (an upper bound)."""

    work: int = 0
    bytes: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.work + other.work, self.bytes + other.bytes)

    def __mul__(self, k: int) -> Cost:
        return Cost(self.work * k, self.bytes * k)


def elements(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


# --------------------------------------------------------------------------- specs


SpecCost = Callable[[Any, tuple[int, ...], int], Cost]


def _elementwise(work: int, arrays: int) -> SpecCost:
    """``work`` operations and ``arrays`` temporaries the size of the tensor, per element."""

    def cost(_: Any, shape: tuple[int, ...], itemsize: int) -> Cost:
        n = elements(shape)
        return Cost(work * n, arrays * itemsize * n)

    return cost


def _orthogonal(spec: regularizers.Orthogonal, shape: tuple[int, ...], itemsize: int) -> Cost:
    """Rows ``n`` and columns ``d`` of the oriented tensor: ``V Vᵀ`` in row blocks of at
    most ``ORTHOGONAL_BLOCK_ELEMENTS`` for the penalty and again for the gradient
    (2·n²·d multiply-adds, ~4 passes over n² elements), or the O(n) form when ``d = 1``."""
    if len(shape) != 2:
        return Cost(elements(shape), itemsize * elements(shape))  # refused by the core
    n, d = shape if spec.mode == "rows" else shape[::-1]
    if d == 1 or n < 2:
        return Cost(12 * n, 6 * 8 * n)  # the sums run in float64
    block = min(n * n, max(regularizers.ORTHOGONAL_BLOCK_ELEMENTS, n))
    return Cost(2 * n * n * d + 4 * n * n, 6 * itemsize * n * d + 2 * itemsize * block)


#: spec class -> ``(spec, shape, itemsize) -> Cost`` of applying it (value and gradient)
#: to one tensor whose elements take ``itemsize`` bytes at work.
SPEC_COSTS: dict[type, SpecCost] = {
    regularizers.L1: _elementwise(6, 2),
    regularizers.L2: _elementwise(6, 2),
    regularizers.L1L2: _elementwise(10, 3),
    regularizers.Orthogonal: _orthogonal,
    Activation: _elementwise(40, 4),
    Loss: _elementwise(40, 4),
}


def cost_of(spec: Any, shape: tuple[int, ...], itemsize: int = ELEMENT) -> Cost:
    """The cost of ``spec`` (a core regularizer, activation or loss) on one tensor."""
    if spec is None:
        return Cost()
    for cls in type(spec).__mro__:
        if cls in SPEC_COSTS:
            return SPEC_COSTS[cls](spec, shape, itemsize)
    return _elementwise(*DEFAULT_PER_ELEMENT)(spec, shape, itemsize)


# --------------------------------------------------------------------------- requests

PRICERS: dict[type[BaseModel], Callable[[Any], Cost]] = {}


def prices(model: type[M]) -> Callable[[Callable[[M], Cost]], Callable[[M], Cost]]:
    """``@prices(SomeRequest)`` registers ``f(request) -> Cost`` as that model's pricer."""

    def register(f: Callable[[M], Cost]) -> Callable[[M], Cost]:
        PRICERS[model] = f
        return f

    return register


def tensors(value: Any) -> Iterator[np.ndarray]:
    """Every array a validated model holds, at any depth."""
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from tensors(getattr(value, name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from tensors(item)


def default_price(model: BaseModel) -> Cost:
    """Decoding, one pass and a gradient-sized answer for each tensor of ``model``."""
    n = sum(t.size for t in tensors(model))
    return Cost(10 * n, (3 * ELEMENT + encoded(ELEMENT)) * n)


def price(model: BaseModel) -> Cost:
    """The cost of serving ``model`` (its registered pricer, else :func:`default_price`)."""
    for cls in type(model).__mro__:
        if cls in PRICERS:
            return PRICERS[cls](model)
    return default_price(model)


def charge(model: BaseModel, max_work: int, max_bytes: int) -> Cost:
    """``price(model)``, or 413 ``too_expensive`` when it is over either limit."""
    cost = price(model)
    what = type(model).__name__
    if cost.work > max_work:
        raise errors.TooExpensive(
            f"the request ({what}) would take about {cost.work} element operations; the limit "
            f"is {max_work} (PENALTY_MAX_WORK): use smaller tensors or split the request",
            details=[{"loc": ["body"], "msg": f"work {cost.work} > {max_work}", "type": "too_expensive"}],
        )
    if cost.bytes > max_bytes:
        raise errors.TooExpensive(
            f"the request ({what}) would hold about {cost.bytes} bytes while computed; the limit "
            f"is {max_bytes} (PENALTY_MAX_WORK_BYTES): use smaller tensors or split the request",
            details=[{"loc": ["body"], "msg": f"bytes {cost.bytes} > {max_bytes}", "type": "too_expensive"}],
        )
    return cost


# --------------------------------------------------------------------------- admission


class Admission:
    """The budgets of one worker process: requests being served and bytes they may hold.

    Thread-safe: reservations are made on the event loop (at admission) and from the
    threadpool (a request's priced cost, after validation).
    """

    def __init__(self, max_requests: int, max_bytes: int, retry_after: int) -> None:
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.retry_after = retry_after
        self.requests = 0
        self.bytes = 0
        self._lock = threading.Lock()

    def saturated(self) -> bool:
        """No room for one more request."""
        return self.requests >= self.max_requests or self.bytes >= self.max_bytes

    def overloaded(self, why: str) -> errors.Overloaded:
        return errors.Overloaded(
            f"the service is at capacity ({why}); retry after {self.retry_after} s",
            headers={"Retry-After": str(self.retry_after)},
        )

    def enter(self, nbytes: int) -> None:
        with self._lock:
            if self.requests >= self.max_requests:
                raise self.overloaded(f"{self.requests} of {self.max_requests} requests in progress")
            if self.bytes + nbytes > self.max_bytes:
                raise self.overloaded(self._bytes_message(nbytes))
            self.requests += 1
            self.bytes += nbytes

    def reserve(self, nbytes: int) -> None:
        with self._lock:
            if self.bytes + nbytes > self.max_bytes:
                raise self.overloaded(self._bytes_message(nbytes))
            self.bytes += nbytes

    def leave(self, nbytes: int) -> None:
        with self._lock:
            self.requests -= 1
            self.bytes -= nbytes

    def _bytes_message(self, nbytes: int) -> str:
        return f"{self.bytes} of {self.max_bytes} bytes in flight, this request needs {nbytes}"


class Ticket:
    """One admitted request's reservation; ``reserve`` adds to it (released together)."""

    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self.bytes = 0

    def reserve(self, nbytes: int) -> None:
        self.admission.reserve(nbytes)
        self.bytes += nbytes


def worker_memory_bound(settings: Any, at_rest: int) -> int:
    """What one worker process and its offload pool may hold, for processes of ``at_rest``
    bytes each: the worker's admission budget (every admitted body × the memory factor,
    plus the priced cost of those served in the worker, plus the freed memory its two malloc
    arenas may keep, ``service.runtime.keep_freed_memory``), and for each pool process one
    request's priced work (the body's share is already in the budget)."""
    processes = settings.offload_processes
    kept = 2 * settings.malloc_keep_bytes
    return (1 + processes) * at_rest + settings.max_inflight_bytes + kept + processes * settings.max_work_bytes


#: Paths never refused for capacity: probes must answer while the worker is full.
EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})
#: Bytes every admitted request is charged, whatever its body (headers, objects, buffers).
PER_REQUEST = 64 * 1024
SCOPE_KEY = "penalty.ticket"
#: Where :func:`declared_length` keeps the parsed ``Content-Length`` for the next middleware.
LENGTH_KEY = "penalty.content_length"


def declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length`` (None when absent or not a number), parsed from the
    raw headers once per request: the body limit and admission control both need it.

        >>> declared_length({"headers": [(b"content-length", b"12")]}), declared_length({"headers": []})
        (12, None)
    """
    if LENGTH_KEY in scope:
        length: int | None = scope[LENGTH_KEY]
        return length
    value = header(scope, b"content-length")
    length = int(value) if value.isascii() and value.isdigit() else None
    scope[LENGTH_KEY] = length
    return length


class AdmissionControl:
    """ASGI middleware: admit a request under :class:`Admission`, or answer 503.

    With a ``Content-Length`` the decision is made before a byte is read (a refused body
    is then read and dropped chunk by chunk, never held, and the 503 sent after it);
    without one (chunked) it is reserved chunk by chunk and a chunk that does not fit
    ends the request with a 503.  The reservation is released when the response has
    been sent (for a streaming response, when the stream ends).  The :class:`Ticket`
    is in ``scope["penalty.ticket"]`` for the route to add the priced cost to.
    """

    def __init__(self, app: ASGIApp, admission: Admission, body_factor: int) -> None:
        self.app = app
        self.admission = admission
        self.body_factor = body_factor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        upfront = PER_REQUEST + (declared * self.body_factor if declared is not None else 0)
        try:
            self.admission.enter(upfront)
        except errors.Overloaded as exc:
            response = errors.error_response(exc.status_code, exc.code, exc.message, headers=exc.headers)
            await self._discard_body(receive)
            await response(scope, receive, send)
            return
        ticket = Ticket(self.admission)
        scope[SCOPE_KEY] = ticket

        async def counted() -> Message:
            message = await receive()
            if message.get("body"):
                ticket.reserve(len(message["body"]) * self.body_factor)
            return message

        try:  # a declared body was reserved whole: its chunks need no counting
            await self.app(scope, receive if declared is not None else counted, send)
        finally:
            self.admission.leave(upfront + ticket.bytes)

    async def _discard_body(self, receive: Receive) -> None:
        """Read and drop the refused request's body, one chunk at a time (nothing is held),
        before answering: a client that reads no response until it has sent its whole body
        would otherwise see the connection closed under it (uvicorn stops reading a request
        once its response is complete).  Bounded by the body limit (a larger declared body
        is a 413 first) and the body read timeout."""
        try:
            while True:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return
        except errors.ApiError:  # over the body limit or its read timeout: stop reading
            return


# The routes' pricers register themselves (imported last: they use the names above).
from service import pricing  # noqa: E402, F401
