"""The thin client (``service.client``) in process and against a live server, both formats;
``return_gradients`` selections over HTTP; a route of another signature still gets
safetensors."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from service.api.routing import WireRoute
from service.app import create_app
from service.client import Client, ServiceError
from service.core import regularizers
from service.core.dense import dense
from service.core.network import LayerSpec, network
from service.core.regularizers import penalties
from service.schemas import PenaltyRequest, PenaltyResponse
from tests.conftest import make_settings
from tests.deploy.server import clean_env, free_port, serve

ROOT = Path(__file__).resolve().parents[2]
RNG = np.random.default_rng(99)
X = RNG.normal(size=(6, 4)).astype(np.float32)
K = RNG.normal(size=(4, 3)).astype(np.float32)
B = RNG.normal(size=3).astype(np.float32)
FORMATS = ("safetensors", "json")


@pytest.fixture(params=FORMATS)
def client(request: pytest.FixtureRequest, app: FastAPI) -> Iterator[Client]:
    with Client(http=TestClient(app), format=request.param) as c:
        yield c


def test_penalty(client: Client) -> None:
    r = client.penalty(np.full((2, 2, 4), 3, np.float32), {"type": "l1", "l1": 0.1})
    assert (r.penalty, r.regularizer) == (4.8, {"type": "l1", "l1": 0.1})
    assert r.gradient is not None and r.gradient.dtype == np.float32
    assert r.gradient.tolist() == np.full((2, 2, 4), 0.1, np.float32).tolist()
    assert client.penalty(np.ones(2), "l2", return_gradient=False).gradient is None


def test_penalties_keep_dtypes_and_dotted_names(client: Client) -> None:
    weights = {"a.b/kernel": (RNG.normal(size=(3, 2)), "l1"), "c": (np.ones(4, np.float16), {"type": "l2", "l2": 0.5})}
    r = client.penalties(weights)
    core = penalties({n: (regularizers.get(s), t) for n, (t, s) in weights.items()})
    assert r.penalties == {n: float(str(v)) for n, v in core.penalties.items()}
    assert r.gradients is not None and core.gradients is not None
    for name, g in core.gradients.items():
        assert (r.gradients[name].dtype, r.gradients[name].tobytes()) == (g.dtype, g.tobytes())
    chosen = client.penalties(weights, return_gradients={"parameters": ["c"]})
    assert chosen.gradients is not None and sorted(chosen.gradients) == ["c"]


def test_dense_equals_the_core_bit_for_bit(client: Client) -> None:
    r = client.dense(X, K, B, activation="relu", kernel_regularizer="l1", bias_regularizer="l2",
                     activity_regularizer="l1")
    core = dense(X, K, B, "relu", "l1", "l2", "l1")
    assert r.outputs.tobytes() == core.outputs.tobytes()
    assert core.gradients is not None and r.gradients is not None and r.input_gradients is not None
    inputs = core.gradients.pop("inputs")
    assert {p: sorted(t) for p, t in r.gradients.items()} == {p: sorted(t) for p, t in core.gradients.items()}
    for p, terms in core.gradients.items():
        for t, g in terms.items():
            assert r.gradients[p][t].tobytes() == g.tobytes()
    assert {t: g.tobytes() for t, g in r.input_gradients.items()} == {t: g.tobytes() for t, g in inputs.items()}
    totals = client.dense(X, K, B, activation="relu", kernel_regularizer="l1", return_gradients="totals")
    assert totals.gradients is not None
    assert {p: list(t) for p, t in totals.gradients.items()} == {"kernel": ["total"], "bias": ["total"]}


def test_network_equals_the_core(client: Client) -> None:
    layers = [{"kernel": K, "bias": B, "activation": "tanh", "activity_regularizer": "l2", "name": "h.1"},
              {"kernel": RNG.normal(size=(3, 1)).astype(np.float32), "activation": "sigmoid"}]
    targets = (RNG.random(size=(6, 1)) > 0.5).astype(np.float32)
    r = client.network(X, targets, layers, "binary_crossentropy")
    core = network(X, targets, [LayerSpec(**layer) for layer in layers], "binary_crossentropy")
    assert r.outputs.tobytes() == core.outputs.tobytes()
    assert r.losses == {k: float(str(v)) for k, v in core.losses.items()}
    assert r.gradients is not None and core.gradients is not None
    assert sorted(r.gradients) == sorted(core.gradients) == ["dense/kernel", "h.1/bias", "h.1/kernel"]
    for p, terms in core.gradients.items():
        assert {t: g.tobytes() for t, g in r.gradients[p].items()} == {t: g.tobytes() for t, g in terms.items()}


def test_errors_raise_service_error_with_the_envelope(client: Client) -> None:
    with pytest.raises(ServiceError) as caught:
        client.dense(X, K[:3], activation="relu")
    error = caught.value
    assert (error.status, error.code) == (400, "shape_mismatch")
    assert error.message == "kernel has 3 rows but inputs have 4 features (last axis)"
    assert error.envelope["error"]["details"][0]["loc"] == ["body", "kernel"]
    with pytest.raises(ServiceError) as unknown:
        client.dense(X, K, return_gradients={"terms": ["totl"]})
    assert unknown.value.status == 422
    assert "the valid terms are activity_regularizer, kernel_regularizer, bias_regularizer, total" in unknown.value.message


@pytest.mark.slow
def test_the_client_against_a_live_server(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with serve(argv, clean_env({"PYTHONPATH": str(ROOT)}), tmp_path, port) as base:
        answers = []
        for form in FORMATS:
            with Client(base, format=form) as live:
                r = live.dense(X, K, B, activation="relu", kernel_regularizer="l1", activity_regularizer="l1")
                answers.append(r)
                with pytest.raises(ServiceError, match="invalid_spec"):
                    live.penalty(np.ones(2), "l3")
                big = RNG.normal(size=(300, 1000))  # 2.4 MB each way: sent and answered in pieces
                answer = live.penalty(big, {"type": "l2", "l2": 0.5})
                assert answer.gradient is not None and answer.gradient.tobytes() == big.tobytes()
        a, b = answers
        assert a.outputs.tobytes() == b.outputs.tobytes() == dense(X, K, B, "relu", "l1", None, "l1").outputs.tobytes()
        assert a.gradients is not None and b.gradients is not None
        assert a.gradients["kernel"]["total"].tobytes() == b.gradients["kernel"]["total"].tobytes()


# --------------------------------------------------------------------------- selection over HTTP


def test_penalty_selection_over_http(app: FastAPI) -> None:
    http = TestClient(app)
    base: dict[str, Any] = {"tensor": [1.0, -2.0], "regularizer": "l1"}
    assert http.post("/v1/penalty", json={**base, "return_gradient": "totals"}).json()["gradient"]["data"] == [0.01, -0.01]
    assert http.post("/v1/penalty", json={**base, "return_gradient": {"terms": []}}).json()["gradient"] is None
    bad = http.post("/v1/penalty", json={**base, "return_gradient": {"parameters": ["x"]}})
    assert (bad.status_code, bad.json()["error"]["message"]) == (
        422, "return_gradient: unknown parameter 'x'; the valid parameters are tensor")
    null = http.post("/v1/penalty", json={**base, "return_gradient": None})
    assert (null.status_code, null.json()["error"]["code"]) == (422, "invalid_spec")


def test_penalties_selection_lists_the_weights(app: FastAPI) -> None:
    body = {"weights": {"a": {"tensor": [1.0], "regularizer": "l1"}, "b": {"tensor": [2.0], "regularizer": "l2"}},
            "return_gradients": {"parameters": ["c"]}}
    bad = TestClient(app).post("/v1/penalties", json=body)
    assert (bad.status_code, bad.json()["error"]["message"]) == (
        422, "return_gradients: unknown parameter 'c'; the valid parameters are a, b")
    none = TestClient(app).post("/v1/penalties", json={**body, "return_gradients": {"parameters": []}})
    assert none.json()["gradients"] == {} and none.json()["penalties"] == {"a": 0.01, "b": 0.04}


# --------------------------------------------------------------------------- other signatures


def test_a_route_of_another_signature_gets_safetensors_through_fastapi() -> None:
    router = APIRouter(route_class=WireRoute)

    @router.post("/echo")
    def echo(body: PenaltyRequest, request: Request) -> PenaltyResponse:
        return PenaltyResponse(penalty=float(body.tensor.sum()), gradient=None,
                               regularizer=body.regularizer.get_config())

    app = create_app(make_settings())
    app.include_router(router)
    http = TestClient(app)
    payload = st_save({"tensor": np.array([1.5, 2.0], np.float32)}, metadata={"json": json.dumps({"regularizer": "l2"})})
    answer = http.post("/echo", content=payload, headers={"Content-Type": "application/x-safetensors",
                                                          "Accept": "application/x-safetensors"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/x-safetensors"
    assert st_load(answer.content) == {}
    as_json = http.post("/echo", json={"tensor": [1.5, 2.0], "regularizer": "l2"})
    assert as_json.json() == {"penalty": 3.5, "gradient": None, "regularizer": {"type": "l2", "l2": 0.01}}
    bad = http.post("/echo", content=st_save({"kernel": np.ones(1, np.float32)}),
                    headers={"Content-Type": "application/x-safetensors"})
    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_safetensors")


# --------------------------------------------------------------------------- the fast lane


def lane(app: FastAPI) -> Any:
    from service.api.routing import FastLane

    app.build_middleware_stack()
    node: Any = app.middleware_stack
    while not isinstance(node, FastLane):
        node = node.app
    return node


def test_the_fast_lane_takes_exactly_the_model_routes(app: FastAPI) -> None:
    assert sorted(lane(app).table()) == ["/v1/dense", "/v1/network", "/v1/optimizer/step", "/v1/penalties", "/v1/penalty"]


def test_routes_with_dependencies_keep_the_framework_path() -> None:
    from fastapi import Depends

    seen: list[str] = []

    def audit() -> None:
        seen.append("audited")

    router = APIRouter(route_class=WireRoute, dependencies=[Depends(audit)])

    @router.post("/audited")
    def audited(body: PenaltyRequest) -> PenaltyResponse:
        return PenaltyResponse(penalty=0.0, gradient=None, regularizer=body.regularizer.get_config())

    app = create_app(make_settings())
    app.include_router(router)
    response = TestClient(app).post("/audited", json={"tensor": [1.0], "regularizer": "l1"})
    assert (response.status_code, seen) == (200, ["audited"])
    assert "/audited" not in lane(app).table()

    plain = APIRouter(route_class=WireRoute)
    plain.post("/plain")(audited)
    app.include_router(plain, prefix="/x", dependencies=[Depends(audit)])  # the including router's
    app.middleware_stack = None
    response = TestClient(app).post("/x/plain", json={"tensor": [1.0], "regularizer": "l1"})
    assert (response.status_code, seen) == (200, ["audited", "audited"])
    assert "/x/plain" not in lane(app).table()


def test_an_unexpected_error_in_the_lane_is_the_logged_500(monkeypatch: pytest.MonkeyPatch) -> None:
    import service.api.penalties as routes

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(routes, "penalties", broken)
    app = create_app(make_settings())
    response = TestClient(app, raise_server_exceptions=False).post(
        "/v1/penalties", json={"weights": {"a": {"tensor": [1.0], "regularizer": "l1"}}})
    assert (response.status_code, response.json()["error"]["code"]) == (500, "internal_error")
    with pytest.raises(RuntimeError, match="boom"):
        TestClient(app).post("/v1/penalties", json={"weights": {"a": {"tensor": [1.0], "regularizer": "l1"}}})


def test_the_readme_client_example_runs(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's "Python client" block, against the app in process."""
    import re

    import service.client

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Python client", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    original = Client.__init__

    def in_process(self: Client, base_url: str = "", **kwargs: Any) -> None:
        original(self, http=TestClient(app), **kwargs)

    monkeypatch.setattr(service.client.Client, "__init__", in_process)
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), "README.md", "exec"), namespace)
    assert namespace["r"].penalty == 4.8
    assert namespace["d"].gradients["kernel"].keys() == {"total"}
    assert sorted(namespace["p"].gradients) == ["dense/bias", "dense/kernel"]


