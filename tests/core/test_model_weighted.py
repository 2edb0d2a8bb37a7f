"""``model.evaluate`` with ``sample_weight``, loss reductions (``"none"`` → per-sample values)
and gradient selection: against Keras 3.15.1 (vectors/weighted_models.json from
tests/reference/generate_weighted_models.py), against central differences in float64, and
selection as the exact subset of the full answer, computing only what it needs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from service.core.errors import SpecError
from service.core.keras_config import from_config
from service.core.layers import create
from service.core.model import Model, Node, evaluate
from service.core.selection import gradient_selection
from tests.gradcheck import assert_gradient
from tests.reference.vectors import arrays, cases

CASES = cases("weighted_models")
RTOL, GRTOL, ATOL = 1e-5, 1e-4, 1e-6


def run(case: dict, **kwargs: Any) -> Any:
    return evaluate(from_config(case["model"]), arrays(case["weights"]), arrays(case["inputs"]),
                    arrays(case["targets"]), case["loss"], sample_weight=arrays(case["sample_weight"]), **kwargs)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_weighted_model_matches_keras(case: dict) -> None:
    r, exp = run(case), arrays(case["expected"])
    np.testing.assert_allclose(r.outputs, exp["outputs"], rtol=RTOL, atol=ATOL)
    assert list(r.losses) == list(exp["losses"])
    for key, value in exp["losses"].items():
        np.testing.assert_allclose(r.losses[key], value, rtol=RTOL, atol=ATOL, err_msg=key)
    assert r.gradients is not None and set(r.gradients) == set(exp["gradients"])
    for path, terms in exp["gradients"].items():
        assert set(r.gradients[path]) == set(terms), path
        for term, g in terms.items():
            np.testing.assert_allclose(r.gradients[path][term], g, rtol=GRTOL, atol=ATOL * 10, err_msg=f"{path} {term}")
    if case["loss"]["reduction"] == "none":
        assert r.data_loss_values is not None
        np.testing.assert_allclose(r.data_loss_values, exp["data_loss_values"], rtol=RTOL, atol=ATOL)
        assert r.data_loss_values[1] == 0  # the sample of weight 0
    else:
        assert r.data_loss_values is None


# --- central differences (float64): the head path (softmax Dense) and the plain path (pooling)

RNG = np.random.default_rng(23)


def small_model(head: bool) -> tuple[Model, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """x (3, 5, 2) → Conv1D(3, 2, tanh, L2 + activity L1) → pooling [→ Dense(3, softmax, L1)]."""
    conv = create("Conv1D", "conv1d", {"filters": 3, "kernel_size": 2, "activation": "tanh",
                                       "kernel_regularizer": {"class_name": "L2", "config": {"l2": 0.5}},
                                       "activity_regularizer": {"class_name": "L1", "config": {"l1": 0.125}}})
    nodes = {"x": Node("x", None, []), "conv1d": Node("conv1d", conv, ["x"]),
             "pool": Node("pool", create("GlobalAveragePooling1D", "pool", {}), ["conv1d"])}
    weights = {"conv1d/kernel": RNG.normal(0, 0.7, (2, 2, 3)), "conv1d/bias": RNG.normal(0, 0.3, 3)}
    targets = RNG.normal(0, 1, (3, 3))
    if head:
        nodes["dense"] = Node("dense", create("Dense", "dense", {
            "units": 3, "activation": "softmax", "kernel_regularizer": {"class_name": "L1", "config": {"l1": 0.25}}}), ["pool"])
        weights |= {"dense/kernel": RNG.normal(0, 1.5, (3, 3)), "dense/bias": RNG.normal(0, 0.3, 3)}
        targets = np.eye(3)[[0, 2, 1]]
    return Model(nodes, inputs=["x"], outputs=[list(nodes)[-1]]), weights, RNG.normal(0, 1, (3, 5, 2)), targets


@pytest.mark.parametrize(("head", "loss"), [
    (True, {"name": "categorical_crossentropy", "reduction": "none"}),
    (True, {"name": "categorical_crossentropy", "reduction": "sum_over_batch_size"}),
    (False, {"name": "mse", "reduction": "none"}),
    (False, {"name": "huber", "reduction": "mean_with_sample_weight"}),
])
def test_sample_weight_gradients_by_central_differences(head: bool, loss: dict) -> None:
    model, weights, x, t = small_model(head)
    sw = np.array([1.5, 0.0, 0.5])
    r = evaluate(model, weights, x, t, loss, sample_weight=sw)
    assert r.gradients is not None
    if loss["reduction"] == "none":
        assert r.data_loss_values is not None and r.data_loss_values.shape == (3,)
        assert r.data_loss_values[1] == 0
        assert float(r.losses["data_loss"]) == pytest.approx(float(np.sum(r.data_loss_values)), rel=1e-15)
    for path, w in weights.items():
        for term in ("data_loss", "total"):
            def f(v: np.ndarray, path: str = path, term: str = term) -> float:
                out = evaluate(model, weights | {path: v}, x, t, loss, sample_weight=sw, return_gradients=False)
                return float(out.losses[term])

            assert_gradient(f, r.gradients[path][term], w, rtol=1e-6, atol=1e-8)


def test_sample_weight_changes_the_data_loss_only() -> None:
    model, weights, x, t = small_model(True)
    plain = evaluate(model, weights, x, t, "categorical_crossentropy")
    ones = evaluate(model, weights, x, t, "categorical_crossentropy", sample_weight=np.ones(3))
    half = evaluate(model, weights, x, t, "categorical_crossentropy", sample_weight=np.full(3, 0.5))
    assert float(ones.losses["data_loss"]) == pytest.approx(float(plain.losses["data_loss"]), rel=1e-15)
    assert float(half.losses["data_loss"]) == pytest.approx(float(plain.losses["data_loss"]) / 2, rel=1e-14)
    assert half.losses["conv1d/kernel_regularizer"] == plain.losses["conv1d/kernel_regularizer"]


# --- gradient selection on a DAG (two inputs, two Adds, a Concatenate) ----------------------

TWO = next(c for c in CASES if c["id"] == "two_inputs_mse_none")
SELECTIONS = [
    "totals",
    {"parameters": ["dense_3/kernel"]},
    {"parameters": ["dense/kernel", "dense_1/bias"], "terms": ["dense_1/activity_regularizer"]},
    {"terms": ["data_loss", "dense_2/bias_regularizer"]},
    {"parameters": []},
]


@pytest.mark.parametrize("value", SELECTIONS, ids=str)
def test_model_selection_is_the_subset_of_the_full_answer(value: Any) -> None:
    full, chosen = run(TWO), run(TWO, return_gradients=value)
    selection = gradient_selection(value)
    assert selection is not None and full.gradients is not None and chosen.gradients is not None
    expected = {p: {t: g for t, g in terms.items() if selection.wants(p, t)}
                for p, terms in full.gradients.items() if selection.wants_parameter(p)}
    assert {p: list(t) for p, t in chosen.gradients.items()} == {p: list(t) for p, t in expected.items()}
    for p, terms in expected.items():
        for t, g in terms.items():
            assert chosen.gradients[p][t].tobytes() == g.tobytes(), f"{p}.{t}"
    assert chosen.losses == full.losses
    assert run(TWO, return_gradients=False).gradients is None


def test_model_selection_refuses_unknown_names() -> None:
    with pytest.raises(SpecError) as error:
        run(TWO, return_gradients={"parameters": ["dense_9/kernel"]})
    assert error.value.message.startswith("return_gradients: unknown parameter 'dense_9/kernel'; the valid "
                                          "parameters are dense/kernel, dense/bias, dense_1/kernel, ")
    assert error.value.field == "return_gradients.parameters"


def counted(monkeypatch: pytest.MonkeyPatch, model: Model) -> list[tuple[str, bool, tuple[str, ...]]]:
    """Record each layer's backward call: (layer, input gradients wanted, weights wanted)."""
    calls: list[tuple[str, bool, tuple[str, ...]]] = []
    for name, node in model.nodes.items():
        layer = node.layer
        if layer is None:
            continue
        original = layer.backward_some

        def spy(g: Any, cache: Any, *, inputs: bool, weights: Any, from_logits: bool = False,
                name: str = name, original: Any = original) -> Any:
            calls.append((name, inputs, tuple(sorted(weights))))
            return original(g, cache, inputs=inputs, weights=weights, from_logits=from_logits)

        monkeypatch.setattr(layer, "backward_some", spy)
    return calls


def test_model_backprop_visits_only_the_layers_that_lead_to_a_wanted_weight(monkeypatch: pytest.MonkeyPatch) -> None:
    model = from_config(TWO["model"])
    calls = counted(monkeypatch, model)

    def go(selection: Any) -> None:
        calls.clear()
        evaluate(model, arrays(TWO["weights"]), arrays(TWO["inputs"]), arrays(TWO["targets"]), TWO["loss"],
                 return_gradients=selection)

    go({"parameters": ["dense_3/kernel"]})  # the data loss's pass stops at the top layer
    assert calls == [("dense_3", False, ("kernel",))]
    go({"terms": ["dense/kernel_regularizer"]})  # a weight penalty needs no backward pass
    assert calls == []
    go({"parameters": ["dense_1/kernel"], "terms": ["dense_1/activity_regularizer"]})
    assert calls == [("dense_1", False, ("kernel",))]
    go(True)  # every layer, from the data loss and from dense_1's activity term
    assert sorted({c[0] for c in calls}) == ["add", "add_1", "concatenate", "dense", "dense_1", "dense_2",
                                             "dense_3", "layer_normalization"]
    assert calls[-1] == ("dense_1", False, ("bias", "kernel"))
