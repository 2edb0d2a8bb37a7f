"""Every layer's vector-Jacobian product against central differences in float64 (inputs and
weights), on the FP64 configurations of vectors/layers.json; the Keras config reader's
refusals; and the layer interface's declarations."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from service.core.errors import ShapeError, SpecError
from service.core.layers import CLASSES, create
from tests.gradcheck import assert_gradient
from tests.reference.vectors import arrays, cases

FP64 = [c for c in cases("layers") if not c.get("difference") and c["upstream"]["datatype"] == "FP64"]


def built(case: dict) -> tuple[Any, list[np.ndarray], dict[str, np.ndarray]]:
    cfg = case["config"]
    layer = create(cfg["class_name"], case["name"], cfg["config"])
    xs = arrays(case["inputs"])
    weights = arrays(case["weights"])
    layer.build([x.shape for x in xs], weights)
    return layer, xs, weights


@pytest.mark.parametrize("case", FP64, ids=[c["id"] for c in FP64])
def test_vjp_matches_central_differences(case: dict) -> None:
    layer, xs, _ = built(case)
    up = arrays(case["upstream"])
    training = case["training"]
    _, cache = layer.forward(xs, training)
    g_xs, g_w = layer.backward(up, cache)

    for i, x in enumerate(xs):
        if g_xs[i] is None:
            assert layer.CLASS_NAME == "Embedding"
            continue

        def f_x(v: np.ndarray, i: int = i) -> float:
            args = [*xs[:i], v, *xs[i + 1:]]
            return float(np.sum(up * layer.forward(args, training)[0]))

        assert_gradient(f_x, g_xs[i], x, rtol=1e-6, atol=1e-8)

    assert set(g_w) == {w.name for w in layer.specs if w.trainable}
    for wname, g in g_w.items():
        original = layer.weights[wname]

        def f_w(v: np.ndarray, wname: str = wname) -> float:
            layer.weights[wname] = v
            return float(np.sum(up * layer.forward(xs, training)[0]))

        assert_gradient(f_w, g, original, rtol=1e-6, atol=1e-8)
        layer.weights[wname] = original


def test_every_listed_layer_is_registered() -> None:
    listed = {"Dense", "Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Embedding",
              "BatchNormalization", "LayerNormalization", "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU",
              "Softmax", "Dropout", "Flatten", "Reshape", "MaxPooling1D", "MaxPooling2D", "AveragePooling1D",
              "AveragePooling2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D",
              "GlobalMaxPooling2D", "Add", "Concatenate"}
    assert set(CLASSES) == listed
    covered = {c["class_name"] for c in cases("layers")}
    assert covered == listed


def test_dropout_training_uses_the_services_seeded_mask() -> None:
    layer = create("Dropout", "dropout", {"rate": 0.5, "seed": 7})
    layer.build([(4, 6)], {})
    x = np.ones((4, 6))
    y, cache = layer.forward([x], True)
    keep = np.random.default_rng(7).random((4, 6)) >= 0.5
    np.testing.assert_array_equal(y, np.where(keep, 2.0, 0.0))
    np.testing.assert_array_equal(layer.backward(np.ones((4, 6)), cache)[0][0], y)
    assert layer.forward([x], False)[0] is x


def test_dropout_training_mask_differs_from_keras_but_scales_alike() -> None:
    """The README's deliberate difference: same rate and 1/(1 − rate) scaling, not Keras's draw."""
    case = next(c for c in cases("layers") if c["id"] == "dropout_training_keras_mask")
    keras_y = arrays(case["expected"]["outputs"])
    layer = create("Dropout", "dropout", case["config"]["config"])
    ours = layer.forward([arrays(case["inputs"])[0]], True)[0]
    assert set(np.unique(keras_y)) <= {0.0, 2.0} and set(np.unique(ours)) <= {0.0, 2.0}
    assert not np.array_equal(ours, keras_y)


def test_batch_norm_training_moving_statistics_formula() -> None:
    layer = create("BatchNormalization", "bn", {"momentum": 0.9})
    layer.build([(3, 2)], {"bn/gamma": np.ones(2), "bn/beta": np.zeros(2),
                           "bn/moving_mean": np.array([1.0, 2.0]), "bn/moving_variance": np.array([1.0, 4.0])})
    x = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 6.0]])
    _, cache = layer.forward([x], True)
    up = layer.updates(cache)
    np.testing.assert_allclose(up["moving_mean"], [0.9 * 1 + 0.1 * 1.0, 0.9 * 2 + 0.1 * 3.0])
    np.testing.assert_allclose(up["moving_variance"], [0.9 * 1 + 0.1 * (2 / 3), 0.9 * 4 + 0.1 * (14 / 3)])


def test_leaky_relu_layer_takes_alpha_and_defaults_to_0_3() -> None:
    x = np.array([[-10.0, 1.0]])
    assert create("LeakyReLU", "l", {}).forward([x], False)[0][0, 0] == pytest.approx(-3.0)
    assert create("LeakyReLU", "l", {"alpha": 0.01}).forward([x], False)[0][0, 0] == pytest.approx(-0.1)
    assert create("LeakyReLU", "l", {"negative_slope": 0.5}).forward([x], False)[0][0, 0] == pytest.approx(-5.0)


@pytest.mark.parametrize(("class_name", "config", "needle"), [
    ("Conv2D", {"filters": 2, "kernel_size": 3, "groups": 2}, "groups=2"),
    ("Conv2D", {"filters": 2, "kernel_size": 3, "data_format": "channels_first"}, "channels_last"),
    ("Conv2D", {"filters": 2, "kernel_size": 3, "padding": "causal"}, "padding='causal'"),
    ("Dense", {"units": 0}, "units must be an integer >= 1"),
    ("Dense", {"units": 2, "frobnicate": True}, "frobnicate"),
    ("Embedding", {"input_dim": 3, "output_dim": 2, "mask_zero": True}, "mask_zero"),
    ("LayerNormalization", {"rms_scaling": True}, "rms_scaling"),
    ("Dropout", {"rate": 1.0}, "rate"),
    ("GroupNormalization", {}, "GroupNormalization"),
])
def test_unsupported_arguments_are_named(class_name: str, config: dict, needle: str) -> None:
    with pytest.raises(SpecError) as err:
        create(class_name, "layer", config)
    assert needle in err.value.message and "'layer'" in err.value.message


def test_shape_errors_name_the_layer() -> None:
    conv = create("Conv2D", "conv2d", {"filters": 1, "kernel_size": 5})
    with pytest.raises(ShapeError, match="smaller than the effective kernel size 5"):
        conv.output_shape([(1, 3, 3, 1)])
    emb = create("Embedding", "embedding", {"input_dim": 3, "output_dim": 2})
    emb.build([(1, 2)], {"embedding/embeddings": np.zeros((3, 2))})
    with pytest.raises(ShapeError, match=r"whole numbers in \[0, 3\)"):
        emb.forward([np.array([[0.0, 3.0]])], False)
