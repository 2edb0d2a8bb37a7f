"""``POST /v1/train`` with a Keras model that is not a Dense chain: Keras's ``fit`` through
HTTP (vectors/fit_models.json; tolerance as tests/core/test_training_models.py), JSON and
SSE answers, a run continued from its returned weights and state, and the 4xx/413 refusals."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.api.test_train import _events
from tests.reference.training_vectors import cases
from tests.reference.vectors import tensor

FITS = cases("fit_models")
CONV = FITS[0]["request"]
TWO = next(c for c in FITS if c["id"].startswith("two_input"))["request"]


@pytest.mark.parametrize("case", FITS, ids=[c["id"] for c in FITS])
def test_train_a_keras_model_matches_keras_fit(client: TestClient, case: dict[str, Any]) -> None:
    r = client.post("/v1/train", json=case["request"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body["weights"]) == list(case["expected"]["weights"])
    for name, want in case["expected"]["weights"].items():
        np.testing.assert_allclose(tensor(body["weights"][name]), tensor(want), rtol=2e-6 * body["steps"], atol=1e-6,
                                   err_msg=name)
    np.testing.assert_allclose(body["epoch_losses"]["total"], case["expected"]["history_loss"], rtol=1e-5)


def test_stream_of_a_model_run_ends_with_the_json_answer(client: TestClient) -> None:
    plain = client.post("/v1/train", json=CONV)
    streamed = client.post("/v1/train", json=CONV, headers={"Accept": "text/event-stream"})
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    events = _events(streamed.text)
    assert [k for k, _ in events][-1] == "result" and {k for k, _ in events[:-1]} == {"progress"}
    assert events[0][1]["step"] == 1 and events[-2][1]["step"] == plain.json()["steps"]
    assert events[-1][1] == plain.json()


def test_a_model_run_continues_from_its_weights_and_state(client: TestClient) -> None:
    """Moving statistics travel with the weights: 2 + 1 epochs equal 3 epochs."""
    whole = client.post("/v1/train", json=CONV).json()
    first = client.post("/v1/train", json={**CONV, "epochs": 2}).json()
    rest = client.post("/v1/train", json={**CONV, "epochs": 1, "weights": first["weights"],
                                          "state": first["optimizer_state"]}).json()
    for name, w in whole["weights"].items():
        np.testing.assert_allclose(tensor(rest["weights"][name]), tensor(w), rtol=1e-6, atol=1e-7, err_msg=name)
    assert rest["optimizer_state"]["iterations"] == whole["optimizer_state"]["iterations"] == whole["steps"]


def test_model_refusals_name_the_weight_or_input(client: TestClient) -> None:
    missing = {**CONV, "weights": {k: v for k, v in CONV["weights"].items() if k != "batch_normalization/moving_variance"}}
    r = client.post("/v1/train", json=missing)
    assert r.status_code == 400 and r.json()["error"]["code"] == "shape_mismatch"
    assert r.json()["error"]["details"][0]["loc"] == ["body", "weights", "batch_normalization/moving_variance"]
    assert "expected shape [3]" in r.json()["error"]["message"]
    r = client.post("/v1/train", json={**TWO, "inputs": {"in_a": TWO["inputs"]["in_a"]}})
    assert r.status_code == 422 and "missing ['in_b']" in r.json()["error"]["message"]
    short = {**TWO, "inputs": {**TWO["inputs"], "in_b": {**TWO["inputs"]["in_b"], "shape": [5, 2],
                                                          "data": TWO["inputs"]["in_b"]["data"][:10]}}}
    r = client.post("/v1/train", json=short)
    assert r.status_code == 400 and "inputs.in_b has 5 samples" in r.json()["error"]["message"]
    r = client.post("/v1/train", json={**CONV, "inputs": {"image": CONV["inputs"]}, "layers": None})
    assert r.status_code == 200  # inputs by name work for a one-input model too


def test_model_runs_are_priced(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_train_work=2_000_000, max_request_elements=25_000)
    assert client.post("/v1/train", json={**CONV, "epochs": 1}).status_code == 200
    r = client.post("/v1/train", json={**CONV, "epochs": 200})
    assert r.status_code == 413 and "work units" in r.json()["error"]["message"]
    x = np.zeros((400, 5, 5, 2), dtype=np.float32)
    big = {**CONV, "inputs": {"shape": list(x.shape), "datatype": "FP32", "data": x.reshape(-1).tolist()},
           "targets": {"shape": [400, 2], "datatype": "FP32", "data": [0.0] * 800}, "batch_size": 400}
    r = client.post("/v1/train", json=big)
    assert r.status_code == 413 and "use a smaller batch_size" in r.json()["error"]["message"]


def test_a_dense_chain_with_a_frozen_layer_keeps_it(client: TestClient) -> None:
    """A frozen Dense layer sends the chain to the model path: its weights do not move and
    its regularizer is not counted (Keras regularizes trainable weights only)."""
    dense = cases("fit_runs")[0]
    req = dict(dense["request"])
    weights = {f"{layer['name']}/{w}": layer[w] for layer in req.pop("layers") for w in ("kernel", "bias")}
    model = json.loads(json.dumps(dense["keras_model"]))
    model["config"]["layers"][1]["config"]["trainable"] = False
    r = client.post("/v1/train", json={**req, "model": model, "weights": weights})
    assert r.status_code == 200, r.text
    body = r.json()
    for name in ("dense/kernel", "dense/bias"):
        np.testing.assert_array_equal(tensor(body["weights"][name]), tensor(weights[name]))
    assert set(body["history"]["weights"]) == {"dense_1/kernel", "dense_1/bias"}
    assert "dense/kernel_regularizer" not in body["history"]["losses"]
    assert not np.allclose(tensor(body["weights"]["dense_1/kernel"]), tensor(weights["dense_1/kernel"]))
