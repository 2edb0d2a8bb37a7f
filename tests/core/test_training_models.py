"""Training runs over Keras models other than Dense chains (the model path of the loop).

Keras reference (vectors/fit_models.json, ``model.fit(shuffle=False)`` in FP32): a
Conv2D→BatchNormalization→Flatten→Dense model (moving statistics compared too), an
Embedding→GlobalAveragePooling1D→Dense model and a Functional two-input model with Add and
a frozen layer.  Tolerance: final weights rtol 2e-6 × steps (FP32 rounding grows with the
number of steps; 6–12 here), atol 1e-6 for weights near 0; losses rtol 1e-5.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from service.core import keras_config, optimizers
from service.core.layers.reshaping import Dropout
from service.core.model import evaluate
from service.core.training import TrainConfig, history_size, price, train
from tests.gradcheck import assert_gradient
from tests.reference.training_vectors import cases
from tests.reference.vectors import arrays

FITS = cases("fit_models")


def config_of(request: dict[str, Any], **extra: Any) -> TrainConfig:
    req = arrays(request)
    return TrainConfig(req["inputs"], req["targets"], [], req["loss"], optimizers.get(req["optimizer"]),
                       epochs=req["epochs"], batch_size=req["batch_size"], shuffle=req["shuffle"],
                       model=keras_config.from_config(req["model"]), weights=req["weights"], **extra)


@pytest.mark.parametrize("case", FITS, ids=[c["id"] for c in FITS])
def test_matches_keras_fit(case: dict[str, Any]) -> None:
    cfg = config_of(case["request"])
    result = train(cfg)
    expected = case["expected"]
    want = arrays(expected["weights"])
    assert list(result.weights) == list(want)  # every weight, moving statistics and frozen ones included
    for name, w in want.items():
        assert result.weights[name].dtype == np.float32
        np.testing.assert_allclose(result.weights[name], w, rtol=2e-6 * result.steps, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(result.epoch_losses["total"], expected["history_loss"], rtol=1e-5)
    n = cfg.targets.shape[0]
    sizes = [min(cfg.batch_size, n - i) for i in range(0, n, cfg.batch_size)]
    totals = iter(result.history["losses"]["total"])
    for logs in expected["batch_logs"]:  # Keras's running batch-size-weighted means
        acc = seen = 0.0
        for size, logged in zip(sizes, logs, strict=True):
            acc += next(totals) * size
            seen += size
            assert acc / seen == pytest.approx(logged, rel=1e-5)


def test_only_trainable_weights_are_recorded_and_frozen_ones_stay() -> None:
    two = next(c for c in FITS if c["id"].startswith("two_input"))
    cfg = config_of(two["request"])
    r = train(cfg)
    assert set(r.history["weights"]) == set(r.history["gradient_norms"]) == {
        "dense_a/kernel", "dense_a/bias", "out/kernel", "out/bias"}
    assert set(r.optimizer_state.slots) == set(r.history["weights"])
    assert "dense_b/kernel_regularizer" not in r.history["losses"]  # frozen: not regularized, as in Keras
    for name in ("dense_b/kernel", "dense_b/bias"):
        np.testing.assert_array_equal(r.weights[name], cfg.weights[name])  # type: ignore[index]
    conv = config_of(FITS[0]["request"])
    h = train(conv).history
    assert not any("moving" in k for k in h["weights"]) and "batch_normalization/gamma_regularizer" in h["losses"]


def _fp64(request: dict[str, Any]) -> dict[str, Any]:
    out = dict(request)
    for key in ("inputs", "targets"):
        out[key] = {**request[key], "datatype": "FP64"}
    out["weights"] = {k: {**v, "datatype": "FP64"} for k, v in request["weights"].items()}
    return out


def test_the_model_step_applies_the_gradient_of_total_central_differences() -> None:
    """FP64, one SGD step on the whole batch of the Conv2D→BatchNormalization model:
    (w₀ − w₁)/lr is the central-difference gradient of ``total`` (training mode, batch
    statistics) for every trainable weight; the moving statistics become the pass's updates."""
    req = {**_fp64(FITS[0]["request"]), "optimizer": {"name": "sgd", "learning_rate": 0.5}, "epochs": 1,
           "batch_size": 8}
    cfg = config_of(req)
    r = train(cfg)
    assert cfg.weights is not None and cfg.model is not None
    w0 = dict(cfg.weights)
    x, t = cfg.inputs, cfg.targets
    first = evaluate(cfg.model, w0, x, t, req["loss"], training=True, diagnose=False)
    for name in ("batch_normalization/moving_mean", "batch_normalization/moving_variance"):
        np.testing.assert_allclose(r.weights[name], first.updates[name], rtol=1e-15)
        assert not np.allclose(r.weights[name], w0[name])
    for param in r.history["weights"]:
        applied = (w0[param] - r.weights[param]) / 0.5

        def total(w: np.ndarray, param: str = param) -> float:
            assert cfg.model is not None
            out = evaluate(cfg.model, {**w0, param: w}, x, t, req["loss"], training=True, return_gradients=False,
                           diagnose=False)
            return float(out.losses["total"])

        assert_gradient(total, applied, w0[param], rtol=1e-6, atol=1e-9)
        assert r.history["gradient_norms"][param]["total"][0] == pytest.approx(np.linalg.norm(applied), rel=1e-9)


