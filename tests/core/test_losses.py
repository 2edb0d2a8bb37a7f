"""Losses: Keras closed forms, reduction, clipping, central-difference gradients, specs, stability."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from service.core import losses as L
from service.core.errors import NonFiniteError, ShapeError, SpecError
from tests.core.test_losses_all import SPECS as ALL_SPECS
from tests.gradcheck import assert_gradient, away_from_kinks

RNG = np.random.default_rng(20261123)
SPARSE = ("sparse_categorical_crossentropy", "categorical_generalized_cross_entropy", "circle")

T2 = np.array([[0.0, 1.0], [0.0, 0.0]], np.float32)
P2 = np.array([[0.6, 0.4], [0.4, 0.6]], np.float32)


def loss(spec: Any) -> L.Loss:
    return L.get(spec)


# --- closed forms (Keras docstring examples and hand computations) --------------------------


def test_mse_mae_huber_on_the_keras_example() -> None:
    assert loss("mse").value(T2, P2) == pytest.approx((0.36 + 0.36 + 0.16 + 0.36) / 4, rel=1e-6)
    assert loss("mae").value(T2, P2) == pytest.approx((0.6 + 0.6 + 0.4 + 0.6) / 4, rel=1e-6)
    assert loss("huber").value(T2, P2) == pytest.approx(0.155, rel=1e-6)  # keras.losses.huber doc
    assert loss("mse").value(T2, P2).dtype == np.float32


def test_binary_crossentropy_keras_examples() -> None:
    # keras.losses.binary_crossentropy doc: per sample [0.916, 0.714]
    per = [-(math.log(0.4) + math.log(0.4)) / 2, -(math.log(0.6) + math.log(0.4)) / 2]
    assert loss("bce").value(T2, P2) == pytest.approx(sum(per) / 2, rel=1e-6)
    # BinaryCrossentropy(from_logits=True) doc example (rank 1, one sample): 0.8654
    t = np.array([0, 1, 0, 0], np.float32)
    z = np.array([-18.6, 0.51, 2.94, -12.8], np.float32)
    assert loss({"name": "bce", "from_logits": True}).value(t, z) == pytest.approx(0.8654, abs=1e-4)
    t2, z2 = t.reshape(2, 2), z.reshape(2, 2)
    assert loss({"name": "bce", "from_logits": True}).value(t2, z2) == pytest.approx(0.8654, abs=1e-4)


def test_categorical_crossentropy_keras_example() -> None:
    t = np.array([[0, 1, 0], [0, 0, 1]], np.float32)
    p = np.array([[0.05, 0.95, 0], [0.1, 0.8, 0.1]], np.float32)
    # per sample [-log 0.95, -log 0.1] = [0.0513, 2.303]; sum over classes, mean over samples
    expected = (-math.log(0.95) - math.log(0.1)) / 2
    assert loss("categorical_crossentropy").value(t, p) == pytest.approx(expected, rel=1e-6)


def test_categorical_crossentropy_normalises_then_clips() -> None:
    # TF 2.21: value -log(0.5); gradient through p / Σp
    t = np.array([[0.0, 1.0, 0.0]], np.float32)
    p = np.array([[0.2, 0.6, 0.4]], np.float32)
    cce = loss("categorical_crossentropy")
    assert cce.value(t, p) == pytest.approx(math.log(2), rel=1e-6)
    np.testing.assert_allclose(cce.gradient(t, p), [[0.8333333, -0.8333333, 0.8333333]], rtol=1e-6)


def test_probability_clip_passes_the_gradient_at_its_bounds() -> None:
    # TF 2.21 tf.GradientTape on BinaryCrossentropy: [0, 0.25000003, -0.25000003, 0], 8.01512
    t = np.array([[1.0, 0.0, 1.0, 0.0]], np.float32)
    p = np.array([[0.0, 1e-7, 1 - 1e-7, 1.0]], np.float32)
    bce = loss("bce")
    assert bce.value(t, p) == pytest.approx(8.01512, rel=1e-6)
    np.testing.assert_allclose(bce.gradient(t, p), [[0.0, 0.25000003, -0.25000003, 0.0]], rtol=1e-6)


def test_no_epsilon_inside_the_log() -> None:
    # Keras 3.15 computes -log(0.5) exactly (tf.keras 2.x added 1e-7 inside the log)
    t = np.array([[1.0]])
    assert loss("bce").value(t, np.array([[0.5]])) == math.log(2)


def test_kink_conventions() -> None:
    t = np.array([[1.0, 2.0, 0.0]])
    p = np.array([[1.0, 3.0, -1.0]])
    np.testing.assert_array_equal(loss("mae").gradient(t, p), [[0.0, 1 / 3, -1 / 3]])  # sign(0) = 0
    # huber at |e| = delta: the quadratic branch (e), equal to delta*sign(e) there
    z = np.zeros((1, 3))
    e = np.array([[1.0, -1.0, 0.5]])
    np.testing.assert_allclose(loss("huber").gradient(z, e), [[1 / 3, -1 / 3, 0.5 / 3]], rtol=1e-15)
    assert loss("huber").value(z, e) == pytest.approx((0.5 + 0.5 + 0.125) / 3, rel=1e-15)


def test_huber_linear_branch() -> None:
    h = loss({"name": "huber", "delta": 2.0})
    t, p = np.array([[0.0, 0.0]]), np.array([[5.0, -1.0]])
    assert h.value(t, p) == pytest.approx((2 * 5 - 2 + 0.5) / 2, rel=1e-15)
    np.testing.assert_allclose(h.gradient(t, p), [[1.0, -0.5]], rtol=1e-15)


def test_sum_over_batch_size_reduction() -> None:
    t = RNG.normal(size=(2, 3, 4))
    p = RNG.normal(size=(2, 3, 4))
    assert loss("mse").value(t, p) == pytest.approx(np.mean((t - p) ** 2), rel=1e-14)
    assert loss("mae").value(t, p) == pytest.approx(np.mean(np.abs(t - p)), rel=1e-14)
    z = RNG.normal(size=(2, 3, 4))
    onehot = np.eye(4)[RNG.integers(0, 4, (2, 3))]
    logp = z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))
    expected = -np.sum(onehot * logp) / 6  # summed over classes, averaged over the 6 samples
    cce = loss({"name": "categorical_crossentropy", "from_logits": True})
    assert cce.value(onehot, z) == pytest.approx(expected, rel=1e-13)


def test_label_smoothing() -> None:
    t = np.array([[0.0, 1.0, 0.0]])
    p = np.array([[0.2, 0.5, 0.3]])
    cce = loss({"name": "categorical_crossentropy", "label_smoothing": 0.3})
    ts = t * 0.7 + 0.1
    assert cce.value(t, p) == pytest.approx(-np.sum(ts * np.log(p)), rel=1e-14)
    bce = loss({"name": "bce", "label_smoothing": 0.2})
    tb = t * 0.8 + 0.1
    expected = -np.mean(tb * np.log(p) + (1 - tb) * np.log(1 - p))
    assert bce.value(t, p) == pytest.approx(expected, rel=1e-14)


def test_logits_forms_equal_the_probability_forms_away_from_the_clip() -> None:
    t = RNG.integers(0, 2, (4, 3)).astype(float)
    z = RNG.normal(size=(4, 3))
    bce = loss("bce")
    assert bce.with_logits().value(t, z) == pytest.approx(bce.value(t, 1 / (1 + np.exp(-z))), rel=1e-12)
    onehot = np.eye(3)[RNG.integers(0, 3, 4)]
    cce = loss("categorical_crossentropy")
    soft = np.exp(z) / np.sum(np.exp(z), axis=-1, keepdims=True)
    assert cce.with_logits().value(onehot, z) == pytest.approx(cce.value(onehot, soft), rel=1e-12)


def test_with_logits() -> None:
    b = loss({"name": "bce", "label_smoothing": 0.1}).with_logits()
    assert b.params == {"from_logits": True, "label_smoothing": 0.1, "axis": -1, "reduction": "sum_over_batch_size"}
    assert loss("categorical_crossentropy").with_logits().params["from_logits"] is True
    assert loss("bce").takes_logits and not loss("mse").takes_logits
    for name in ("mse", "mae", "huber"):
        with pytest.raises(SpecError, match="from_logits"):
            loss(name).with_logits()


def test_cce_logits_gradient_is_the_derivative_for_unnormalised_targets() -> None:
    # TF's kernel returns softmax - t here ([-0.40997, -0.75527, 0.66524]); the service
    # returns the derivative of the value, softmax * Σt - t.
    t = np.array([[0.5, 1.0, 0.0]])
    z = np.array([[1.0, 2.0, 3.0]])
    soft = np.exp(z) / np.exp(z).sum()
    cce = loss({"name": "categorical_crossentropy", "from_logits": True})
    np.testing.assert_allclose(cce.gradient(t, z), soft * 1.5 - t, rtol=1e-14)
    assert cce.value(t, z) == pytest.approx(2.6114087, rel=1e-7)  # Keras's value


# --- shapes and dtypes ---------------------------------------------------------------------


def test_trailing_axis_of_one_is_aligned_as_keras() -> None:
    t = RNG.normal(size=6)
    p = RNG.normal(size=6)
    for name in ("mse", "mae", "huber", "bce"):
        ls = loss(name)
        tt = np.abs(t) / 4 if name == "bce" else t
        pp = 1 / (1 + np.exp(-p)) if name == "bce" else p
        base = ls.value(tt, pp)
        assert ls.value(tt[:, None], pp) == pytest.approx(base, rel=1e-14)
        assert ls.value(tt, pp[:, None]) == pytest.approx(base, rel=1e-14)
        assert ls.gradient(tt, pp[:, None]).shape == (6, 1)
        np.testing.assert_allclose(ls.gradient(tt[:, None], pp), ls.gradient(tt, pp), rtol=1e-14)
    # (6, 1) vs (6,): rank-1 y_pred gains the axis: 6 one-class samples (as Keras, value ≈ 0)
    cce = loss("categorical_crossentropy")
    assert cce.value(np.ones((6, 1)), np.full(6, 0.3)) == pytest.approx(-math.log(1 - 1e-7), rel=1e-6)


def test_rank_one_is_one_sample() -> None:
    t, p = np.array([0.0, 1.0, 0.0]), np.array([0.2, 0.5, 0.3])
    assert loss("categorical_crossentropy").value(t, p) == pytest.approx(-math.log(0.5), rel=1e-15)
    assert loss("mse").value(t, p) == pytest.approx((0.04 + 0.25 + 0.09) / 3, rel=1e-15)


@pytest.mark.parametrize(
    ("t_shape", "p_shape"), [((2, 3), (3,)), ((2, 3), (2, 4)), ((4, 2), (4,)), ((2, 3, 1), (3,))]
)
def test_shape_mismatch_names_both_shapes(t_shape: tuple[int, ...], p_shape: tuple[int, ...]) -> None:
    with pytest.raises(ShapeError) as info:
        loss("mse").value(np.zeros(t_shape), np.zeros(p_shape))
    assert str(list(t_shape)) in info.value.message and str(list(p_shape)) in info.value.message
    assert info.value.field == "y_true"


def test_scalars_are_refused_and_empty_batches_give_zero() -> None:
    with pytest.raises(ShapeError, match="rank"):
        loss("mse").value(np.array(1.0), np.array(2.0))
    for name in L.NAMES:
        t = np.zeros((0,)) if name in SPARSE else np.zeros((0, 3))
        assert loss(name).value(t, np.zeros((0, 3))) == 0.0
        assert loss(name).gradient(t, np.zeros((0, 3))).shape == (0, 3)


def test_zero_probability_row_is_refused() -> None:
    with pytest.raises(NonFiniteError, match="sums to 0") as info:
        loss("categorical_crossentropy").value(np.eye(2), np.array([[0.5, 0.5], [0.0, 0.0]]))
    assert info.value.field == "y_pred"


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("name", L.NAMES)
def test_value_and_gradient_keep_y_pred_dtype(name: str, dtype: type) -> None:
    t = np.eye(4)[RNG.integers(0, 4, 5)].astype(np.int64)  # integer labels are cast
    if name in SPARSE:
        t = RNG.integers(0, 4, 5)
    elif name == "circle":
        t = np.array([0, 1, 0, 1, 1])
    elif name == "mean_absolute_percentage_error":
        t = t + 1  # |t − p|/1e-7 at t = 0 overflows float16
    p = RNG.uniform(0.1, 0.9, (5, 4)).astype(dtype)
    v = loss(name).value(t, p)
    g = loss(name).gradient(t, p)
    assert isinstance(v, np.floating) and v.dtype == dtype
    assert g.dtype == dtype and g.shape == p.shape
    ref = loss(name).value(t, p.astype(np.float64))
    assert float(v) == pytest.approx(float(ref), rel=2e-3 if dtype == np.float16 else 1e-6)


def test_non_float_predictions_are_refused() -> None:
    with pytest.raises(SpecError, match="dtype"):
        loss("mse").value(np.zeros(3), np.array([1, 2, 3]))
    with pytest.raises(SpecError, match="y_true"):
        loss("mse").value(np.array(["a", "b"]), np.zeros(2))


# --- central differences -------------------------------------------------------------------

GRAD_SPECS: list[Any] = [
    "mean_squared_error",
    "mean_absolute_error",
    {"name": "huber", "delta": 0.5},
    {"name": "huber", "delta": 1.0},
    {"name": "huber", "delta": 2.5},
    {"name": "binary_crossentropy", "from_logits": False},
    {"name": "binary_crossentropy", "from_logits": True},
    {"name": "binary_crossentropy", "label_smoothing": 0.2},
    {"name": "binary_crossentropy", "from_logits": True, "label_smoothing": 0.1},
    {"name": "categorical_crossentropy", "from_logits": False},
    {"name": "categorical_crossentropy", "from_logits": True},
    {"name": "categorical_crossentropy", "label_smoothing": 0.1},
    {"name": "categorical_crossentropy", "from_logits": True, "label_smoothing": 0.3},
]


def _inputs(ls: L.Loss, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    logits = ls.params.get("from_logits", False)
    if ls.name == "categorical_crossentropy":
        t = RNG.uniform(0, 1, shape)  # soft, unnormalised targets test the general formula
        p = RNG.normal(0, 2, shape) if logits else RNG.uniform(0.05, 1.0, shape)
        return t, p
    if ls.name == "binary_crossentropy":
        t = RNG.uniform(0, 1, shape)
        p = RNG.normal(0, 2, shape) if logits else RNG.uniform(0.02, 0.98, shape)
        return t, p
    t = RNG.normal(size=shape)
    kinks: tuple[float, ...] = (0.0,)  # mae's kink (harmless for mse)
    if ls.name == "huber":
        delta = ls.params["delta"]
        kinks = (-delta, delta)
    e = away_from_kinks(RNG.normal(0, 2, shape), kinks, margin=1e-3)
    return t, t + e


def test_every_loss_has_a_gradient_case() -> None:
    assert {loss(s).name for s in GRAD_SPECS} | {s["name"] for s in ALL_SPECS} == set(L.NAMES)


@pytest.mark.parametrize("spec", GRAD_SPECS, ids=str)
@pytest.mark.parametrize("shape", [(5,), (4, 3), (2, 3, 4)])
def test_gradient_matches_central_differences(spec: Any, shape: tuple[int, ...]) -> None:
    ls = loss(spec)
    t, p = _inputs(ls, shape)

    def f(x: np.ndarray) -> float:
        return float(ls.value(t, x))

    assert_gradient(f, ls.gradient(t, p), p, rtol=1e-5, atol=1e-8)


# --- specs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*L.NAMES, "mse", "MSE", "mae", "MAE", "bce", "BCE"])
def test_get_config_round_trips(name: str) -> None:
    ls = loss(name)
    cfg = ls.get_config()
    assert cfg["name"] == ls.name and ls.name in L.NAMES
    assert loss(cfg) == ls and hash(loss(cfg)) == hash(ls)
    assert loss(ls) is ls


def test_aliases_and_defaults() -> None:
    assert loss("mse").name == "mean_squared_error"
    assert loss("mae").name == "mean_absolute_error"
    assert loss("bce").name == "binary_crossentropy"
    default = {"reduction": "sum_over_batch_size"}
    assert loss("huber").params == {"delta": 1.0, **default}
    assert loss({"name": "huber", "delta": 2}).get_config() == {"name": "huber", "delta": 2.0, **default}
    assert loss("categorical_crossentropy").params == {
        "from_logits": False, "label_smoothing": 0.0, "axis": -1, **default}
    assert loss("mse").params == default
    assert loss("kld").name == "kl_divergence" and loss("MSLE").name == "mean_squared_logarithmic_error"
    assert loss("binary_focal_crossentropy").params == {
        "apply_class_balancing": False, "alpha": 0.25, "gamma": 2.0, "from_logits": False,
        "label_smoothing": 0.0, "axis": -1, **default}
    assert loss("sparse_categorical_crossentropy").params == {
        "from_logits": False, "ignore_class": None, "axis": -1, **default}
    assert loss("tversky").params == {"alpha": 0.5, "beta": 0.5, "axis": None, **default}
    assert loss({"name": "mse", "reduction": None}).params == {"reduction": "none"}


def test_describe() -> None:
    d = {e["name"]: e for e in L.describe()}
    assert tuple(d) == L.NAMES
    assert d["mean_squared_error"]["aliases"] == ["mse", "MSE", "MeanSquaredError"]
    assert d["huber"]["aliases"] == ["Huber"]
    assert d["huber"]["parameters"] == {"delta": 1.0, "reduction": "sum_over_batch_size"}
    assert d["binary_crossentropy"]["parameters"] == {
        "from_logits": False, "label_smoothing": 0.0, "axis": -1, "reduction": "sum_over_batch_size"}
    assert all(e["formula"] for e in d.values())


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ("mean_squared_logaritmic_error", "loss", ["mean_squared_logaritmic_error", "huber", "mse"]),
        ({"name": "hubber"}, "name", ["hubber", "huber"]),
        ({"name": "mse", "delta": 1.0}, "delta", ["delta", "mean_squared_error", "reduction"]),
        ({"name": "huber", "delta_": 1.0}, "delta_", ["delta_", "delta"]),
        ({"name": "huber", "delta": 0.0}, "delta", ["delta", "> 0"]),
        ({"name": "huber", "delta": -1.0}, "delta", ["delta"]),
        ({"name": "huber", "delta": float("nan")}, "delta", ["delta", "finite"]),
        ({"name": "huber", "delta": "1"}, "delta", ["delta", "number"]),
        ({"name": "bce", "from_logits": "yes"}, "from_logits", ["from_logits", "true or false"]),
        ({"name": "bce", "from_logits": 1}, "from_logits", ["from_logits"]),
        ({"name": "bce", "label_smoothing": 1.5}, "label_smoothing", ["label_smoothing", "[0, 1]"]),
        ({"name": "bce", "axes": 1}, "axes", ["axes", "from_logits", "label_smoothing", "axis"]),
        ({"from_logits": True}, "name", ["name"]),
    ],
)
def test_spec_errors_name_the_problem(spec: Any, field: str, words: list[str]) -> None:
    with pytest.raises(SpecError) as info:
        loss(spec)
    assert info.value.field == field
    for word in words:
        assert word in info.value.message


def test_spec_of_the_wrong_type() -> None:
    with pytest.raises(SpecError, match="list"):
        loss(["mse"])  # type: ignore[arg-type]


# --- stability -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["binary_crossentropy", "categorical_crossentropy"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_logits_far_out_are_finite_without_fp_errors(name: str, dtype: type) -> None:
    big = 6e4 if dtype == np.float16 else 1e4
    z = np.array([[-big, big, 0.0], [big, big, -big], [1e-30, -1e-30, 3.0]]).astype(dtype)
    t = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    ls = loss({"name": name, "from_logits": True})
    with np.errstate(all="raise"):
        v = ls.value(t, z)
        g = ls.gradient(t, z)
    assert np.isfinite(v) and np.all(np.isfinite(g))
    if dtype != np.float16:
        assert float(v) > big / 10  # the misclassified rows cost ~|z|, not a clipped log(1e-7)


@pytest.mark.parametrize("name", ["binary_crossentropy", "categorical_crossentropy"])
def test_probabilities_at_and_beyond_the_bounds_are_finite(name: str) -> None:
    t = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    p = np.array([[0.0, 1.0, 0.0], [1e-45, 1.0, 2.0]], np.float32)
    with np.errstate(all="raise"):
        v = loss(name).value(t, p)
        g = loss(name).gradient(t, p)
    assert np.isfinite(v) and np.all(np.isfinite(g))


def test_overflow_is_inf_not_an_exception() -> None:
    t = np.zeros((1, 2), np.float32)
    p = np.full((1, 2), 3e38, np.float32)
    with np.errstate(all="raise"):
        assert np.isinf(loss("mse").value(t, p))