def test_small_pieces_of_a_request_are_coalesced() -> None:
    """The request goes out in pieces (header, then each large array, from its own memory);
    runs of small pieces are joined first (fewer sends)."""
    from service.client import _coalesced

    big = memoryview(bytes(1 << 16))
    assert [len(p) for p in _coalesced([b"ab", b"c", big, b"d", b"e"])] == [3, 1 << 16, 2]


def test_the_readme_safetensors_example_runs(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's "Binary transport" block (the safetensors package and httpx), in process."""
    import re

    import httpx

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Binary transport", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    http = TestClient(app)
    monkeypatch.setattr(httpx, "post", lambda url, **kw: http.post(url.split(":8000", 1)[1], **kw))
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), "README.md", "exec"), namespace)
    assert namespace["r"].status_code == 200
    assert namespace["load"](namespace["r"].content)["gradient"].shape == (2, 2, 4)


@pytest.mark.slow
def test_a_call_lets_go_of_its_arrays_without_the_garbage_collector(tmp_path: Path) -> None:
    """httpx's Response is part of a reference cycle: what the request and the answer hold
    when the call returns lives on until the collector runs (over the client's own
    transport, the request's pieces kept the caller's array alive).  The client lets go of
    both bodies itself, so the caller's array and the answer's memory go as soon as the
    caller drops them."""
    import gc
    import weakref

    port = free_port()
    argv = [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with serve(argv, clean_env({"PYTHONPATH": str(ROOT)}), tmp_path, port) as base:
        for form in FORMATS:
            with Client(base, format=form) as client:
                tensor = RNG.normal(size=(300, 100)).astype(np.float32)
                sent = weakref.ref(tensor)
                answer = client.penalty(tensor, "l2")
                assert answer.gradient is not None
                answered = weakref.ref(answer.gradient)
                gc.disable()
                try:
                    del tensor, answer
                    assert (form, sent(), answered()) == (form, None, None)
                finally:
                    gc.enable()
