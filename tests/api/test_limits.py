"""Limits from the settings: refused with a 413 (or 422 for rank) before any work is done."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

from fastapi.testclient import TestClient

from tests.api.test_errors import envelope

MakeClient = Callable[..., TestClient]
PENALTY = b'{"tensor": [1, 2, 3], "regularizer": "l1"}'


def too_large(message: str) -> dict[str, Any]:
    return envelope("payload_too_large", message, [])


def too_many(message: str) -> dict[str, Any]:
    return envelope("too_many_elements", message, [])


def test_declared_content_length_over_the_limit(make_client: MakeClient) -> None:
    client = make_client(max_body_bytes=len(PENALTY) - 1)
    response = client.post("/v1/penalty", content=PENALTY, headers={"Content-Type": "application/json"})
    assert (response.status_code, response.json()) == (413, too_large(
        f"the body has {len(PENALTY)} bytes; the limit is {len(PENALTY) - 1}: send smaller tensors, "
        "b64 instead of JSON numbers, or split the request"))


def test_body_at_the_limit_is_served(make_client: MakeClient) -> None:
    client = make_client(max_body_bytes=len(PENALTY))
    response = client.post("/v1/penalty", content=PENALTY, headers={"Content-Type": "application/json"})
    assert response.status_code == 200


def test_streamed_body_without_content_length_is_counted(make_client: MakeClient) -> None:
    client = make_client(max_body_bytes=1000)

    def chunks() -> Iterator[bytes]:
        yield b'{"tensor": ['
        for _ in range(500):
            yield b"1.0, "
        yield b'1.0], "regularizer": "l1"}'

    response = client.post("/v1/penalty", content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in response.request.headers
    assert (response.status_code, response.json()) == (413, too_large(
        "the body has more than 1000 bytes; the limit is 1000: send smaller tensors, "
        "b64 instead of JSON numbers, or split the request"))


def test_a_declared_shape_of_ten_billion_elements_is_refused_before_allocating(client: TestClient) -> None:
    """Nothing the size of the declared tensor is allocated: the peak of Python's and NumPy's
    allocations (tracemalloc; NumPy reports its buffers to it) while the request is served
    stays under 8 MiB, against 80 GB for the tensor."""
    for tensor in ({"shape": [100000, 100000], "data": [1.0]},
                   {"shape": [100000, 100000], "datatype": "FP64", "b64": "AAAAAAAA8D8="}):
        tracemalloc.start()
        try:
            response = client.post("/v1/penalty", json={"tensor": tensor, "regularizer": "l1"})
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 8 * 2**20, peak
        assert (response.status_code, response.json()) == (413, too_many(
            "shape [100000, 100000] has 10000000000 elements; the limit is 16777216 per tensor: "
            "send a smaller tensor or split the request"))


def test_an_empty_shape_with_an_enormous_axis_is_a_413_naming_the_axis(client: TestClient) -> None:
    """[0, 2**62, 2**62] has no elements, but NumPy cannot even describe it: refused by the
    wire's own check (not NumPy's 'array is too big' as a validation error)."""
    tensor = {"shape": [0, 2**62, 2**62], "datatype": "FP32", "data": []}
    response = client.post("/v1/penalty", json={"tensor": tensor, "regularizer": "l1"})
    assert (response.status_code, response.json()["error"]["code"]) == (413, "too_many_elements")
    assert f"shape[1] is {2**62}; one dimension is at most 16777216" in response.json()["error"]["message"]


def test_nested_tensor_over_the_element_limit(make_client: MakeClient) -> None:
    client = make_client(max_tensor_elements=10)
    response = client.post("/v1/penalty", json={"tensor": [[1, 2, 3, 4]] * 3, "regularizer": "l1"})
    assert (response.status_code, response.json()) == (413, too_many(
        "the array of shape [3, 4] has 12 elements; the limit is 10 per tensor: "
        "send a smaller tensor or split the request"))


def test_elements_of_a_request_add_up(make_client: MakeClient) -> None:
    client = make_client(max_tensor_elements=10, max_request_elements=15)
    weights = {name: {"tensor": [1.0] * 8, "regularizer": "l1"} for name in ("a", "b")}
    response = client.post("/v1/penalties", json={"weights": weights})
    assert (response.status_code, response.json()) == (413, too_many(
        "the array of shape [8] brings the request to 16 elements; the limit is 15 per request: "
        "split the request"))


def test_layer_outputs_count_before_computing(make_client: MakeClient) -> None:
    """(1000, 1) inputs times a (1, 1000) kernel would make a million outputs from 2000 numbers."""
    client = make_client(max_tensor_elements=10_000)
    response = client.post("/v1/dense", json={"inputs": [[1.0]] * 1000, "kernel": [[1.0] * 1000]})
    assert (response.status_code, response.json()) == (413, too_many(
        "the output of layer 0 (1000×1000) has 1000000 elements; the limit is 10000 per tensor: "
        "send a smaller tensor or split the request"))


def test_too_many_layers_is_refused_before_decoding_them(make_client: MakeClient) -> None:
    client = make_client(max_layers=2)
    body = {"inputs": [[1]], "targets": [[1]], "layers": [{"kernel": "not even a tensor"}] * 3}
    response = client.post("/v1/network", json=body)
    assert (response.status_code, response.json()) == (413, envelope(
        "too_many_layers", "the network has 3 layers; the limit is 2", []))


def test_nesting_limit_is_a_setting(make_client: MakeClient) -> None:
    client = make_client(max_nesting_depth=2)
    response = client.post("/v1/penalty", json={"tensor": [[[1]]], "regularizer": "l1"})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["msg"] == (
        "the array nests more than 2 levels deep; tensors have at most 2 dimensions")


# --- bounded echoes: whatever the client sends, the error body stays small -------------------


def test_a_long_unknown_field_name_is_clipped_in_loc_and_message(client: TestClient) -> None:
    name = "x" * 5000
    response = client.post("/v1/penalty", json={"tensor": [1], "regularizer": "l1", name: 1})
    clipped = "x" * 63 + "…"
    assert (response.status_code, response.json()) == (422, envelope(
        "unknown_field", f"body.{clipped}: unknown field; the fields are tensor, regularizer, return_gradient, encoding",
        [{"loc": ["body", clipped], "msg": "unknown field; the fields are tensor, regularizer, return_gradient, "
          "encoding", "type": "unknown_field"}]))


def test_a_megabyte_key_is_not_compared_for_a_hint(client: TestClient) -> None:
    """difflib on a 2 MB string would take seconds; a word that long is close to no field."""
    response = client.post("/v1/penalty", json={"tensor": [1], "regularizer": "l1", "y" * 2_000_000: 1})
    assert response.status_code == 422 and len(response.content) < 1000
    assert "did you mean" not in response.text


def test_thousands_of_errors_give_a_bounded_body(client: TestClient) -> None:
    weights = {f"w{i}": {"tensor": ["not a number"], "regularizer": "l1"} for i in range(3000)}
    response = client.post("/v1/penalties", json={"weights": weights})
    details = response.json()["error"]["details"]
    assert response.status_code == 422 and len(response.content) < 8000
    assert len(details) == 21
    assert details[-1] == {"loc": ["body"], "msg": "2980 more errors are not listed", "type": "more_errors"}
    assert response.json()["error"]["message"].endswith("(and 2997 more errors, the first 20 listed in details)")


def test_a_body_that_stops_arriving_is_a_408() -> None:
    import asyncio

    import pytest

    from service.app import BodyLimit
    from service.errors import RequestTimeout

    async def stalled() -> dict[str, Any]:
        await asyncio.sleep(10)
        return {"type": "http.request", "body": b"", "more_body": False}

    async def reads_the_body(scope: Any, receive: Any, send: Any) -> None:
        await receive()

    async def send(message: Any) -> None:
        pass

    scope = {"type": "http", "headers": [], "method": "POST", "path": "/v1/penalty"}
    with pytest.raises(RequestTimeout, match=r"no part of the body arrived for 0.05 s \(0 bytes read\)"):
        asyncio.run(BodyLimit(reads_the_body, max_bytes=100, read_timeout=0.05)(scope, stalled, send))


def test_keras_module_and_registered_name_are_strings_or_null(client: TestClient) -> None:
    keras = {"class_name": "L1", "config": {"l1": 0.1}, "module": "keras.regularizers", "registered_name": None}
    assert client.post("/v1/penalty", json={"tensor": [1.0], "regularizer": keras}).status_code == 200
    for key, value, kind in (("module", [1, 2], "list"), ("registered_name", {"a": 1}, "dict"), ("module", 5, "int")):
        response = client.post("/v1/penalty", json={"tensor": [1.0], "regularizer": {**keras, key: value}})
        assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_spec")
        assert response.json()["error"]["details"][0]["msg"] == f"{key} must be a string or null, got {kind}"


def test_the_read_timer_is_armed_only_for_a_chunk_that_has_not_arrived(monkeypatch: Any) -> None:
    """A chunk already there is read without a timer; one that arrives after a wait is read
    under the timer; a cancellation from outside reaches the waiting receive (not a 408)."""
    import asyncio

    import pytest

    from service.app import BodyLimit

    real_timeout, armed, seen = asyncio.timeout, [], []

    def counting_timeout(delay: float) -> Any:
        armed.append(delay)
        return real_timeout(delay)

    monkeypatch.setattr(asyncio, "timeout", counting_timeout)

    async def ready() -> dict[str, Any]:
        return {"type": "http.request", "body": b"abc", "more_body": False}

    async def later() -> dict[str, Any]:
        await asyncio.sleep(0.01)
        return {"type": "http.request", "body": b"abcd", "more_body": False}

    async def forever() -> dict[str, Any]:
        try:
            await asyncio.sleep(10)
        finally:
            seen.append("cancelled")
        return {}

    async def reads(scope: Any, receive: Any, send: Any) -> None:
        seen.append((await receive())["body"])

    async def send(message: Any) -> None:
        pass

    scope = {"type": "http", "headers": [], "method": "POST", "path": "/v1/penalty"}
    limit = BodyLimit(reads, max_bytes=100, read_timeout=5)
    asyncio.run(limit(dict(scope), ready, send))
    assert (seen, armed) == ([b"abc"], [])
    asyncio.run(limit(dict(scope), later, send))
    assert (seen, armed) == ([b"abc", b"abcd"], [5])

    async def cancelled_from_outside() -> None:
        task = asyncio.ensure_future(limit(dict(scope), forever, send))
        await asyncio.sleep(0.01)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancelled_from_outside())
    assert seen[-1] == "cancelled" and armed == [5, 5]
