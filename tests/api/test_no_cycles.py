"""No request leaves a reference cycle behind: whatever a cycle holds (a request's body,
its arrays, its answer) lives on until the cyclic garbage collector runs, and in a worker
that meant every answer's arrays piled up between collections (`python -m bench.worker
--base 038bbf0~1`: a worker answering Dense "totals" requests went from 92 to 383 MiB and
back, faulting each answer's pages in afresh).  Each route, JSON and safetensors, answers
and errors, is sent as ASGI calls to the whole app with the collector off; afterwards it
must find nothing to collect."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest

from service.app import create_app
from service.wire import safetensors
from tests.api.test_model import small_model, small_weights
from tests.conftest import make_settings

RNG = np.random.default_rng(3)
X = RNG.normal(size=(64, 32)).astype(np.float32)
K = RNG.normal(size=(32, 16)).astype(np.float32)
DENSE = {"inputs": X, "kernel": K, "bias": np.zeros(16, np.float32), "activation": "relu",
         "kernel_regularizer": {"type": "l1l2", "l1": 0.01, "l2": 0.01}, "activity_regularizer": "l1"}
REQUESTS: dict[str, tuple[str, dict[str, Any]]] = {
    "penalty": ("/v1/penalty", {"tensor": X, "regularizer": "l1"}),
    "penalties": ("/v1/penalties", {"weights": {"a": {"tensor": K, "regularizer": "l2"}}}),
    "dense": ("/v1/dense", DENSE),
    "dense totals": ("/v1/dense", {**DENSE, "return_gradients": "totals"}),
    "network": ("/v1/network", {"inputs": X, "targets": np.ones((64, 16), np.float32),
                                "layers": [{"kernel": K, "activation": "tanh", "kernel_regularizer": "l2"}]}),
    "model": ("/v1/model", {"model": small_model(kernel_regularizer={"class_name": "L2", "config": {"l2": 0.1}}),
                            "weights": {k: np.asarray(v, np.float32) for k, v in small_weights(0.5).items()},
                            "inputs": np.ones((2, 4), np.float32), "targets": np.ones((2, 1), np.float32),
                            "loss": "mse"}),
    "invalid spec (422)": ("/v1/penalty", {"tensor": X, "regularizer": "l3"}),
}


def body_of(form: str, document: dict[str, Any]) -> tuple[bytes, bytes]:
    """``(content type, body)`` of ``document`` in ``form``."""
    if form == "safetensors":
        tensors, rest = safetensors.flatten(document)
        return safetensors.MEDIA_TYPE.encode(), b"".join(
            bytes(p) for p in safetensors.parts(tensors, {"json": orjson.dumps(rest).decode()}))
    return b"application/json", orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)


async def call(app: Any, path: str, content_type: bytes, body: bytes, accept: bytes) -> int:
    pieces = [body[i:i + 65536] for i in range(0, len(body), 65536)] or [b""]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(pieces) - 1} for i, p in enumerate(pieces)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"test"), (b"content-type", content_type), (b"accept", accept),
                         (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    await app(scope, receive, send)
    return int(sent[0]["status"])


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.parametrize("form", ["json", "safetensors"])
@pytest.mark.parametrize("name", REQUESTS)
def test_a_request_leaves_no_reference_cycle(name: str, form: str, collector_off: None) -> None:
    app = create_app(make_settings())
    path, document = REQUESTS[name]
    content_type, body = body_of(form, document)
    accept = safetensors.MEDIA_TYPE.encode() if form == "safetensors" else b"application/json"

    async def requests() -> list[int]:
        return [await call(app, path, content_type, body, accept) for _ in range(3)]

    first = asyncio.run(requests())  # the first requests build caches that stay
    gc.collect()
    statuses = asyncio.run(requests())
    assert statuses == first and set(statuses) == {422 if "422" in name else 200}
    assert gc.collect() == 0
