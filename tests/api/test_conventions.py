"""Every claim of ``GET /v1/conventions`` run through the service.

Both sides go through HTTP: Keras's side as ``/v1/train`` runs, the other framework's
side as its documented update rule (a closed form, written out below) applied to the data
gradient ``/v1/network`` returns.  FP64 with learning rates and factors exact in float32
(Keras rounds both through float32), so "equivalent" is checked to 1e-12.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.reference.vectors import tensor

LR, WD, STEPS = 0.125, 0.0625, 6
RNG = np.random.default_rng(11)
X = RNG.normal(size=(16, 3))
T = X @ np.array([[1.0], [-1.0], [0.5]]) + 0.3
W0 = {"dense/kernel": RNG.normal(size=(3, 1)), "dense/bias": np.array([0.2])}


def fp64(a: np.ndarray) -> dict[str, Any]:
    return {"shape": list(a.shape), "datatype": "FP64", "data": a.reshape(-1).tolist()}


def train(client: TestClient, optimizer: dict, kernel_reg: dict | None = None, bias_reg: dict | None = None,
          steps: int = STEPS) -> dict[str, np.ndarray]:
    layer: dict[str, Any] = {"kernel": fp64(W0["dense/kernel"]), "bias": fp64(W0["dense/bias"])}
    if kernel_reg:
        layer["kernel_regularizer"] = kernel_reg
    if bias_reg:
        layer["bias_regularizer"] = bias_reg
    r = client.post("/v1/train", json={"layers": [layer], "inputs": fp64(X), "targets": fp64(T), "loss": "mse",
                                       "optimizer": optimizer, "epochs": steps, "batch_size": len(X)})
    assert r.status_code == 200, r.text
    return {k: tensor(v) for k, v in r.json()["weights"].items()}


def data_gradient(client: TestClient, w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    r = client.post("/v1/network", json={"inputs": fp64(X), "targets": fp64(T), "loss": "mse", "layers": [
        {"kernel": fp64(w["dense/kernel"]), "bias": fp64(w["dense/bias"])}]})
    assert r.status_code == 200, r.text
    return {k: tensor(v["data_loss"]) for k, v in r.json()["gradients"].items()}


def close(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return all(np.allclose(a[k], b[k], rtol=1e-12, atol=1e-14) for k in a)


def test_the_route_lists_every_framework(client: TestClient) -> None:
    body = client.get("/v1/conventions").json()
    frameworks = {c["framework"] for c in body["conventions"]}
    assert frameworks == {"Keras 3", "tf.keras 2.x", "PyTorch", "optax", "TensorFlow"}
    assert any("tf.nn.l2_loss" in c["api"] for c in body["conventions"])


def test_sgd_l2_equals_weight_decay_2lambda_biases_excluded(client: TestClient) -> None:
    lam = WD / 2
    l2 = train(client, {"name": "sgd", "learning_rate": LR}, {"type": "l2", "l2": lam})
    wd = train(client, {"name": "sgd", "learning_rate": LR, "weight_decay": 2 * lam,
                        "exclude_from_weight_decay": ["bias"]})
    assert close(l2, wd)
    decayed_bias = train(client, {"name": "sgd", "learning_rate": LR, "weight_decay": 2 * lam})
    assert not close(l2, decayed_bias)  # without the exclusion the bias decays too


@pytest.mark.parametrize("optimizer", [{"name": "sgd", "learning_rate": LR, "momentum": 0.9},
                                       {"name": "adam", "learning_rate": LR}])
def test_l2_and_weight_decay_differ_under_momentum_and_adam(client: TestClient, optimizer: dict) -> None:
    lam = WD / 2
    l2 = train(client, optimizer, {"type": "l2", "l2": lam})
    wd = train(client, {**optimizer, "weight_decay": 2 * lam, "exclude_from_weight_decay": ["bias"]})
    diff = np.max(np.abs(l2["dense/kernel"] - wd["dense/kernel"]))
    assert diff > 1e-3 * np.max(np.abs(l2["dense/kernel"]))
    if optimizer["name"] == "adam":  # AdamW is Adam with decoupled decay: the same pair
        adamw = train(client, {"name": "adamw", "learning_rate": LR, "weight_decay": 2 * lam,
                               "exclude_from_weight_decay": ["bias"]})
        assert close(adamw, wd)


@pytest.mark.parametrize("momentum", [0.0, 0.875])  # exact in float32, as Keras casts it
def test_pytorch_sgd_weight_decay_is_keras_l2_half(client: TestClient, momentum: float) -> None:
    """torch.optim.SGD(lr, momentum, weight_decay=wd): d = g + wd·w; buf = μ·buf + d; w −= lr·buf."""
    w = {k: v.copy() for k, v in W0.items()}
    buf = {k: np.zeros_like(v) for k, v in w.items()}
    for _ in range(STEPS):
        g = data_gradient(client, w)
        for k in w:
            d = g[k] + WD * w[k]
            buf[k] = momentum * buf[k] + d if momentum else d
            w[k] = w[k] - LR * buf[k]
    keras = train(client, {"name": "sgd", "learning_rate": LR, "momentum": momentum},
                  {"type": "l2", "l2": WD / 2}, {"type": "l2", "l2": WD / 2})
    assert close(keras, w)


def test_pytorch_adamw_and_optax_adamw_are_keras_adamw_at_eps_0(client: TestClient) -> None:
    b1, b2 = 0.875, 0.9921875  # exact in float32 (Keras casts β through float32 for βᵗ)
    torch_w = {k: v.copy() for k, v in W0.items()}
    optax_w = {k: v.copy() for k, v in W0.items()}
    m = {k: np.zeros_like(v) for k, v in W0.items()}
    v = {k: np.zeros_like(x) for k, x in W0.items()}
    for t in range(1, STEPS + 1):
        g = data_gradient(client, torch_w)
        for k in torch_w:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
            direction = (m[k] / (1 - b1**t)) / np.sqrt(v[k] / (1 - b2**t))
            # PyTorch AdamW: w ← w·(1 − lr·wd), then w ← w − lr·m̂/√v̂
            torch_w[k] = torch_w[k] * (1 - LR * WD) - LR * direction
            # optax.adamw: updates = −lr·(m̂/√v̂ + wd·w)
            optax_w[k] = optax_w[k] - LR * (direction + WD * optax_w[k])
    keras = train(client, {"name": "adamw", "learning_rate": LR, "weight_decay": WD, "epsilon": 0.0,
                           "beta_1": b1, "beta_2": b2})
    assert close(keras, torch_w) and close(keras, optax_w)


def test_tf_nn_l2_loss_is_keras_l2_half(client: TestClient) -> None:
    """λ·tf.nn.l2_loss(w) = λ·Σw²/2 with gradient λ·w."""
    w = W0["dense/kernel"]
    lam = 0.25
    r = client.post("/v1/penalty", json={"tensor": fp64(w), "regularizer": {"type": "l2", "l2": lam / 2}}).json()
    assert r["penalty"] == pytest.approx(lam * float(np.sum(w**2)) / 2, rel=1e-14)
    np.testing.assert_allclose(tensor(r["gradient"]), lam * w, rtol=1e-14)


def test_adamw_decay_compounds_with_the_number_of_steps(client: TestClient) -> None:
    """Seed 002: "a good weight decay for Adam depends on the number of batch passes". With no
    data gradient AdamW's step is only its decay, w ← w·(1 − lr·wd), so a run of T steps
    shrinks by (1 − lr·wd)^T: twice the steps (half the batch size, or twice the epochs)
    square the factor."""
    w = {"w": fp64(np.array([1.0, -2.0]))}
    zero = {"w": fp64(np.zeros(2))}
    state: Any = None
    shrink = []
    for _ in range(40):
        r = client.post("/v1/optimizer/step", json={"optimizer": {"name": "adamw", "learning_rate": LR,
                                                                  "weight_decay": WD},
                                                    "parameters": w, "gradients": zero, "state": state}).json()
        w, state = r["parameters"], r["state"]
        shrink.append(tensor(w["w"])[0])
    assert shrink[19] == pytest.approx((1 - LR * WD) ** 20, rel=1e-12)
    assert shrink[39] == pytest.approx(shrink[19] ** 2, rel=1e-12)
