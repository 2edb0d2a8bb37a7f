"""Random layer configs, input shapes and weights: the model code either answers or raises the
core's typed errors (a 4xx at the edge), never anything else."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.core.errors import CoreError
from service.core.keras_config import from_config
from service.core.layers import CLASSES
from service.core.model import cost, evaluate

VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 6), st.floats(-2, 2, allow_nan=False),
                   st.sampled_from(["same", "valid", "causal", "relu", "sigmoid", "softmax", "x", "channels_first"]),
                   st.lists(st.integers(-2, 4), max_size=4))
KEYS = ["units", "filters", "kernel_size", "strides", "padding", "dilation_rate", "activation", "use_bias",
        "axis", "pool_size", "rate", "target_shape", "depth_multiplier", "input_dim", "output_dim", "keepdims",
        "momentum", "epsilon", "center", "scale", "shared_axes", "negative_slope", "max_value", "threshold",
        "alpha", "trainable"]


@st.composite
def cases(draw: Any) -> tuple[dict, tuple[int, ...], dict]:
    cls = draw(st.sampled_from(sorted(CLASSES)))
    config = {k: draw(VALUES) for k in draw(st.lists(st.sampled_from(KEYS), max_size=5, unique=True))}
    if draw(st.booleans()):
        config["activity_regularizer"] = {"class_name": "L2", "config": {"l2": 0.5}}
    shape = tuple(draw(st.lists(st.integers(0, 5), min_size=1, max_size=4)))
    n_inputs = 2 if CLASSES[cls].INPUTS is None else 1
    return {"class_name": cls, "n": n_inputs, "config": {"name": "layer", **config}}, shape, {}


@pytest.mark.filterwarnings("error::RuntimeWarning")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.integers(0, 2**32 - 1))
def test_random_layers_answer_or_raise_core_errors(case: tuple[dict, tuple[int, ...], dict], seed: int) -> None:
    spec, shape, _ = case
    rng = np.random.default_rng(seed)
    names = [f"in_{i}" for i in range(spec["n"])]
    layers = [{"class_name": "InputLayer", "name": n, "config": {"name": n}, "inbound_nodes": []} for n in names]
    refs = [{"class_name": "__keras_tensor__", "config": {"keras_history": [n, 0, 0]}} for n in names]
    layers.append({"class_name": spec["class_name"], "name": "layer", "config": spec["config"],
                   "inbound_nodes": [{"args": [refs] if len(refs) > 1 else refs, "kwargs": {}}]})
    config = {"class_name": "Functional", "config": {"name": "m", "layers": layers,
                                                     "input_layers": [[n, 0, 0] for n in names],
                                                     "output_layers": [["layer", 0, 0]]}}
    inputs = {n: rng.integers(0, 3, shape).astype(np.float32) for n in names}
    try:
        model = from_config(config)
        cost(model, {n: x.shape for n, x in inputs.items()})
        node = model.nodes["layer"]
        assert node.layer is not None
        specs = node.layer.weight_specs([x.shape for x in inputs.values()])
        weights = {f"layer/{w.name}": rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in specs}
        out = node.layer.output_shape([x.shape for x in inputs.values()])
        loss = ["mean_squared_error", "binary_crossentropy", "categorical_crossentropy", None][seed % 4]
        targets = None if loss is None else rng.uniform(0, 1, out).astype(np.float32)
        evaluate(model, weights, inputs, targets, loss, training=bool(seed % 2), return_layer_outputs=True)
    except CoreError:
        pass
