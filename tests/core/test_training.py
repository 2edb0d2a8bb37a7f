"""Training runs: Keras ``fit(shuffle=False)`` reproduced (vectors/fit_runs.json), History
semantics, shuffling, recording, the proximal L1 step and the price of a run.

Tolerance for the Keras runs (2–20 steps): FP32 final weights rtol 1e-5 (atol 1e-6 for
weights passing near 0), losses rtol 1e-5; FP64 (Keras with floatx float64, hyperparameters
exact in float32) weights rtol 1e-10, losses 1e-12.  Keras's per-batch ``logs["loss"]`` is a running
mean over the epoch, reconstructed here from the service's per-step losses.
"""

from __future__ import annotations

import numpy as np
import pytest

from service.core import optimizers
from service.core.network import LayerSpec
from service.core.training import TooExpensive, TrainConfig, history_size, price, run, train
from tests.reference.training_vectors import cases
from tests.reference.vectors import arrays

FITS = cases("fit_runs")


def config_of(request: dict, **extra: object) -> TrainConfig:
    req = arrays(request)
    layers = [LayerSpec(kernel=layer["kernel"], bias=layer.get("bias"), activation=layer.get("activation"),
                        kernel_regularizer=layer.get("kernel_regularizer"),
                        bias_regularizer=layer.get("bias_regularizer"),
                        activity_regularizer=layer.get("activity_regularizer"), name=layer.get("name"))
              for layer in req["layers"]]
    return TrainConfig(req["inputs"], req["targets"], layers, req["loss"], optimizers.get(req["optimizer"]),
                       epochs=req["epochs"], batch_size=req["batch_size"], shuffle=req["shuffle"], **extra)


@pytest.mark.parametrize("case", FITS, ids=[c["id"] for c in FITS])
def test_matches_keras_fit(case: dict) -> None:
    cfg = config_of(case["request"])
    result = train(cfg)
    expected = case["expected"]
    fp64 = cfg.inputs.dtype == np.float64
    rtol, atol = (1e-10, 1e-13) if fp64 else (1e-5, 1e-6)
    for name, want in arrays(expected["weights"]).items():
        assert result.weights[name].dtype == want.dtype
        np.testing.assert_allclose(result.weights[name], want, rtol=rtol, atol=atol, err_msg=name)
    np.testing.assert_allclose(result.epoch_losses["total"], expected["history_loss"], rtol=1e-12 if fp64 else 1e-5)
    # Keras's per-batch logs: running batch-size-weighted means of the step losses.
    n, bs = cfg.inputs.shape[0], cfg.batch_size
    sizes = [min(bs, n - i) for i in range(0, n, bs)]
    totals = iter(result.history["losses"]["total"])
    for logs in expected["batch_logs"]:
        acc = seen = 0.0
        for size, want in zip(sizes, logs, strict=True):
            acc += next(totals) * size
            seen += size
            assert acc / seen == pytest.approx(want, rel=1e-12 if fp64 else 1e-5)


def small(**extra: object) -> TrainConfig:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(9, 3))
    t = x @ np.array([[1.0], [-2.0], [0.0]])
    layer = LayerSpec(kernel=rng.normal(size=(3, 1)), bias=np.zeros(1), kernel_regularizer={"type": "l1", "l1": 0.05})
    defaults: dict[str, object] = {"optimizer": optimizers.get({"name": "sgd", "learning_rate": 0.05}),
                                   "epochs": 3, "batch_size": 4}
    defaults.update(extra)
    return TrainConfig(x, t, [layer], **defaults)  # type: ignore[arg-type]


def test_progress_then_result_and_history_shape() -> None:
    loop = run(small(record_every=2))
    progress = []
    try:
        while True:
            progress.append(next(loop))
    except StopIteration as done:
        result = done.value
    assert [p.step for p in progress] == list(range(1, 10)) and progress[-1].steps == 9
    assert [p.epoch for p in progress] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert result.history["step"] == [1, 3, 5, 7, 9]
    assert set(result.history["losses"]) == {"data_loss", "dense/kernel_regularizer", "total"}
    assert set(result.history["gradient_norms"]["dense/kernel"]) == {"data_loss", "dense/kernel_regularizer", "total"}
    assert set(result.history["weights"]["dense/kernel"]["sparsity"]) == {"0", "0.001"}
    # The epoch loss is the batch-size-weighted mean of its steps (4, 4, 1 samples).
    first = [p.losses["total"] for p in progress[:3]]
    assert result.epoch_losses["total"][0] == pytest.approx((4 * first[0] + 4 * first[1] + first[2]) / 9, rel=1e-12)
    assert result.optimizer_state.iterations == 9


def test_weight_stats_closed_form() -> None:
    result = train(small(epochs=1, sparsity_tolerances=(0.0, 10.0)))
    w0 = small().layers[0].kernel
    stats = result.history["weights"]["dense/kernel"]
    assert stats["l1"][0] == pytest.approx(np.abs(w0).sum(), rel=1e-12)
    assert stats["l2"][0] == pytest.approx(np.linalg.norm(w0), rel=1e-12)
    assert stats["max_abs"][0] == pytest.approx(np.abs(w0).max(), rel=1e-12)
    assert stats["sparsity"]["10"][0] == 1.0 and stats["sparsity"]["0"][0] == 0.0


def test_shuffle_is_a_seeded_permutation() -> None:
    a, b, c = train(small(shuffle=True, seed=1)), train(small(shuffle=True, seed=1)), train(small(shuffle=True, seed=2))
    assert a.history == b.history
    assert a.history["losses"]["total"] != c.history["losses"]["total"]
    plain = train(small())
    assert plain.history["losses"]["total"] != a.history["losses"]["total"]
    # With one batch per epoch the order cannot matter (up to float rounding).
    full = train(small(batch_size=9, shuffle=True)), train(small(batch_size=9))
    np.testing.assert_allclose(full[0].weights["dense/kernel"], full[1].weights["dense/kernel"], rtol=1e-12)


