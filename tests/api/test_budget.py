"""The cost model (413 ``too_expensive``) and admission control (503 + Retry-After)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from service import budget
from service.core import regularizers as R
from service.core.activations import get as activation
from service.schemas import PenaltyRequest

MakeClient = Callable[..., TestClient]


def zeros_b64(shape: list[int]) -> dict[str, Any]:
    """An FP32 tensor of zeros in b64 (4 bytes an element)."""
    return {"shape": shape, "datatype": "FP32", "b64": base64.b64encode(bytes(4 * int(np.prod(shape)))).decode()}


def orthogonal(shape: list[int], mode: str = "rows") -> dict[str, Any]:
    return {"tensor": zeros_b64(shape), "regularizer": {"type": "orthogonal", "mode": mode}}


# --- the cost of specs and requests ---------------------------------------------------------


def test_orthogonal_is_priced_n_squared_d_unless_one_column() -> None:
    n, d = 20000, 3
    cost = budget.cost_of(R.Orthogonal(), (n, d))
    assert cost.work == 2 * n * n * d + 4 * n * n
    assert budget.cost_of(R.Orthogonal(mode="columns"), (d, n)) == cost
    assert budget.cost_of(R.Orthogonal(), (10**6, 1)) == budget.Cost(12 * 10**6, 48 * 10**6)
    # memory: the tensor and one block of V·Vᵀ, never the n×n matrix
    assert cost.bytes == 6 * 8 * n * d + 2 * 8 * R.ORTHOGONAL_BLOCK_ELEMENTS
    assert budget.cost_of(R.Orthogonal(), (n, d), itemsize=4).bytes == cost.bytes // 2
    assert cost.bytes < 8 * n * n / 20


def test_elementwise_specs_are_linear() -> None:
    assert budget.cost_of(R.L1(), (10, 10)) * 2 == budget.cost_of(R.L1(), (20, 10))
    assert budget.cost_of(activation("tanh"), (4, 5)).work == 40 * 20
    assert budget.cost_of(None, (4, 5)) == budget.Cost()


def test_an_unlisted_spec_gets_the_default_price() -> None:
    class Custom:
        pass

    work, arrays = budget.DEFAULT_PER_ELEMENT
    assert budget.cost_of(Custom(), (7,), itemsize=4) == budget.Cost(7 * work, 7 * 4 * arrays)


def test_a_request_model_without_a_pricer_pays_for_its_tensors() -> None:
    class Future(BaseModel):
        model_config = {"arbitrary_types_allowed": True}
        a: np.ndarray
        b: list[np.ndarray]

    model = Future(a=np.zeros((2, 3)), b=[np.zeros(4), np.zeros(5)])
    assert budget.price(model) == budget.Cost(10 * 15, (3 * 8 + 25) * 15)


def test_a_registered_pricer_is_used() -> None:
    request = PenaltyRequest.model_validate({"tensor": [1.0, 2.0], "regularizer": "l2"})  # FP32
    # the tensor (4 B), L2's two float32 temporaries, the gradient (4 B) and its JSON (16 B)
    assert budget.price(request) == budget.Cost(2, 8) + budget.Cost(12, 16) + budget.Cost(2, 40)
    b64 = PenaltyRequest.model_validate({"tensor": [1.0, 2.0], "regularizer": "l2", "encoding": "b64"})
    assert budget.price(b64).bytes == 8 + 16 + 2 * (4 + 4 + 6)


# --- 413 too_expensive -----------------------------------------------------------------------


def test_orthogonal_over_max_work_is_413_naming_the_numbers(client: TestClient) -> None:
    body = orthogonal([20000, 3])
    work = budget.price(PenaltyRequest.model_validate(body)).work
    assert work > 4_000_000_000
    response = client.post("/v1/penalty", json=body)
    assert (response.status_code, response.json()) == (413, {"error": {
        "code": "too_expensive",
        "message": f"the request (PenaltyRequest) would take about {work} element operations; the limit "
                   "is 4000000000 (PENALTY_MAX_WORK): use smaller tensors or split the request",
        "details": [{"loc": ["body"], "msg": f"work {work} > 4000000000", "type": "too_expensive"}],
    }})


def test_over_max_work_bytes_is_413(make_client: MakeClient) -> None:
    client = make_client(max_work_bytes=1000)
    body = {"tensor": [1.0] * 100, "regularizer": "l1"}
    nbytes = budget.price(PenaltyRequest.model_validate(body)).bytes
    response = client.post("/v1/penalty", json=body)
    assert response.status_code == 413
    assert response.json()["error"]["message"] == (
        f"the request (PenaltyRequest) would hold about {nbytes} bytes while computed; the limit is 1000 "
        "(PENALTY_MAX_WORK_BYTES): use smaller tensors or split the request")


@pytest.mark.parametrize("shape", [[20000, 1], [1, 20000]])
def test_orthogonal_with_one_column_is_computed_in_linear_time(client: TestClient, shape: list[int]) -> None:
    x = np.where(np.arange(20000) % 3 == 0, 2.0, -1.0).astype(np.float32).reshape(shape)
    mode = "rows" if shape[1] == 1 else "columns"
    body = {"tensor": {"shape": shape, "datatype": "FP32", "b64": base64.b64encode(x.tobytes()).decode()},
            "regularizer": {"type": "orthogonal", "factor": 1.0, "mode": mode}, "return_gradient": False}
    response = client.post("/v1/penalty", json=body)
    assert response.status_code == 200
    # closed form: a = 6667 positive rows, b = 13333 negative; |cos| = 1 for every pair
    assert response.json()["penalty"] == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("route", ["/v1/dense", "/v1/network"])
def test_layers_are_priced(make_client: MakeClient, route: str) -> None:
    client = make_client(max_work=10_000)
    inputs, kernel = np.ones((32, 16)).tolist(), np.ones((16, 16)).tolist()
    body: dict[str, Any] = {"inputs": inputs, "kernel": kernel}
    if route == "/v1/network":
        body = {"inputs": inputs, "targets": np.ones((32, 16)).tolist(), "layers": [{"kernel": kernel}] * 2}
    response = client.post(route, json=body)
    assert (response.status_code, response.json()["error"]["code"]) == (413, "too_expensive")
    assert make_client().post(route, json=body).status_code == 200


# --- admission -------------------------------------------------------------------------------


def test_admission_counts_requests_and_bytes() -> None:
    admission = budget.Admission(max_requests=2, max_bytes=100, retry_after=3)
    admission.enter(60)
    assert not admission.saturated()
    with pytest.raises(budget.errors.Overloaded) as over:
        admission.enter(41)
    assert over.value.headers == {"Retry-After": "3"}
    assert over.value.message == "the service is at capacity (60 of 100 bytes in flight, this request needs 41); retry after 3 s"
    admission.enter(40)
    assert admission.saturated()
    with pytest.raises(budget.errors.Overloaded, match="2 of 2 requests in progress"):
        admission.enter(0)
    admission.leave(60)
    admission.leave(40)
    assert (admission.requests, admission.bytes) == (0, 0)


def overloaded(message: str) -> dict[str, Any]:
    return {"error": {"code": "overloaded", "message": message, "details": []}}


def test_declared_body_over_the_inflight_budget_is_503_without_reserving_it(make_client: MakeClient) -> None:
    client = make_client(max_body_bytes=1000, body_memory_factor=10, max_inflight_bytes=10_000 + 70_000)
    app_admission: budget.Admission = client.app.state.admission  # type: ignore[attr-defined]
    app_admission.bytes = 70_000  # as if another request held it
    read: list[int] = []

    def chunks() -> Iterator[bytes]:
        read.append(1)
        yield b'{"tensor": [1, 2, 3], "regularizer": "l1"}'

    headers = {"Content-Type": "application/json", "Content-Length": "43"}
    response = client.post("/v1/penalty", content=chunks(), headers=headers)
    need = budget.PER_REQUEST + 430
    assert (response.status_code, response.headers["retry-after"]) == (503, "1")
    assert response.json() == overloaded(
        f"the service is at capacity (70000 of 80000 bytes in flight, this request needs {need}); retry after 1 s")
    app_admission.bytes = 0
    assert client.post("/v1/penalty", json={"tensor": [1], "regularizer": "l1"}).status_code == 200
    assert (app_admission.requests, app_admission.bytes) == (0, 0)  # released


def test_chunked_body_is_reserved_as_it_arrives(make_client: MakeClient) -> None:
    client = make_client(max_body_bytes=4096, body_memory_factor=100, max_inflight_bytes=budget.PER_REQUEST + 409_600)
    admission: budget.Admission = client.app.state.admission  # type: ignore[attr-defined]
    admission.bytes = 409_600 - 5000  # room for 50 body bytes

    def chunks() -> Iterator[bytes]:
        yield b'{"tensor": ['
        for _ in range(100):
            yield b"1.0, "
        yield b'1.0], "regularizer": "l1"}'

    response = client.post("/v1/penalty", content=chunks(), headers={"Content-Type": "application/json"})
    assert (response.status_code, response.json()["error"]["code"]) == (503, "overloaded")
    assert response.headers["retry-after"] == "1"
    assert admission.requests == 0 and admission.bytes == 409_600 - 5000


def test_concurrent_requests_over_the_budget_are_503_and_readyz_says_so(make_client: MakeClient) -> None:
    client = make_client(max_concurrent_requests=1)
    admission: budget.Admission = client.app.state.admission  # type: ignore[attr-defined]
    assert client.get("/readyz").json() == {"status": "ok"}
    admission.requests = 1  # one request in progress
    response = client.post("/v1/penalty", json={"tensor": [1], "regularizer": "l1"})
    assert (response.status_code, response.json()) == (503, overloaded(
        "the service is at capacity (1 of 1 requests in progress); retry after 1 s"))
    ready = client.get("/readyz")
    assert (ready.status_code, ready.headers["retry-after"]) == (503, "1")
    assert ready.json()["error"]["code"] == "not_ready"
    assert client.head("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200  # liveness is not capacity
    assert client.head("/healthz").status_code == 200
    admission.requests = 0
    assert client.head("/readyz").status_code == 200


def test_the_priced_cost_is_reserved_while_the_request_runs(make_client: MakeClient) -> None:
    body = json.dumps({"tensor": [1.0] * 1000, "regularizer": "l1"}).encode()
    priced = budget.price(PenaltyRequest.model_validate_json(body)).bytes
    assert priced == 4 * 1000 + 2 * 4 * 1000 + (4 + 16) * 1000
    upfront = budget.PER_REQUEST + len(body) * 12
    headers = {"Content-Type": "application/json"}
    for room, status in ((priced - 1, 503), (priced, 200)):
        client = make_client(max_inflight_bytes=upfront + room, max_body_bytes=len(body), body_memory_factor=12)
        response = client.post("/v1/penalty", content=body, headers=headers)
        assert response.status_code == status
        admission: budget.Admission = client.app.state.admission  # type: ignore[attr-defined]
        assert (admission.requests, admission.bytes) == (0, 0)
    assert f"this request needs {priced}" in make_client(
        max_inflight_bytes=upfront + priced - 1, max_body_bytes=len(body), body_memory_factor=12
    ).post("/v1/penalty", content=body, headers=headers).json()["error"]["message"]