DROPOUT_MODEL = {"class_name": "Sequential", "config": {"name": "drop", "layers": [
    {"class_name": "InputLayer", "config": {"batch_shape": [None, 4], "name": "x"}},
    {"class_name": "Dense", "config": {"name": "dense", "units": 6, "activation": "tanh"}},
    {"class_name": "Dropout", "config": {"name": "dropout", "rate": 0.5, "seed": 3}},
    {"class_name": "Dense", "config": {"name": "dense_1", "units": 1}}]}}


def _dropout_run(seed: int, epochs: int = 3) -> tuple[TrainConfig, Any]:
    rng = np.random.default_rng(11)
    weights = {"dense/kernel": rng.normal(size=(4, 6)), "dense/bias": np.zeros(6),
               "dense_1/kernel": rng.normal(size=(6, 1)), "dense_1/bias": np.zeros(1)}
    cfg = TrainConfig(rng.normal(size=(8, 4)), rng.normal(size=(8, 1)), [], "mse",
                      optimizers.get({"name": "sgd", "learning_rate": 0.1}), epochs=epochs, batch_size=8, seed=seed,
                      model=keras_config.from_config(DROPOUT_MODEL), weights=weights)
    return cfg, train(cfg)


def test_dropout_masks_are_seeded_per_step_and_runs_are_deterministic() -> None:
    cfg, a = _dropout_run(0)
    _, b = _dropout_run(0)
    _, c = _dropout_run(1)
    for name in a.weights:
        np.testing.assert_array_equal(a.weights[name], b.weights[name])
    assert not np.array_equal(a.weights["dense/kernel"], c.weights["dense/kernel"])
    # step k uses default_rng(SeedSequence([layer seed 3, run seed 0, k])): the documented rule
    model = keras_config.from_config(DROPOUT_MODEL)
    layer = next(n.layer for n in model.nodes.values() if isinstance(n.layer, Dropout))
    assert cfg.weights is not None
    losses = []
    for k in (1, 2):
        layer.seed = int(np.random.SeedSequence([3, 0, k]).generate_state(1)[0])
        losses.append(float(evaluate(model, cfg.weights, cfg.inputs, cfg.targets, "mse", training=True,
                                     return_gradients=False, diagnose=False).losses["total"]))
    assert a.history["losses"]["total"][0] == pytest.approx(losses[0], rel=1e-12)
    assert losses[0] != losses[1]  # a new mask each step


def test_l1_proximal_on_a_model_gives_exact_zeros() -> None:
    emb = next(c for c in FITS if c["id"].startswith("embedding"))
    req = json_copy(emb["request"])
    req["model"]["config"]["layers"][1]["config"]["embeddings_regularizer"] = {
        "class_name": "L1", "config": {"l1": 0.05}}
    req["optimizer"] = {"name": "sgd", "learning_rate": 0.5}
    req["epochs"] = 30
    plain = train(config_of(req))
    prox = train(config_of(req, l1_proximal=True))
    assert np.count_nonzero(plain.weights["embedding/embeddings"] == 0) == 0
    assert np.count_nonzero(prox.weights["embedding/embeddings"] == 0) > 0
    assert prox.history["weights"]["embedding/embeddings"]["sparsity"]["0"][-1] > 0


def json_copy(obj: Any) -> Any:
    import json

    return json.loads(json.dumps(obj))


def test_price_and_history_size_of_a_model_run() -> None:
    req = FITS[0]["request"]
    assert price(config_of({**req, "epochs": 6})) == 2 * price(config_of({**req, "epochs": 3}))
    assert price(config_of({**req, "batch_size": 8})) < price(config_of(req))  # half the steps, same work per sample
    cfg = config_of(req, record_every=2, sparsity_tolerances=(0.0, 0.1))
    h = train(cfg).history
    counted = (len(h["step"]) * 3 + sum(map(len, h["losses"].values()))
               + sum(len(v) for terms in h["gradient_norms"].values() for v in terms.values())
               + sum(len(s["l1"]) + len(s["l2"]) + len(s["max_abs"]) + sum(map(len, s["sparsity"].values()))
                     for s in h["weights"].values()))
    assert history_size(cfg) == counted  # exact without activity regularizers