def test_l1_proximal_gives_exact_zeros_and_plain_l1_does_not() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(32, 6))
    t = x[:, :1] * 2.0 + 0.01 * rng.normal(size=(32, 1))
    layer = LayerSpec(kernel=rng.normal(size=(6, 1)) * 0.3, kernel_regularizer={"type": "l1", "l1": 0.05})
    opt = optimizers.get({"name": "sgd", "learning_rate": 0.05})
    plain = train(TrainConfig(x, t, [layer], optimizer=opt, epochs=200, batch_size=32))
    prox = train(TrainConfig(x, t, [layer], optimizer=opt, epochs=200, batch_size=32, l1_proximal=True))
    assert np.count_nonzero(plain.weights["dense/kernel"] == 0) == 0
    assert np.count_nonzero(prox.weights["dense/kernel"] == 0) >= 4
    assert prox.weights["dense/kernel"][0, 0] > 1.5  # the relevant feature survives


def test_proximal_step_is_soft_thresholding() -> None:
    """One SGD step: w ← S(w − lr·∂data, lr·λ1) with S(v, τ) = sign(v)·max(|v| − τ, 0)."""
    x, t = np.array([[1.0, 0.5]]), np.array([[0.3]])
    w0 = np.array([[0.02], [-0.4]])
    layer = LayerSpec(kernel=w0, kernel_regularizer={"type": "l1", "l1": 2.0})
    lr = 0.1
    r = train(TrainConfig(x, t, [layer], optimizer=optimizers.get({"name": "sgd", "learning_rate": lr}),
                          batch_size=1, l1_proximal=True))
    lr32 = float(np.float32(lr))
    g = 2 * (x @ w0 - t) * x.T  # MSE over one output
    v = w0 - lr32 * g
    want = np.sign(v) * np.maximum(np.abs(v) - lr32 * 2.0, 0)  # v = [0.116, -0.352], τ = 0.2
    np.testing.assert_allclose(r.weights["dense/kernel"], want, rtol=1e-12)
    assert r.weights["dense/kernel"][0, 0] == 0.0


def test_price_grows_with_steps_and_deadline_stops_the_run() -> None:
    assert price(small(epochs=6)) == 2 * price(small(epochs=3))
    with pytest.raises(TooExpensive, match="after 0 of 9 steps"):
        train(small(), deadline=0.0)


@pytest.mark.parametrize(("extra", "field"), [({"epochs": 0}, "epochs"), ({"batch_size": 0}, "batch_size"),
                                               ({"record_every": 0}, "record.every"),
                                               ({"sparsity_tolerances": (-1.0,)}, "record.sparsity_tolerances")])
def test_bad_settings_name_the_field(extra: dict, field: str) -> None:
    with pytest.raises(Exception) as err:
        train(small(**extra))
    assert getattr(err.value, "field", None) == field


def test_the_loop_applies_the_gradient_of_total_central_differences() -> None:
    """FP64, one SGD step on the whole batch: (w₀ − w₁)/lr is the central-difference gradient
    of the recorded ``total`` with respect to each parameter, and its norm is the recorded
    ``gradient_norms[p]["total"]``."""
    from service.core.network import network
    from tests.gradcheck import assert_gradient

    rng = np.random.default_rng(5)
    x, t = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    spec = [LayerSpec(kernel=rng.normal(size=(3, 4)), bias=rng.normal(size=4), activation="tanh",
                      kernel_regularizer={"type": "l2", "l2": 0.1}, activity_regularizer={"type": "l2", "l2": 0.05}),
            LayerSpec(kernel=rng.normal(size=(4, 2)), bias=rng.normal(size=2), activation="sigmoid",
                      bias_regularizer={"type": "l2", "l2": 0.2})]
    lr = 0.5  # exact in float32
    r = train(TrainConfig(x, t, spec, "huber", optimizers.get({"name": "sgd", "learning_rate": lr}),
                          batch_size=6))
    names = {"dense/kernel": (0, "kernel"), "dense/bias": (0, "bias"), "dense_1/kernel": (1, "kernel"),
             "dense_1/bias": (1, "bias")}
    for param, (i, attr) in names.items():
        w0 = getattr(spec[i], attr)
        applied = (w0 - r.weights[param]) / lr

        def total(w: np.ndarray, i: int = i, attr: str = attr) -> float:
            layers = list(spec)
            layers[i] = LayerSpec(**{**vars(spec[i]), attr: w})
            return float(network(x, t, layers, "huber", return_gradients=False).losses["total"])

        assert_gradient(total, applied, w0, rtol=1e-6, atol=1e-9)
        assert r.history["gradient_norms"][param]["total"][0] == pytest.approx(np.linalg.norm(applied), rel=1e-9)


def test_history_size_counts_every_recorded_number() -> None:
    cfg = small(record_every=2, sparsity_tolerances=(0.0, 0.001, 0.1))
    h = train(cfg).history
    counted = (len(h["step"]) * 3 + sum(map(len, h["losses"].values()))
               + sum(len(v) for terms in h["gradient_norms"].values() for v in terms.values())
               + sum(len(s["l1"]) + len(s["l2"]) + len(s["max_abs"]) + sum(map(len, s["sparsity"].values()))
                     for s in h["weights"].values()))
    assert history_size(cfg) == counted
    assert history_size(small(record_every=3)) == 2 * history_size(small(record_every=9))  # 1, 4, 7, 9 vs 1, 9
