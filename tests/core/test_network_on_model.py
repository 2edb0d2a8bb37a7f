"""``network()`` is ``model.evaluate`` of a Sequential model of Dense layers: the same
numbers bit for bit as the model built from Keras layer configs, with the stack's own
checks in front (messages naming ``layers.<i>.…``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from service.core.errors import ShapeError
from service.core.layers import create
from service.core.model import Model, Node, evaluate
from service.core.network import LayerSpec, network

RNG = np.random.default_rng(31)
L2 = {"class_name": "L2", "config": {"l2": 0.25}}
L1 = {"class_name": "L1", "config": {"l1": 0.125}}


def stack() -> tuple[list[LayerSpec], Model, dict[str, np.ndarray]]:
    """The same three layers as LayerSpecs and as a Model of Keras-config Dense layers."""
    specs = [
        LayerSpec(kernel=RNG.normal(size=(4, 6)), bias=RNG.normal(size=6), activation="tanh",
                  kernel_regularizer=L2, activity_regularizer=L1),
        LayerSpec(kernel=RNG.normal(size=(6, 5)), activation="relu", activity_regularizer=L2),
        LayerSpec(kernel=RNG.normal(size=(5, 3)), bias=RNG.normal(size=3), activation="softmax",
                  bias_regularizer=L1, name="head"),
    ]
    names = ["dense", "dense_1", "head"]
    nodes = {"x": Node("x", None, [])}
    weights: dict[str, np.ndarray] = {}
    below = "x"
    for name, s in zip(names, specs, strict=True):
        config: dict[str, Any] = {"units": s.kernel.shape[1], "activation": s.activation, "use_bias": s.bias is not None}
        config |= {k: getattr(s, k) for k in ("kernel_regularizer", "bias_regularizer", "activity_regularizer")
                   if getattr(s, k) is not None}
        nodes[name] = Node(name, create("Dense", name, config), [below])
        weights[f"{name}/kernel"] = s.kernel
        if s.bias is not None:
            weights[f"{name}/bias"] = s.bias
        below = name
    return specs, Model(nodes, inputs=["x"], outputs=[below]), weights


@pytest.mark.parametrize(("loss", "sample_weight", "selection"), [
    ("categorical_crossentropy", None, True),
    ({"name": "categorical_crossentropy", "reduction": "none"}, np.array([1.0, 0.0, 2.0, 0.5, 1.0]), True),
    ({"name": "kl_divergence", "reduction": "sum"}, np.array([0.5, 1.0, 1.0, 0.0, 3.0]), "totals"),
    ("categorical_crossentropy", None, {"parameters": ["dense/kernel"], "terms": ["dense_1/activity_regularizer"]}),
])
def test_network_is_evaluate_of_the_sequential_model(loss: Any, sample_weight: Any, selection: Any) -> None:
    specs, model, weights = stack()
    x, t = RNG.normal(size=(5, 4)), np.eye(3)[[0, 1, 2, 1, 0]]
    net = network(x, t, specs, loss, sample_weight=sample_weight, return_gradients=selection)
    ref = evaluate(model, weights, x, t, loss, sample_weight=sample_weight, return_gradients=selection)
    assert net.outputs.tobytes() == ref.outputs.tobytes()
    assert list(net.losses) == list(ref.losses)
    assert all(net.losses[k].tobytes() == ref.losses[k].tobytes() for k in ref.losses)
    assert net.gradients is not None and ref.gradients is not None
    assert {p: list(g) for p, g in net.gradients.items()} == {p: list(g) for p, g in ref.gradients.items()}
    for p, terms in ref.gradients.items():
        for term, g in terms.items():
            assert net.gradients[p][term].tobytes() == g.tobytes(), f"{p}.{term}"
    if ref.data_loss_values is None:
        assert net.data_loss_values is None
    else:
        assert net.data_loss_values is not None
        assert net.data_loss_values.tobytes() == ref.data_loss_values.tobytes()


def test_any_input_rank_of_two_or_more() -> None:
    """Keras's Dense takes inputs of any rank >= 2; the stack does too (rank 7 here), and a
    mean loss over every element is the rank-2 stack's on the rows laid flat."""
    specs = [LayerSpec(kernel=RNG.normal(size=(2, 3)), bias=RNG.normal(size=3), activation="tanh"),
             LayerSpec(kernel=RNG.normal(size=(3, 1)))]
    x, t = RNG.normal(size=(2, 1, 2, 1, 1, 3, 2)), RNG.normal(size=(2, 1, 2, 1, 1, 3, 1))
    deep, flat = network(x, t, specs), network(x.reshape(-1, 2), t.reshape(-1, 1), specs)
    assert deep.outputs.shape == t.shape
    np.testing.assert_allclose(deep.losses["data_loss"], flat.losses["data_loss"], rtol=1e-14)
    assert deep.gradients is not None and flat.gradients is not None
    np.testing.assert_allclose(deep.gradients["dense/kernel"]["total"], flat.gradients["dense/kernel"]["total"],
                               rtol=1e-12)


def test_a_glu_layer_halves_what_the_next_layer_reads() -> None:
    """glu halves the features: the next kernel has 2 rows for a 4-unit glu layer, and a
    mismatch names the layer and the numbers before anything is computed."""
    glu = LayerSpec(kernel=RNG.normal(size=(3, 4)), activation="glu")
    ok = network(RNG.normal(size=(2, 3)), RNG.normal(size=(2, 1)), [glu, LayerSpec(kernel=RNG.normal(size=(2, 1)))])
    assert ok.outputs.shape == (2, 1)
    with pytest.raises(ShapeError) as error:
        network(RNG.normal(size=(2, 3)), RNG.normal(size=(2, 1)), [glu, LayerSpec(kernel=RNG.normal(size=(4, 1)))])
    assert error.value.message == "layers.1.kernel has 4 rows but the outputs of layer 'dense' have 2 features (last axis)"
    assert error.value.field == "layers.1.kernel"
    odd = LayerSpec(kernel=RNG.normal(size=(3, 3)), activation="glu")
    with pytest.raises(ShapeError) as error:
        network(RNG.normal(size=(2, 3)), RNG.normal(size=(2, 1)), [odd, LayerSpec(kernel=RNG.normal(size=(5, 1)))])
    assert error.value.message.startswith("layers.0.activation: glu splits axis -1 in two halves")
