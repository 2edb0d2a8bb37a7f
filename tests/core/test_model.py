"""The model DAG and the Keras config reader: pricing (closed forms), refusals naming the layer,
and the gradient of a shared-input DAG against central differences."""

from __future__ import annotations

import numpy as np
import pytest

from service.core.errors import ShapeError, SpecError
from service.core.keras_config import from_config
from service.core.model import cost, evaluate
from tests.gradcheck import assert_gradient


def seq(*layers: dict, shape: list | None = None) -> dict:
    first = [{"class_name": "InputLayer", "config": {"name": "x", "batch_shape": shape or [None, 4]}}]
    return {"class_name": "Sequential", "config": {"name": "m", "layers": first + list(layers)}}


def test_cost_is_priced_from_shapes() -> None:
    model = from_config(seq(
        {"class_name": "Conv2D", "config": {"name": "conv2d", "filters": 4, "kernel_size": 3}},
        {"class_name": "Flatten", "config": {"name": "flatten"}},
        {"class_name": "Dense", "config": {"name": "dense", "units": 5}}, shape=[None, 8, 8, 2]))
    c = cost(model, {"x": (2, 8, 8, 2)})
    conv = 2 * 6 * 6 * 9 * 2 * 4          # batch · positions · taps · in · out
    dense = 2 * 144 * 5
    assert c.flops == conv + 2 * 144 + dense  # Flatten moves 144 values per sample
    assert c.parameters == 3 * 3 * 2 * 4 + 4 + 144 * 5 + 5
    assert c.layers == 3
    outputs = 2 * 8 * 8 * 2 + 2 * 6 * 6 * 4 + 2 * 144 + 2 * 5
    assert c.elements == outputs + 2 * 6 * 6 * 9 * 2  # + the conv's patch matrix


@pytest.mark.parametrize(("change", "needle"), [
    ({"class_name": "Lambda", "config": {"name": "lam"}}, "Lambda layers hold code"),
    ({"class_name": "Sequential", "config": {"name": "inner", "layers": []}}, "nested models"),
    ({"class_name": "MyCustomLayer", "config": {"name": "mine"}}, "class 'MyCustomLayer' is not supported"),
    ({"class_name": "Dense", "config": {"name": "a/b", "units": 1}}, "without '/'"),
])
def test_config_refusals_name_the_layer(change: dict, needle: str) -> None:
    with pytest.raises(SpecError, match=needle):
        from_config(seq(change))


def functional(layers: list, inputs: list, outputs: list) -> dict:
    return {"class_name": "Functional", "config": {"name": "f", "layers": layers,
                                                   "input_layers": inputs, "output_layers": outputs}}


def ref(name: str, node: int = 0) -> dict:
    return {"class_name": "__keras_tensor__", "config": {"keras_history": [name, node, 0]}}


def layer(cls: str, name: str, args: list, **config: object) -> dict:
    return {"class_name": cls, "name": name, "config": {"name": name, **config},
            "inbound_nodes": [{"args": args, "kwargs": {}}]}


X = {"class_name": "InputLayer", "name": "x", "config": {"name": "x", "batch_shape": [None, 3]}, "inbound_nodes": []}


def test_shared_layers_and_dangling_inputs_are_refused() -> None:
    shared = layer("Dense", "d", [ref("x")], units=3)
    shared["inbound_nodes"].append({"args": [ref("d")], "kwargs": {}})
    with pytest.raises(SpecError, match="called 2 times"):
        from_config(functional([X, shared], [["x", 0, 0]], [["d", 0, 0]]))
    with pytest.raises(SpecError, match="not a layer of the model"):
        from_config(functional([X, layer("Dense", "d", [ref("nowhere")], units=3)], [["x", 0, 0]], [["d", 0, 0]]))
    with pytest.raises(SpecError, match="shared layers"):
        from_config(functional([X, layer("Dense", "d", [ref("x", 1)], units=3)], [["x", 0, 0]], [["d", 0, 0]]))


def test_diamond_dag_gradient_matches_central_differences() -> None:
    """x → a → (b, c) → add: the gradient wrt a's kernel sums both paths."""
    config = functional([
        X,
        layer("Dense", "a", [ref("x")], units=3, activation="tanh"),
        layer("Dense", "b", [ref("a")], units=3, activation="sigmoid",
              activity_regularizer={"class_name": "L2", "config": {"l2": 0.5}}),
        layer("Dense", "c", [ref("a")], units=3),
        layer("Add", "add", [[ref("b"), ref("c")]]),
    ], [["x", 0, 0]], [["add", 0, 0]])
    rng = np.random.default_rng(0)
    weights = {f"{n}/kernel": rng.normal(size=(3, 3)) for n in "abc"} | {f"{n}/bias": rng.normal(size=3) for n in "abc"}
    x, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))

    def total(kernel: np.ndarray) -> float:
        r = evaluate(from_config(config), weights | {"a/kernel": kernel}, x, t, "mse", return_gradients=False)
        return float(r.losses["total"])

    r = evaluate(from_config(config), weights, x, t, "mse")
    assert r.gradients is not None
    assert set(r.gradients["a/kernel"]) == {"data_loss", "b/activity_regularizer", "total"}
    assert set(r.gradients["c/kernel"]) == {"data_loss", "total"}  # b's activity term does not reach c
    assert_gradient(total, r.gradients["a/kernel"]["total"], weights["a/kernel"], rtol=1e-6, atol=1e-9)


def test_inputs_by_name_and_targets_shape() -> None:
    model = from_config(seq({"class_name": "Dense", "config": {"name": "d", "units": 1}}))
    weights = {"d/kernel": np.ones((4, 1)), "d/bias": np.zeros(1)}
    with pytest.raises(SpecError, match="missing"):
        evaluate(model, weights, {"y": np.ones((2, 4))})
    with pytest.raises(ShapeError, match="targets have shape"):
        evaluate(model, weights, np.ones((2, 4)), np.ones((3, 1)), "mse")
    with pytest.raises(SpecError, match="give both or neither"):
        evaluate(model, weights, np.ones((2, 4)), np.ones((2, 1)))


def test_model_cost_method_and_bytes() -> None:
    model = from_config(seq({"class_name": "Dense", "config": {"name": "d", "units": 3}}))
    c = model.cost({"x": (2, 4)})
    assert (c.flops, c.parameters, c.layers) == (2 * 4 * 3, 4 * 3 + 3, 1)
    assert c.elements == 2 * 4 + 2 * 3 and c.bytes(8) == 8 * c.elements
