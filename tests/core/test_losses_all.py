"""Every loss, every reduction, with and without sample_weight: central differences in float64."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from service.core import losses
from service.core.errors import NonFiniteError, ShapeError, SpecError
from tests.gradcheck import assert_gradient

RNG_SEED = 8


def _inputs(name: str, params: dict[str, Any], shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Inputs inside each loss's smooth region (away from clip bounds, kinks and ties)."""
    rng = np.random.default_rng(RNG_SEED)
    k = shape[-1]
    if name == "circle":  # one label per row, each label twice; embeddings of norm ~1
        return np.arange(shape[0]) % 2 * 1.0, rng.normal(0, 0.6, shape)
    if name in ("sparse_categorical_crossentropy", "categorical_generalized_cross_entropy"):
        t = rng.integers(0, k, shape[:-1]).astype(np.float64)
        if params.get("ignore_class") is not None:
            t.flat[0] = params["ignore_class"]
        p = rng.uniform(0.1, 0.9, shape)
        return t, (rng.normal(0, 2, shape) if params.get("from_logits") else p)
    if name in ("categorical_crossentropy", "categorical_focal_crossentropy", "kl_divergence"):
        t = np.eye(k)[rng.integers(0, k, shape[:-1])] if name != "kl_divergence" else rng.uniform(0.05, 1, shape)
        p = rng.uniform(0.1, 0.9, shape)
        return t, (rng.normal(0, 2, shape) if params.get("from_logits") else p)
    if name in ("binary_crossentropy", "binary_focal_crossentropy", "dice", "tversky"):
        t = (rng.uniform(size=shape) > 0.5).astype(np.float64)
        p = rng.uniform(0.1, 0.9, shape)
        return t, (rng.normal(0, 2, shape) if params.get("from_logits") else p)
    if name in ("hinge", "squared_hinge", "categorical_hinge"):
        t = (rng.uniform(size=shape) > 0.5).astype(np.float64)
        if name == "categorical_hinge":
            t = np.eye(k)[rng.integers(0, k, shape[:-1])]
        return t, rng.normal(0, 1.5, shape)
    if name in ("poisson", "mean_squared_logarithmic_error"):
        return rng.uniform(0, 3, shape), rng.uniform(0.2, 3, shape)
    t, p = rng.normal(0, 1, shape), rng.normal(0, 1, shape)
    if name in ("mean_absolute_error", "mean_absolute_percentage_error", "huber"):
        p = t + np.where(rng.uniform(size=shape) > 0.5, 1, -1) * rng.uniform(0.1, 2, shape)
    return t, p


SPECS: list[dict[str, Any]] = [
    {"name": n} for n in losses.NAMES
] + [
    {"name": "huber", "delta": 0.3},
    {"name": "cosine_similarity", "axis": 0},
    {"name": "binary_crossentropy", "from_logits": True, "label_smoothing": 0.2},
    {"name": "binary_crossentropy", "axis": 0},
    {"name": "binary_focal_crossentropy", "from_logits": True, "gamma": 3.0},
    {"name": "binary_focal_crossentropy", "apply_class_balancing": True, "alpha": 0.4, "label_smoothing": 0.1},
    {"name": "binary_focal_crossentropy", "gamma": 0.0},
    {"name": "categorical_crossentropy", "from_logits": True, "label_smoothing": 0.1},
    {"name": "categorical_crossentropy", "axis": 0},
    {"name": "categorical_focal_crossentropy", "from_logits": True, "gamma": 1.5, "alpha": 0.5},
    {"name": "categorical_focal_crossentropy", "label_smoothing": 0.2},
    {"name": "sparse_categorical_crossentropy", "from_logits": True},
    {"name": "sparse_categorical_crossentropy", "ignore_class": 1},
    {"name": "categorical_generalized_cross_entropy", "q": 0.2},
    {"name": "dice", "axis": [1]},
    {"name": "tversky", "alpha": 0.3, "beta": 0.7, "axis": 1},
    {"name": "circle", "gamma": 4.0, "margin": 0.3, "remove_diagonal": False},
]


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight", "none"])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: "-".join(f"{v}" for v in s.values()))
def test_gradient_matches_central_differences(spec: dict[str, Any], reduction: str) -> None:
    loss = losses.get({**spec, "reduction": reduction})
    t, p = _inputs(spec["name"], spec, (3, 4))
    sw = np.array([0.5, 2.0, 1.0]) if reduction != "sum" else None
    if spec.get("axis") == 0 and spec["name"] != "tversky":
        sw = None if sw is None else np.array([0.5, 2.0, 1.0, 1.5])

    def f(x: np.ndarray) -> float:
        return float(np.sum(loss.value(t, x, sw)))

    assert_gradient(f, loss.gradient(t, p, sw), p, rtol=2e-5, atol=1e-8)


