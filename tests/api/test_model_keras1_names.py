"""Keras 1's W_regularizer / b_regularizer in every route, and the did-you-mean hint for them."""

from __future__ import annotations

from fastapi.testclient import TestClient

DENSE = {"inputs": [[1.0, 2.0]], "kernel": [[1.0], [2.0]], "bias": [0.5]}


def test_dense_accepts_keras1_names_as_the_keras2_ones(client: TestClient) -> None:
    old = client.post("/v1/dense", json=DENSE | {"W_regularizer": "l2", "b_regularizer": {"type": "l1", "l1": 0.1}})
    new = client.post("/v1/dense", json=DENSE | {"kernel_regularizer": "l2", "bias_regularizer": {"type": "l1", "l1": 0.1}})
    assert old.status_code == 200, old.text
    assert old.json() == new.json()
    assert set(old.json()["losses"]) == {"kernel_regularizer", "bias_regularizer", "total"}


def test_network_layers_accept_keras1_names(client: TestClient) -> None:
    body = {"inputs": [[1.0, 2.0]], "targets": [[1.0]], "layers": [{"kernel": [[1.0], [2.0]], "W_regularizer": "l2"}]}
    r = client.post("/v1/network", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["losses"]["dense/kernel_regularizer"] == 0.049999997  # 0.01 * (1 + 4) in float32


def test_model_configs_accept_keras1_names(client: TestClient) -> None:
    model = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "Dense", "config": {"name": "dense", "units": 1, "W_regularizer": "l2",
                                           "b_regularizer": {"class_name": "L1", "config": {"l1": 0.1}}}}]}}
    r = client.post("/v1/model", json={"model": model, "inputs": [[1.0, 2.0]],
                                       "weights": {"dense/kernel": [[1.0], [2.0]], "dense/bias": [0.5]}})
    assert r.status_code == 200, r.text
    assert r.json()["losses"] == {"dense/kernel_regularizer": 0.049999997, "dense/bias_regularizer": 0.05,
                                  "total": 0.099999994}


def test_both_names_at_once_is_refused(client: TestClient) -> None:
    r = client.post("/v1/dense", json=DENSE | {"W_regularizer": "l2", "kernel_regularizer": "l1"})
    assert r.status_code == 422
    assert "W_regularizer is Keras 1's name for kernel_regularizer" in r.json()["error"]["message"]


def test_hint_for_a_misspelt_keras1_name_points_to_the_keras2_name(client: TestClient) -> None:
    for typo in ("W_regulariser", "w_regularizer"):
        r = client.post("/v1/dense", json=DENSE | {typo: "l2"})
        assert r.status_code == 422
        assert "did you mean 'kernel_regularizer'? Keras 1 called it 'W_regularizer'" in r.json()["error"]["message"]
