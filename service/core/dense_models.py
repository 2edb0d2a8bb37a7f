"""Keras model configs made only of Dense layers → the layer specs of a Dense stack.

``/v1/train`` takes a Keras model as Keras describes it (``json.loads(model.to_json())``
or ``model.get_config()``, Keras 3 or tf.keras 2.x) with its weights keyed
``"<layer>/<weight>"``, when the model is a plain chain of ``Dense`` layers: a
``Sequential``, or a ``Functional`` model whose layers follow one another.  Anything else
is refused with :class:`NotSupported`, naming the first layer it cannot read.

    >>> config = {"class_name": "Sequential", "config": {"layers": [
    ...     {"class_name": "InputLayer", "config": {"batch_shape": [None, 2]}},
    ...     {"class_name": "Dense", "config": {"name": "dense", "units": 1, "activation": "tanh",
    ...                                        "kernel_regularizer": {"class_name": "L2", "config": {"l2": 0.01}}}}]}}
    >>> [s.name for s in dense_stack(config, {"dense/kernel": np.ones((2, 1)), "dense/bias": np.zeros(1)})]
    ['dense']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from service.core.errors import SpecError, shown
from service.core.network import LayerSpec

#: Layers a chain may hold besides Dense (they compute nothing).
_PASS_THROUGH = ("InputLayer",)


class NotSupported(SpecError):
    """A model the Dense-stack reader cannot take (another layer class, a branching graph)."""

    code = "not_supported"


def _layers(model: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    cls = model.get("class_name")
    config = model.get("config")
    if cls not in ("Sequential", "Functional", "Model") or not isinstance(config, Mapping):
        raise NotSupported(f"model: expected a Keras Sequential or Functional model config, got class_name "
                           f"{shown(cls)}", field="model.class_name")
    layers = config.get("layers")
    if not isinstance(layers, list) or not all(isinstance(x, Mapping) for x in layers):
        raise SpecError("model.config.layers must be a list of layer objects", field="model.config.layers")
    if cls != "Sequential":
        for i, layer in enumerate(layers):
            nodes = layer.get("inbound_nodes") or []
            if len(nodes) > 1:
                raise NotSupported(f"layer {shown(layer.get('name'))} is called more than once; /v1/train "
                                   "takes a chain of Dense layers", field=f"model.config.layers.{i}")
        outputs = config.get("output_layers")
        if isinstance(outputs, list) and len(outputs) > 1 and isinstance(outputs[0], list):
            raise NotSupported("the model has several outputs; /v1/train takes a chain of Dense layers",
                               field="model.config.output_layers")
    return layers


def _inbound(layer: Mapping[str, Any]) -> str | None:
    """The name of the layer feeding ``layer`` in a Functional config (Keras 3's
    ``keras_history`` or tf.keras 2.x's ``[[name, 0, 0, {}]]``), if it has one input."""
    nodes = layer.get("inbound_nodes") or []
    if not nodes:
        return None
    node = nodes[0]
    if isinstance(node, Mapping):  # Keras 3
        args = node.get("args") or []
        if len(args) == 1 and isinstance(args[0], Mapping):
            history = (args[0].get("config") or {}).get("keras_history")
            if isinstance(history, list) and history and isinstance(history[0], str):
                return history[0]
        return "?"
    if isinstance(node, list) and len(node) == 1 and isinstance(node[0], list) and node[0]:  # tf.keras 2.x
        return node[0][0] if isinstance(node[0][0], str) else "?"
    return "?"


def _weight(weights: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    if key not in weights:
        raise SpecError(f"weights has no {key!r} (weights are keyed '<layer>/<weight>', e.g. 'dense/kernel'); "
                        f"it has {', '.join(sorted(weights)[:8]) or 'none'}", field=f"weights.{key}")
    return weights[key]


def dense_stack(model: Mapping[str, Any], weights: Mapping[str, np.ndarray]) -> list[LayerSpec]:
    """The Dense layers of ``model`` in order, with their weights and Keras's regularizers."""
    specs: list[LayerSpec] = []
    used: set[str] = set()
    previous: str | None = None
    functional = model.get("class_name") != "Sequential"
    for i, layer in enumerate(_layers(model)):
        cls, config = layer.get("class_name"), layer.get("config") or {}
        if functional and previous is not None and _inbound(layer) != previous:
            raise NotSupported(f"layer {i} is not fed by layer {previous!r}; /v1/train takes a chain of Dense "
                               "layers", field=f"model.config.layers.{i}")
        previous = config.get("name") if isinstance(config, Mapping) else None
        if cls in _PASS_THROUGH:
            continue
        if cls != "Dense" or not isinstance(config, Mapping):
            raise NotSupported(f"/v1/train reads Keras models made of Dense layers so far; layer {i} "
                               f"({shown(config.get('name') if isinstance(config, Mapping) else None)}) is "
                               f"{shown(cls)}", field=f"model.config.layers.{i}")
        if config.get("trainable") is False:
            raise NotSupported(f"layer {i} is frozen (trainable: false); the Dense-stack reader trains every "
                               "layer", field=f"model.config.layers.{i}")
        name = config.get("name")
        if not isinstance(name, str):
            raise SpecError(f"layer {i} has no name", field=f"model.config.layers.{i}.config.name")
        bias = _weight(weights, f"{name}/bias") if config.get("use_bias", True) else None
        used.update({f"{name}/kernel", f"{name}/bias"})
        specs.append(LayerSpec(
            kernel=_weight(weights, f"{name}/kernel"), bias=bias, activation=config.get("activation"),
            kernel_regularizer=config.get("kernel_regularizer"), bias_regularizer=config.get("bias_regularizer"),
            activity_regularizer=config.get("activity_regularizer"), name=name,
        ))
    if not specs:
        raise SpecError("the model has no Dense layer", field="model.config.layers")
    extra = sorted(set(weights) - used)
    if extra:
        raise SpecError(f"weights has {extra[0]!r}, which no Dense layer of the model uses",
                        field=f"weights.{extra[0]}")
    return specs