def test_reductions_relate_as_keras_defines_them() -> None:
    t, p = _inputs("mean_squared_error", {}, (4, 3))
    sw = np.array([1.0, 0.0, 2.0, 0.5])
    per = losses.get({"name": "mse", "reduction": "none"}).value(t, p)
    np.testing.assert_allclose(per, np.mean((t - p) ** 2, axis=-1))
    for reduction, expected in [
        ("sum", np.sum(per * sw)),
        ("sum_over_batch_size", np.sum(per * sw) / 4),
        ("mean", np.sum(per * sw) / 4),
        ("mean_with_sample_weight", np.sum(per * sw) / np.sum(sw)),
    ]:
        got = losses.get({"name": "mse", "reduction": reduction}).value(t, p, sw)
        assert got == pytest.approx(expected, rel=1e-12), reduction
    np.testing.assert_allclose(losses.get({"name": "mse", "reduction": None}).value(t, p, sw), per * sw)


def test_ignore_class_averages_over_the_other_samples() -> None:
    t = np.array([0.0, 2.0, 1.0])
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]])
    full = losses.get({"name": "sparse_categorical_crossentropy", "reduction": "none"}).value(t, p)
    masked = losses.get({"name": "sparse_categorical_crossentropy", "ignore_class": 2})
    assert masked.value(t, p) == pytest.approx((full[0] + full[2]) / 2, rel=1e-12)
    assert masked.gradient(t, p)[1].tolist() == [0.0, 0.0, 0.0]


def test_evaluate_returns_value_per_sample_and_gradient() -> None:
    t, p = _inputs("huber", {}, (3, 2))
    loss = losses.get("huber")
    r = loss.evaluate(t, p, sample_weight=np.array([1.0, 2.0, 3.0]))
    assert r.value == loss.value(t, p, np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(r.per_sample, losses.get({"name": "huber", "reduction": "none"}).value(t, p))
    np.testing.assert_array_equal(r.gradient, loss.gradient(t, p, np.array([1.0, 2.0, 3.0])))


def test_dice_with_axis_null_is_one_value_whatever_the_reduction() -> None:
    t, p = _inputs("dice", {}, (3, 4))
    expected = 1 - 2 * np.sum(t * p) / (np.sum(t) + np.sum(p) + 1e-7)
    for reduction in ("sum", "none", "sum_over_batch_size"):
        assert float(losses.get({"name": "dice", "reduction": reduction}).value(t, p)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("spec", "t", "p", "sw", "error", "words"),
    [
        ("poisson", [[1.0]], [[-0.5]], None, NonFiniteError, "y_pred must be > -1e-07"),
        ("sparse_categorical_crossentropy", [3.0], [[0.5, 0.5]], None, ShapeError, "integers in [0, 1]"),
        ("sparse_categorical_crossentropy", [0.5], [[0.5, 0.5]], None, ShapeError, "got 0.5"),
        ("sparse_categorical_crossentropy", [[0.0, 1.0]], [[0.5, 0.5]], None, ShapeError, "class indices"),
        ("mse", [[1.0, 2.0]], [[1.0, 2.0]], [1.0, 2.0, 3.0], ShapeError, "sample_weight has shape [3]"),
        ("categorical_generalized_cross_entropy", [[0.0], [1.0]], [[0.5, 0.5], [0.5, 0.5]], None, ShapeError,
         "Keras broadcasts labels of shape [2, 1]"),
        ({"name": "sparse_categorical_crossentropy", "ignore_class": 1}, [1.0, 0.0], [[0.5, 0.5], [0.5, 0.5]], [],
         ShapeError, "sample_weight has shape [0]"),
        ("categorical_crossentropy", [[1.0, 0.0]], [[0.0, 0.0]], None, NonFiniteError, "sums to 0"),
    ],
)
def test_inputs_keras_cannot_compute_are_refused(spec: str, t: Any, p: Any, sw: Any, error: type, words: str) -> None:
    with pytest.raises(error, match=words.replace("[", r"\[").replace("]", r"\]")):
        losses.get(spec).evaluate(np.array(t), np.array(p), sw)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"name": "mse", "reduction": "auto"}, "reduction must be one of"),
        ({"name": "categorical_generalized_cross_entropy", "q": 1.0}, "open interval"),
        ({"name": "binary_focal_crossentropy", "gamma": -1.0}, "gamma must be finite and >= 0"),
        ({"name": "bce", "axis": True}, "axis must be an integer"),
        ({"name": "dice", "axis": [1, 1]}, "must not repeat"),
    ],
)
def test_parameters_out_of_domain_are_refused(spec: dict[str, Any], words: str) -> None:
    with pytest.raises(SpecError, match=words):
        losses.get(spec)


def test_every_keras_alias_and_class_name_is_accepted() -> None:
    for alias in ("kld", "KLD", "mape", "MAPE", "msle", "MSLE", "KLDivergence", "LogCosh", "Hinge",
                  "SquaredHinge", "CategoricalHinge", "Poisson", "CosineSimilarity", "Dice", "Tversky",
                  "BinaryFocalCrossentropy", "CategoricalFocalCrossentropy", "SparseCategoricalCrossentropy",
                  "MeanAbsolutePercentageError", "MeanSquaredLogarithmicError"):
        assert losses.get(alias).name in losses.NAMES
