"""``POST /v1/optimizer/step`` and ``POST /v1/train`` as JSON: Keras vectors through HTTP,
state round trips, the SSE stream's order and result, budgets and errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.reference.training_vectors import cases
from tests.reference.vectors import arrays, tensor

STEPS = cases("optimizer_steps")
FITS = cases("fit_runs")


def test_optimizer_step_matches_keras_through_http(client: TestClient) -> None:
    for case in STEPS[::5]:
        state: Any = None
        params = case["parameters"]
        # Keras's serialized form carries no exclusion list (it is a method call in Keras).
        forms = [case["optimizer"]] if "exclude_from_weight_decay" in case["optimizer"] else \
            [case["optimizer"], case["keras_config"]]
        for k, grads in enumerate(case["gradients"]):
            r = client.post("/v1/optimizer/step", json={"optimizer": forms[k % len(forms)],
                                                        "parameters": params, "gradients": grads, "state": state})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["learning_rate"] == case["expected"]["learning_rate"][k]
            assert body["state"]["iterations"] == k + 1
            params, state = body["parameters"], body["state"]
            rtol = 1e-10 if params["dense/kernel"]["datatype"] == "FP64" else 1e-6 * (k + 1)
            for name, want in case["expected"]["parameters"][k].items():
                np.testing.assert_allclose(tensor(params[name]), tensor(want), rtol=rtol, atol=1e-7)
        assert set(state["slots"]["dense/kernel"]) == set(case["expected"]["slots"]["dense/kernel"])


def test_optimizer_step_b64_and_errors(client: TestClient) -> None:
    body = {"optimizer": "adam", "parameters": {"w": [1.0, 2.0]}, "gradients": {"w": [0.1, 0.2]}, "encoding": "b64"}
    r = client.post("/v1/optimizer/step", json=body)
    assert r.status_code == 200 and "b64" in r.json()["parameters"]["w"]
    r = client.post("/v1/optimizer/step", json={**body, "optimizer": {"name": "sgd", "momentum": 2}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_spec"
    assert "momentum" in r.json()["error"]["message"]
    r = client.post("/v1/optimizer/step", json={**body, "gradients": {"w": [0.1, 0.2, 0.3]}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "shape_mismatch"
    r = client.post("/v1/optimizer/step", json={**body, "state": {"iterations": 3, "slots": {"w": {"momentum": [0, 0]}}}})
    assert r.status_code == 422 and "velocity" in r.json()["error"]["message"]
    r = client.post("/v1/optimizer/step", json={**body, "state": {"iterations": -1}})
    assert r.status_code == 422


@pytest.mark.parametrize("case", FITS[:4], ids=[c["id"] for c in FITS[:4]])
def test_train_matches_keras_fit_through_http(client: TestClient, case: dict) -> None:
    r = client.post("/v1/train", json=case["request"])
    assert r.status_code == 200, r.text
    body = r.json()
    for name, want in case["expected"]["weights"].items():
        np.testing.assert_allclose(tensor(body["weights"][name]), tensor(want), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(body["epoch_losses"]["total"], case["expected"]["history_loss"], rtol=1e-5)
    assert body["steps"] == len(body["history"]["step"]) == sum(len(b) for b in case["expected"]["batch_logs"])


def test_train_continues_from_state(client: TestClient) -> None:
    req = json.loads(json.dumps(FITS[1]["request"]))
    whole = client.post("/v1/train", json=req).json()
    half = client.post("/v1/train", json={**req, "epochs": req["epochs"] // 2}).json()
    layers = [{**layer, "kernel": half["weights"][f"{layer['name']}/kernel"],
               "bias": half["weights"][f"{layer['name']}/bias"]} for layer in req["layers"]]
    rest = client.post("/v1/train", json={**req, "layers": layers, "epochs": req["epochs"] - req["epochs"] // 2,
                                          "state": half["optimizer_state"]}).json()
    for name, w in whole["weights"].items():
        np.testing.assert_allclose(tensor(rest["weights"][name]), tensor(w), rtol=1e-6, atol=1e-7)
    assert rest["optimizer_state"]["iterations"] == whole["optimizer_state"]["iterations"]


def _events(text: str) -> list[tuple[str, Any]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_stream_progress_then_result_equal_to_json(client: TestClient) -> None:
    req = FITS[3]["request"]
    plain = client.post("/v1/train", json=req)
    streamed = client.post("/v1/train", json=req, headers={"Accept": "text/event-stream"})
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    events = _events(streamed.text)
    kinds = [k for k, _ in events]
    assert kinds[-1] == "result" and set(kinds[:-1]) == {"progress"} and len(kinds) >= 3
    steps = [d["step"] for k, d in events if k == "progress"]
    assert steps == sorted(set(steps)) and steps[0] == 1 and steps[-1] == plain.json()["steps"]
    assert set(events[0][1]["losses"]) == set(plain.json()["history"]["losses"])
    assert events[-1][1] == plain.json()


def test_stream_refusals_are_plain_errors(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_train_steps=10)
    req = {**FITS[0]["request"], "epochs": 100}
    r = client.post("/v1/train", json=req, headers={"Accept": "text/event-stream"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_expensive"
    assert "limit is 10" in r.json()["error"]["message"]


def test_budget_refuses_expensive_runs(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_train_work=10_000_000)
    req = FITS[0]["request"]
    assert client.post("/v1/train", json={**req, "epochs": 2}).status_code == 200
    r = client.post("/v1/train", json={**req, "epochs": 1000})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_expensive"
    assert "work units" in r.json()["error"]["message"]


def test_wall_time_limit_is_a_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_train_seconds=1e-9)
    r = client.post("/v1/train", json=FITS[0]["request"])
    assert r.status_code == 413 and "wall-time" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"model": {"class_name": "Sequential"}}, 422, "validation_error"),  # both model and layers
        ({"layers": None}, 422, "validation_error"),  # neither
        ({"epochs": 0}, 422, "validation_error"),
        ({"batch_size": 1.5}, 422, "validation_error"),
        ({"optimizer": "adamm"}, 422, "invalid_spec"),
        ({"record": {"sparsity_tolerances": [-1]}}, 422, "validation_error"),
        ({"targets": [[1.0]]}, 400, "shape_mismatch"),
        ({"optimizr": "sgd"}, 422, "unknown_field"),
    ],
)
def test_train_errors(client: TestClient, change: dict, status: int, code: str) -> None:
    r = client.post("/v1/train", json={**FITS[0]["request"], **change})
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


def test_l1_proximal_through_http(client: TestClient) -> None:
    req = arrays(FITS[0]["request"])
    body = {**FITS[0]["request"], "epochs": 40, "l1_proximal": True,
            "layers": [{**FITS[0]["request"]["layers"][0]},
                       {**FITS[0]["request"]["layers"][1], "kernel_regularizer": {"type": "l1", "l1": 0.5}}]}
    r = client.post("/v1/train", json=body).json()
    assert r["l1_proximal"] is True
    kernel = tensor(r["weights"]["dense_1/kernel"])
    assert np.count_nonzero(kernel == 0) >= 1
    assert r["history"]["weights"]["dense_1/kernel"]["sparsity"]["0"][-1] > 0
    assert req["epochs"] == 5


def test_a_diverging_run_is_a_400_naming_the_step(client: TestClient) -> None:
    req = {**FITS[0]["request"], "optimizer": {"name": "sgd", "learning_rate": 1e6}}
    r = client.post("/v1/train", json=req)
    assert r.status_code == 400 and r.json()["error"]["code"] == "non_finite_result"
    assert "diverged at step" in r.json()["error"]["message"]
    streamed = _events(client.post("/v1/train", json=req, headers={"Accept": "text/event-stream"}).text)
    assert streamed[0][0] == "progress" and streamed[-1][0] == "error"
    assert streamed[-1][1]["error"]["code"] == "non_finite_result"


def test_wall_time_limit_mid_stream_is_an_error_event(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_train_seconds=0.2)
    req = {**FITS[0]["request"], "epochs": 5000, "batch_size": 1}  # 50000 steps, far past 0.2 s
    events = _events(client.post("/v1/train", json=req, headers={"Accept": "text/event-stream"}).text)
    assert events[0][0] == "progress" and events[-1][0] == "error"
    assert events[-1][1]["error"]["code"] == "too_expensive"
    assert "wall-time" in events[-1][1]["error"]["message"]


def test_optimizers_are_listed_with_keras_defaults(client: TestClient) -> None:
    body = client.get("/v1/optimizers").json()
    by_name = {o["name"]: o for o in body["optimizers"]}
    assert set(by_name) == {"sgd", "rmsprop", "adagrad", "adam", "adamw", "adamax", "nadam", "lion"}
    assert by_name["adamw"]["parameters"]["weight_decay"] == 0.004
    assert by_name["adam"]["slots"] == ["momentum", "velocity"]
    assert {s["class_name"] for s in body["schedules"]} >= {"ExponentialDecay", "CosineDecay", "CosineDecayRestarts"}


def test_state_sent_back_with_extra_keys_continues(client: TestClient) -> None:
    body = {"optimizer": "adam", "parameters": {"w": [1.0, 2.0]}, "gradients": {"w": [0.1, 0.2]}}
    first = client.post("/v1/optimizer/step", json=body).json()
    state = {**first["state"], "note": "from a previous response", "learning_rate": first["learning_rate"]}
    state["slots"]["w"]["unused"] = [0.0, 0.0]
    r = client.post("/v1/optimizer/step", json={**body, "parameters": first["parameters"], "state": state})
    assert r.status_code == 200, r.text
    assert r.json()["state"]["iterations"] == 2


def test_l1_pull_does_not_weaken_as_the_data_gradient_vanishes(client: TestClient) -> None:
    """Seed 003: as (t − y)·C → 0 the data gradient vanishes, but L1's gradient stays
    λ·√(number of nonzero weights): it does not weaken over training (L2's, 2λ·‖w‖, would)."""
    req = {"layers": [{"kernel": [[0.5], [-0.5]], "bias": [0.0], "kernel_regularizer": {"type": "l1", "l1": 0.01}}],
           "inputs": [[1.0, 2.0], [2.0, 1.0], [0.0, 1.0], [1.0, 0.0]], "targets": [[1.0], [2.0], [0.5], [0.5]],
           "loss": "mse", "optimizer": {"name": "sgd", "learning_rate": 0.1}, "epochs": 40, "batch_size": 4}
    norms = client.post("/v1/train", json=req).json()["history"]["gradient_norms"]["dense/kernel"]
    assert norms["data_loss"][-1] < 0.1 * norms["data_loss"][0]
    assert norms["dense/kernel_regularizer"] == pytest.approx([float(np.float32(0.01)) * np.sqrt(2)] * 40, rel=1e-6)


def test_history_budget_refuses_a_long_recording(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_train_history=1000)
    req = {**FITS[0]["request"], "epochs": 50}
    r = client.post("/v1/train", json=req)
    assert r.status_code == 413 and "record.every" in r.json()["error"]["message"]
    assert client.post("/v1/train", json={**req, "record": {"every": 100}}).status_code == 200


def model_request(case: dict) -> dict:
    """The case's run with the Keras model (``model.to_json()``) and its weights instead of layers."""
    req = dict(case["request"])
    weights = {f"{layer['name']}/{w}": layer[w] for layer in req.pop("layers") for w in ("kernel", "bias")}
    return {**req, "model": case["keras_model"], "weights": weights}


@pytest.mark.parametrize("case", [FITS[1], FITS[5], FITS[-1]], ids=[FITS[1]["id"], FITS[5]["id"], FITS[-1]["id"]])
def test_train_a_keras_model_config_matches_keras_fit(client: TestClient, case: dict) -> None:
    r = client.post("/v1/train", json=model_request(case))
    assert r.status_code == 200, r.text
    fp64 = case["request"]["inputs"]["datatype"] == "FP64"
    for name, want in case["expected"]["weights"].items():
        np.testing.assert_allclose(tensor(r.json()["weights"][name]), tensor(want),
                                   rtol=1e-10 if fp64 else 1e-5, atol=1e-13 if fp64 else 1e-6)
    assert r.json() == client.post("/v1/train", json=case["request"]).json()


def test_keras_model_errors_name_the_layer_or_weight(client: TestClient) -> None:
    """A model that is not a Dense chain goes to the model path: its errors name the layer."""
    req = model_request(FITS[0])
    conv = json.loads(json.dumps(req))
    conv["model"]["config"]["layers"][1]["class_name"] = "Conv2D"
    r = client.post("/v1/train", json=conv)
    assert r.status_code == 422 and "Conv2D" in r.json()["error"]["message"]
    missing = {**req, "weights": {k: v for k, v in req["weights"].items() if k != "dense_1/bias"}}
    r = client.post("/v1/train", json=missing)
    assert r.status_code == 422 and "dense_1/bias" in r.json()["error"]["message"]
    extra = {**req, "weights": {**req["weights"], "dense_9/kernel": [[1.0]]}}
    assert "dense_9/kernel" in client.post("/v1/train", json=extra).json()["error"]["message"]
    branch = json.loads(json.dumps(req))  # dense_1 fed by the input: a [3, 1] kernel on 4 features
    branch["model"]["config"]["layers"][2]["inbound_nodes"][0]["args"][0]["config"]["keras_history"][0] = "input_layer"
    r = client.post("/v1/train", json=branch)
    assert r.status_code == 400 and r.json()["error"]["code"] == "shape_mismatch"
    assert "'dense_1/kernel' has shape [3, 1]" in r.json()["error"]["message"]
    assert client.post("/v1/train", json={**req, "weights": None}).status_code == 422


def test_huge_iteration_counts_are_refused_not_computed(client: TestClient) -> None:
    body = {"optimizer": "nadam", "parameters": {"w": [1.0]}, "gradients": {"w": [0.5]},
            "state": {"iterations": 10**15, "slots": {"w": {"momentum": [0.0], "velocity": [0.0]}}}}
    r = client.post("/v1/optimizer/step", json=body)
    assert r.status_code == 422 and "beyond" in r.json()["error"]["message"]
    adam = client.post("/v1/optimizer/step", json={**body, "optimizer": "adam"})
    assert adam.status_code == 200 and adam.json()["state"]["iterations"] == 10**15 + 1
