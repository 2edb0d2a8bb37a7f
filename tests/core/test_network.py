"""Dense stacks: names, which term reaches which parameter, logits heads, and gradients."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise
from typing import Any

import numpy as np
import pytest

from service.core.errors import ShapeError, SpecError
from service.core.network import LayerSpec, network
from tests.gradcheck import assert_gradient

RNG = np.random.default_rng(11)


def stack(units: list[int], activations: list[Any], *, bias: bool = True, **regs: Any) -> list[LayerSpec]:
    layers = []
    for i, (n_in, n_out) in enumerate(pairwise(units)):
        layers.append(
            LayerSpec(
                kernel=RNG.normal(size=(n_in, n_out)) * 0.7,
                bias=RNG.normal(size=n_out) * 0.3 if bias else None,
                activation=activations[i],
                **{k: v[i] for k, v in regs.items()},
            )
        )
    return layers


def test_default_names_follow_keras() -> None:
    layers = stack([3, 4, 4, 2], [None, None, None])
    r = network(RNG.normal(size=(5, 3)), RNG.normal(size=(5, 2)), layers)
    assert r.gradients is not None
    assert list(r.gradients) == [
        "dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias", "dense_2/kernel", "dense_2/bias",
    ]


def test_explicit_names_and_their_errors() -> None:
    layers = stack([3, 4, 2], [None, None])
    named = [replace(layers[0], name="hidden"), layers[1]]
    r = network(RNG.normal(size=(5, 3)), RNG.normal(size=(5, 2)), named)
    assert r.gradients is not None and "hidden/kernel" in r.gradients and "dense/kernel" in r.gradients
    with pytest.raises(SpecError, match="'dense' names layers 0 and 1"):
        network(np.ones((1, 3)), np.ones((1, 2)), [replace(layers[0], name="dense"), layers[1]])
    with pytest.raises(SpecError, match="without '/'"):
        network(np.ones((1, 3)), np.ones((1, 2)), [replace(layers[0], name="a/b"), layers[1]])
    with pytest.raises(SpecError, match="got 5"):
        network(np.ones((1, 3)), np.ones((1, 2)), [replace(layers[0], name=5), layers[1]])  # type: ignore[arg-type]


def test_which_terms_reach_which_parameters() -> None:
    layers = stack(
        [3, 4, 4, 2], ["relu", "tanh", None],
        kernel_regularizer=["l2", None, "l1"],
        bias_regularizer=[None, "l2", None],
        activity_regularizer=[None, "l1", None],
    )
    r = network(RNG.normal(size=(6, 3)), RNG.normal(size=(6, 2)), layers)
    assert list(r.losses) == [
        "data_loss", "dense/kernel_regularizer", "dense_1/activity_regularizer",
        "dense_1/bias_regularizer", "dense_2/kernel_regularizer", "total",
    ]
    assert r.gradients is not None
    g = {param: list(terms) for param, terms in r.gradients.items()}
    assert g == {
        "dense/kernel": ["data_loss", "dense/kernel_regularizer", "dense_1/activity_regularizer", "total"],
        "dense/bias": ["data_loss", "dense_1/activity_regularizer", "total"],
        "dense_1/kernel": ["data_loss", "dense_1/activity_regularizer", "total"],
        "dense_1/bias": ["data_loss", "dense_1/activity_regularizer", "dense_1/bias_regularizer", "total"],
        "dense_2/kernel": ["data_loss", "dense_2/kernel_regularizer", "total"],
        "dense_2/bias": ["data_loss", "total"],
    }
    for terms in r.gradients.values():
        parts = [v for k, v in terms.items() if k != "total"]
        np.testing.assert_allclose(terms["total"], sum(parts), rtol=1e-12)
    assert float(r.losses["total"]) == pytest.approx(sum(float(v) for k, v in r.losses.items() if k != "total"))


def test_a_single_layer_stack_agrees_with_dense() -> None:
    from service.core.dense import dense

    x, t = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 2))
    (layer,) = stack([3, 2], ["tanh"], kernel_regularizer=["l1"], activity_regularizer=["l2"])
    r = network(x, t, [layer])
    d = dense(x, layer.kernel, layer.bias, "tanh", "l1", None, "l2")
    assert r.gradients is not None and d.gradients is not None
    np.testing.assert_array_equal(r.outputs, d.outputs)
    assert r.losses["dense/activity_regularizer"] == d.losses["activity_regularizer"]
    np.testing.assert_allclose(
        r.gradients["dense/kernel"]["dense/activity_regularizer"], d.gradients["kernel"]["activity_regularizer"]
    )


def test_sigmoid_head_with_binary_crossentropy_uses_the_logits_as_keras_does() -> None:
    # z = -20 with target 1: from logits the loss is softplus(20) ≈ 20; clipping
    # the probability at 1e-7 would cap it at -log(1e-7) ≈ 16.1.
    layer = LayerSpec(kernel=np.array([[-20.0]]), activation="sigmoid")
    r = network(np.array([[1.0]]), np.array([[1.0]]), [layer], loss="binary_crossentropy")
    assert float(r.losses["data_loss"]) == pytest.approx(20.0 + np.log1p(np.exp(-20.0)), rel=1e-12)


def test_softmax_head_with_categorical_crossentropy_uses_the_logits() -> None:
    layer = LayerSpec(kernel=np.array([[40.0, 0.0]]), activation="softmax")
    r = network(np.array([[1.0]]), np.array([[0.0, 1.0]]), [layer], loss="categorical_crossentropy")
    assert float(r.losses["data_loss"]) == pytest.approx(40.0, rel=1e-12)


def test_shape_errors_name_the_layer() -> None:
    layers = stack([3, 4, 2], [None, None])
    bad = [layers[0], replace(layers[1], kernel=np.ones((5, 2)))]
    with pytest.raises(ShapeError, match=r"layers\.1\.kernel has 5 rows but the outputs of layer 'dense' have 4"):
        network(np.ones((2, 3)), np.ones((2, 2)), bad)
    with pytest.raises(ShapeError, match=r"targets have shape \[2, 3\] but the network outputs shape \[2, 2\]"):
        network(np.ones((2, 3)), np.ones((2, 3)), layers)
    with pytest.raises(SpecError, match="at least one layer"):
        network(np.ones((2, 3)), np.ones((2, 3)), [])
    with pytest.raises(SpecError, match=r"^loss: "):
        network(np.ones((2, 3)), np.ones((2, 2)), layers, loss="hinge_of_fate")


# --- central differences: every term wrt every parameter -----------------------------------

CASES: list[tuple[str, list[Any], Any, str]] = [
    ("mse-relu-3", ["relu", "tanh", None], "mean_squared_error", "regression"),
    ("mae-2", [{"name": "leaky_relu", "negative_slope": 0.2}, None], "mae", "regression"),
    ("huber-2", ["elu", None], {"name": "huber", "delta": 0.5}, "regression"),
    ("bce-sigmoid", ["tanh", "sigmoid"], "binary_crossentropy", "binary"),
    ("bce-logits", ["softplus", None], {"name": "binary_crossentropy", "from_logits": True}, "binary"),
    ("cce-softmax", ["relu", "softmax"], "categorical_crossentropy", "onehot"),
    ("cce-logits-1", [None], {"name": "categorical_crossentropy", "from_logits": True}, "onehot"),
    # issue 8: the shortcut whatever from_logits says, axis lists, another softmax axis, new losses
    ("cce-softmax-from-logits", ["relu", "softmax"], {"name": "categorical_crossentropy", "from_logits": True}, "onehot"),
    ("bce-sigmoid-from-logits", ["tanh", "sigmoid"], {"name": "binary_crossentropy", "from_logits": True}, "binary"),
    ("cce-softmax-axis-list", ["relu", {"name": "softmax", "axis": [-1]}], "categorical_crossentropy", "onehot"),
    ("cce-softmax-axis-0", ["relu", {"name": "softmax", "axis": 0}], "categorical_crossentropy", "onehot"),
    ("cce-softmax-axis-0-loss-axis-0", ["relu", {"name": "softmax", "axis": -1}],
     {"name": "categorical_crossentropy", "axis": 0}, "onehot"),
    ("scce-softmax", ["relu", "softmax"], "sparse_categorical_crossentropy", "labels"),
    ("bfce-sigmoid", ["tanh", "sigmoid"], {"name": "binary_focal_crossentropy", "apply_class_balancing": True}, "binary"),
    ("kld-softmax-glu", [{"name": "glu", "axis": -1}, "softmax"], "kld", "onehot"),
    ("cosine-mse-sum", ["sparsemax", None], {"name": "cosine_similarity", "reduction": "sum"}, "regression"),
]


def _targets(kind: str, shape: tuple[int, ...]) -> np.ndarray:
    if kind == "labels":
        return RNG.integers(0, shape[-1], size=shape[:-1]).astype(np.float64)
    if kind == "regression":
        return RNG.normal(size=shape)
    if kind == "binary":
        return RNG.integers(0, 2, size=shape).astype(np.float64)
    return np.eye(shape[-1])[RNG.integers(0, shape[-1], size=shape[:-1])]


@pytest.mark.parametrize(("case", "acts", "loss", "kind"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("rank", [2, 3])
def test_every_gradient_by_central_differences(case: str, acts: list[Any], loss: Any, kind: str, rank: int) -> None:
    n = len(acts)
    units = [3, 4, 4, 3][: n + 1]
    if "glu" in str(acts[0]):
        units = [3, 8, 3]  # glu halves the first layer's 8 units to 4 inputs of the next
        layers_glu = stack([3, 8], acts[:1]) + stack([4, 3], acts[1:])
    regs = {
        "kernel_regularizer": [{"type": "l2", "l2": 0.1}] * n,
        "bias_regularizer": [{"type": "l1l2", "l1": 0.05, "l2": 0.1}] * n,
        "activity_regularizer": [{"type": "l2", "l2": 0.02}] * n,
    }
    layers = stack(units, acts, **regs) if "glu" not in str(acts[0]) else layers_glu
    batch = (4,) if rank == 2 else (2, 3)
    x = RNG.normal(size=(*batch, units[0]))
    t = _targets(kind, (*batch, units[-1]))
    r = network(x, t, layers, loss=loss)
    assert r.gradients is not None
    for param, terms in r.gradients.items():
        name, weight = param.split("/")
        i = 0 if name == "dense" else int(name.split("_")[1])
        for term, grad in terms.items():

            def f(v: np.ndarray, i: int = i, weight: str = weight, term: str = term) -> float:
                changed = list(layers)
                changed[i] = replace(layers[i], **{weight: v})
                return float(network(x, t, changed, loss=loss, return_gradients=False).losses[term])

            value = getattr(layers[i], weight)
            assert_gradient(f, grad, value, rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("batch", [(0,), (2, 0)])
def test_an_empty_batch_gives_zero_losses_and_zero_gradients(batch: tuple[int, ...]) -> None:
    layers = stack([3, 4, 2], ["relu", None], activity_regularizer=["l1", "l2"])
    r = network(np.ones((*batch, 3)), np.ones((*batch, 2)), layers, loss="huber")
    assert r.losses["data_loss"] == 0 and r.losses["dense/activity_regularizer"] == 0
    assert r.gradients is not None
    np.testing.assert_array_equal(r.gradients["dense/kernel"]["data_loss"], np.zeros((3, 4)))


def test_a_layer_with_zero_units_passes_empty_outputs_on() -> None:
    layers = [LayerSpec(kernel=np.ones((3, 0)), bias=np.ones(0)), LayerSpec(kernel=np.ones((0, 2)), bias=np.ones(2))]
    r = network(np.ones((4, 3)), np.ones((4, 2)), layers, loss="mse")
    np.testing.assert_array_equal(r.outputs, np.ones((4, 2)))  # only the bias is left
    assert r.gradients is not None and r.gradients["dense/kernel"]["data_loss"].shape == (3, 0)


@pytest.mark.parametrize("loss", ["mse", "binary_crossentropy"])
def test_labels_without_the_trailing_unit_axis_are_accepted_as_keras_does(loss: str) -> None:
    layers = stack([3, 4, 1], ["tanh", "sigmoid"], kernel_regularizer=["l2", None])
    x, t = RNG.normal(size=(5, 3)), RNG.integers(0, 2, size=5).astype(np.float64)
    flat, column = network(x, t, layers, loss=loss), network(x, t[:, None], layers, loss=loss)
    assert flat.losses == column.losses
    assert flat.gradients is not None and column.gradients is not None
    for param, terms in column.gradients.items():
        for term, g in terms.items():
            np.testing.assert_array_equal(flat.gradients[param][term], g)


# --- issue 8: the loss head, sample_weight, reduction "none" --------------------------------


def test_softmax_over_another_axis_stays_finite_where_the_probabilities_underflow() -> None:
    """Keras's shortcut would take logits over the last axis; the service computes the
    crossentropy of the probabilities in log space, finite where softmax underflows to 0."""
    z = np.array([[0.0, 0.0], [2000.0, -2000.0]])  # softmax over axis 0: row 0 underflows to [0, 1]
    layer = LayerSpec(kernel=np.eye(2), activation={"name": "softmax", "axis": 0})
    t = np.array([[1.0, 0.0], [0.0, 1.0]])
    r = network(z, t, [layer], loss="categorical_crossentropy")
    log_p = z - np.logaddexp.reduce(z, axis=0, keepdims=True)  # log softmax over axis 0
    log_q = log_p - np.logaddexp.reduce(log_p, axis=-1, keepdims=True)  # log of p / Σ_last p
    q = np.clip(np.exp(log_q), 1e-7, 1 - 1e-7)
    expected = -np.sum(t * np.log(q)) / 2
    assert float(r.losses["data_loss"]) == pytest.approx(expected, rel=1e-12)
    assert r.gradients is not None and np.all(np.isfinite(r.gradients["dense/kernel"]["total"]))
    # from_logits is ignored on a softmax head there too
    r2 = network(z, t, [layer], loss={"name": "categorical_crossentropy", "from_logits": True})
    assert r2.losses["data_loss"] == r.losses["data_loss"]


def test_sample_weight_and_reduction_none_by_central_differences() -> None:
    layers = stack([3, 4, 2], ["tanh", None], activity_regularizer=[{"type": "l1", "l1": 0.05}, None])
    x, t = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 2))
    sw = np.array([1.0, 0.0, 2.0, 0.5])
    for loss in ({"name": "mse", "reduction": "none"}, {"name": "huber", "reduction": "mean_with_sample_weight"}):
        r = network(x, t, layers, loss=loss, sample_weight=sw)
        assert r.gradients is not None
        if loss["reduction"] == "none":
            assert r.data_loss_values is not None
            np.testing.assert_allclose(r.data_loss_values, np.mean((r.outputs - t) ** 2, axis=-1) * sw)
            assert float(r.losses["data_loss"]) == pytest.approx(float(np.sum(r.data_loss_values)))
        else:
            assert r.data_loss_values is None
        for weight in ("kernel", "bias"):

            def f(v: np.ndarray, weight: str = weight, loss: Any = loss) -> float:
                changed = [replace(layers[0], **{weight: v}), layers[1]]
                return float(network(x, t, changed, loss=loss, sample_weight=sw, return_gradients=False).losses["total"])

            assert_gradient(f, r.gradients[f"dense/{weight}"]["total"], getattr(layers[0], weight), rtol=2e-5, atol=1e-8)


def test_sparse_targets_must_be_one_index_per_sample() -> None:
    layer = LayerSpec(kernel=np.eye(3), activation="softmax")
    with pytest.raises(ShapeError, match="one class index per sample"):
        network(np.ones((2, 3)), np.ones((2, 3)), [layer], loss="sparse_categorical_crossentropy")
    r = network(np.ones((2, 3)), np.array([[0.0], [2.0]]), [layer], loss="sparse_categorical_crossentropy")
    assert float(r.losses["data_loss"]) == pytest.approx(np.log(3.0))
