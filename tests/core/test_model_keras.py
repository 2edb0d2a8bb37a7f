"""Models against Keras 3.15.1 (vectors/models.json from tests/reference/generate_models.py):
a Sequential CNN, an MLP with BatchNormalization and Dropout (inference, and training mode
without Dropout), a Functional model with two inputs, residual Adds and a Concatenate, and
an Embedding model; each from Keras's own to_json(), and again in tf.keras 2's layout."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from service.core.keras_config import from_config
from service.core.model import evaluate
from tests.reference.vectors import arrays, cases

CASES = cases("models")
RTOL, GRTOL, ATOL = 1e-5, 1e-4, 1e-6


def check(result: Any, case: dict) -> None:
    exp = arrays(case["expected"])
    np.testing.assert_allclose(result.outputs, exp["outputs"], rtol=RTOL, atol=ATOL)
    assert list(result.losses) == list(exp["losses"])
    for key, value in exp["losses"].items():
        np.testing.assert_allclose(result.losses[key], value, rtol=RTOL, atol=ATOL, err_msg=key)
    assert result.gradients is not None
    assert set(result.gradients) == set(exp["gradients"])
    for path, terms in exp["gradients"].items():
        assert set(result.gradients[path]) == set(terms), path
        for term, g in terms.items():
            np.testing.assert_allclose(result.gradients[path][term], g, rtol=GRTOL, atol=ATOL * 10,
                                       err_msg=f"{path} {term}")
    assert set(result.updates) == set(exp["updates"])
    for path, value in exp["updates"].items():
        np.testing.assert_allclose(result.updates[path], value, rtol=RTOL, atol=ATOL)


def run(case: dict, model_json: Any) -> Any:
    inputs = arrays(case["inputs"])
    return evaluate(from_config(model_json), arrays(case["weights"]), inputs, arrays(case["targets"]),
                    case["loss"], training=case["training"])


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_model_matches_keras(case: dict) -> None:
    check(run(case, case["model"]), case)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_get_config_form_matches_keras(case: dict) -> None:
    check(run(case, case["model"]["config"]), case)


def tf_keras2(model_json: dict) -> dict:
    """The same model in tf.keras 2's layout: no module/registered_name, ``batch_input_shape``,
    ``inbound_nodes`` as ``[[[layer, 0, 0, {}], ...]]``."""
    out = copy.deepcopy(model_json)
    out.pop("module", None)
    out.pop("registered_name", None)
    out["keras_version"], out["backend"] = "2.15.0", "tensorflow"
    for layer in out["config"]["layers"]:
        layer.pop("module", None)
        layer.pop("registered_name", None)
        layer.pop("build_config", None)
        cfg = layer["config"]
        if "batch_shape" in cfg:
            cfg["batch_input_shape"] = cfg.pop("batch_shape")
        for key, value in list(cfg.items()):
            if isinstance(value, dict) and value.get("module") == "keras.regularizers":
                cfg[key] = {"class_name": value["class_name"], "config": value["config"]}
        if "inbound_nodes" in layer:
            nodes = []
            for node in layer["inbound_nodes"]:
                refs = []
                for a in node["args"]:
                    for t in a if isinstance(a, list) else [a]:
                        refs.append([*t["config"]["keras_history"], {}])
                nodes.append(refs)
            layer["inbound_nodes"] = nodes
    return out


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_tf_keras2_layout_matches_keras(case: dict) -> None:
    check(run(case, tf_keras2(case["model"])), case)


@pytest.mark.parametrize("family", ["layers", "models"])
def test_vectors_come_from_pinned_keras(family: str) -> None:
    from tests.reference.vectors import load

    generator = load(family)["generator"]
    assert generator["keras"] == "3.15.1" and generator["tensorflow"] == "2.21.0"
    assert generator["script"] == "tests/reference/generate_models.py"
