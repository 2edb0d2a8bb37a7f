"""Every layer against Keras 3.15.1 (vectors/layers.json, from tests/reference/generate_models.py):
outputs, each labelled regularizer term, each term's gradient per weight, the VJP of an
upstream gradient wrt the inputs and weights, and BatchNormalization's updated statistics."""

from __future__ import annotations

import numpy as np
import pytest

from service.core.layers import create
from service.core.model import Model, Node, evaluate
from tests.reference.vectors import arrays, cases

CASES = [c for c in cases("layers") if not c.get("difference")]
TOL = {"FP32": (1e-5, 1e-4, 1e-6), "FP64": (1e-10, 1e-8, 1e-12)}  # values, gradients, atol


def _tol(case: dict) -> tuple[float, float, float]:
    return TOL[case["upstream"]["datatype"]]


def _layer(case: dict):
    cfg = case["config"]
    return create(cfg["class_name"], case["name"], cfg["config"])


def _one_layer_model(case: dict) -> tuple[Model, dict]:
    n = len(case["inputs"])
    names = [f"in_{i}" for i in range(n)]
    nodes = {name: Node(name, None, []) for name in names}
    nodes[case["name"]] = Node(case["name"], _layer(case), names)
    return Model(nodes, names, [case["name"]]), dict(zip(names, arrays(case["inputs"]), strict=True))


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_layer_matches_keras(case: dict) -> None:
    rtol, grtol, atol = _tol(case)
    model, inputs = _one_layer_model(case)
    weights = arrays(case["weights"])
    exp = arrays(case["expected"])
    r = evaluate(model, weights, inputs, training=case["training"])
    np.testing.assert_allclose(r.outputs, exp["outputs"], rtol=rtol, atol=atol)
    assert r.outputs.dtype == exp["outputs"].dtype
    name = case["name"]
    got = {k.split("/", 1)[1]: v for k, v in r.losses.items() if k != "total"}
    assert set(got) == set(exp["losses"])
    for term, value in exp["losses"].items():
        np.testing.assert_allclose(got[term], value, rtol=rtol, atol=atol, err_msg=term)
    np.testing.assert_allclose(r.losses["total"], sum(case["expected"]["keras_layer_losses"]), rtol=rtol * 10, atol=atol)
    assert r.gradients is not None
    for path, terms in exp["gradients"].items():
        for term, g in terms.items():
            if term == "upstream":
                continue
            np.testing.assert_allclose(r.gradients[path][f"{name}/{term}"], g, rtol=grtol, atol=atol * 10,
                                       err_msg=f"{path} {term}")
    for path, g in exp["updates"].items():
        np.testing.assert_allclose(r.updates[path], g, rtol=rtol, atol=atol)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_layer_vjp_matches_keras(case: dict) -> None:
    _, grtol, atol = _tol(case)
    layer = _layer(case)
    xs = arrays(case["inputs"])
    weights = arrays(case["weights"])
    layer.build([x.shape for x in xs], weights)
    _, cache = layer.forward(xs, case["training"])
    g_xs, g_w = layer.backward(arrays(case["upstream"]), cache)
    for got, want in zip(g_xs, case["expected"]["input_gradients"], strict=True):
        if want is None:
            assert got is None
        else:
            np.testing.assert_allclose(got, arrays(want), rtol=grtol, atol=atol * 10)
    for path, terms in case["expected"]["gradients"].items():
        np.testing.assert_allclose(g_w[path.split("/", 1)[1]], arrays(terms["upstream"]), rtol=grtol, atol=atol * 10)
