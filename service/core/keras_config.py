"""Keras model JSON → :class:`~service.core.model.Model` (pure data in, no code run).

Accepted, for ``Sequential`` and ``Functional`` (``Model``) models:

* ``json.loads(model.to_json())`` — ``{"class_name", "config", ...}`` (Keras 3 adds
  ``module``/``registered_name``; tf.keras 2 adds ``keras_version``/``backend``);
* ``model.get_config()`` — the inner ``config`` alone.

Layers are ``{"class_name", "config", "module"?, "registered_name"?, "name"?, "inbound_nodes"?}``.
Functional connections: Keras 3 writes ``inbound_nodes: [{"args": [<keras tensor> or a
list of them], "kwargs": {}}]`` with ``{"class_name": "__keras_tensor__", "config":
{"keras_history": [layer, node, index]}}``; tf.keras 2 writes ``[[[layer, node, index,
kwargs], ...]]``.  A layer called twice (shared), a nested model, ``Lambda`` or any class
not in :data:`service.core.layers.CLASSES` is a SpecError naming the layer and its class.
Keras 1's ``W_regularizer``/``b_regularizer`` are read as ``kernel_``/``bias_regularizer``.

    >>> m = from_config({"class_name": "Sequential", "config": {"name": "s", "layers": [
    ...     {"class_name": "InputLayer", "config": {"batch_shape": [None, 4], "name": "x"}},
    ...     {"class_name": "Dense", "config": {"name": "dense", "units": 2}}]}})
    >>> list(m.nodes), m.inputs, m.outputs
    (['x', 'dense'], ['x'], ['dense'])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.core import layers as layer_registry
from service.core.errors import SpecError, shown
from service.core.model import Model, Node, toposort

#: Keras 1 argument names still found in old configs.
KERAS1_ARGUMENTS = {"W_regularizer": "kernel_regularizer", "b_regularizer": "bias_regularizer"}
_MODELS = ("Sequential", "Functional", "Model")


def _config_of(entry: Any, where: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("class_name"), str):
        raise SpecError(f"{where} must be an object with a string class_name, got {shown(entry)}", field="model")
    config = entry.get("config", {})
    if not isinstance(config, Mapping):
        raise SpecError(f"{where}: config must be an object", field="model")
    config = dict(config)
    for old, new in KERAS1_ARGUMENTS.items():
        if old in config:
            config.setdefault(new, config.pop(old))
    return entry["class_name"], config


def _layer_name(entry: Mapping[str, Any], config: Mapping[str, Any], default: str) -> str:
    name = entry.get("name", config.get("name", default))
    if not isinstance(name, str) or not name or "/" in name:
        raise SpecError(f"layer name must be a non-empty string without '/', got {shown(name)}", field="model")
    return name


def _make(class_name: str, name: str, config: Mapping[str, Any]) -> Any:
    if class_name == "Lambda":
        raise SpecError(f"layer {name!r}: Lambda layers hold code and are refused", field="model")
    if class_name in _MODELS:
        raise SpecError(f"layer {name!r}: nested models ({class_name}) are not supported; "
                        "send the inner model's layers inline", field="model")
    return layer_registry.create(class_name, name, config)


def _input_shape(config: Mapping[str, Any]) -> tuple[Any, ...] | None:
    for key in ("batch_shape", "batch_input_shape"):
        if isinstance(config.get(key), list):
            return tuple(config[key])
    if isinstance(config.get("input_shape"), list):
        return (None, *config["input_shape"])
    return None


def from_config(spec: Any) -> Model:
    """A model from Keras's JSON (``to_json()`` or ``get_config()``, Keras 3 or tf.keras 2)."""
    if not isinstance(spec, Mapping):
        raise SpecError(f"model must be an object (json.loads(model.to_json())), got {shown(spec)}", field="model")
    if "class_name" in spec:
        kind, config = _config_of(spec, "model")
        if kind not in _MODELS:
            raise SpecError(f"model class {shown(kind)} is not supported; expected Sequential or "
                            "Functional (Model)", field="model.class_name")
    else:
        config = dict(spec)
        kind = "Functional" if "input_layers" in config else "Sequential"
    entries = config.get("layers")
    if not isinstance(entries, list) or not entries:
        raise SpecError("model config needs a non-empty list 'layers'", field="model.layers")
    name = str(config["name"]) if isinstance(config.get("name"), str) else "model"
    if kind == "Sequential" and "input_layers" not in config:
        return _sequential(entries, name)
    return _functional(entries, config, name)


def _sequential(entries: list[Any], model_name: str) -> Model:
    nodes: dict[str, Node] = {}
    shapes: dict[str, Any] = {}
    previous: str | None = None
    for i, entry in enumerate(entries):
        class_name, config = _config_of(entry, f"model.layers[{i}]")
        if class_name == "InputLayer":
            if i:
                raise SpecError("an InputLayer may only come first in a Sequential model", field="model")
            name = _layer_name(entry, config, "input_layer")
            nodes[name], previous = Node(name, None, []), name
            shapes[name] = _input_shape(config)
            continue
        if previous is None:
            nodes["input_layer"], previous = Node("input_layer", None, []), "input_layer"
            shapes["input_layer"] = _input_shape(config)
        name = _layer_name(entry, config, f"layer_{i}")
        if name in nodes:
            raise SpecError(f"layer names must be unique: {name!r} appears twice", field="model")
        nodes[name] = Node(name, _make(class_name, name, config), [previous])
        previous = name
    first = next(iter(nodes))
    assert previous is not None
    if previous == first:
        raise SpecError("the model has no layer besides its input", field="model.layers")
    return Model(nodes, [first], [previous], model_name, {k: v for k, v in shapes.items() if v})


def _history(ref: Any, where: str) -> str:
    """The layer name a reference points at (``[name, node, index]`` or a Keras 3 tensor)."""
    if isinstance(ref, Mapping) and ref.get("class_name") == "__keras_tensor__":
        ref = (ref.get("config") or {}).get("keras_history")
    if not isinstance(ref, list | tuple) or len(ref) < 3 or not isinstance(ref[0], str):
        raise SpecError(f"{where}: cannot read the connection {shown(ref)}", field="model")
    if ref[1] != 0 or ref[2] != 0:
        raise SpecError(f"{where}: takes output {ref[1:3]} of layer {ref[0]!r}; layers called more than "
                        "once (shared layers) are not supported", field="model")
    return ref[0]


def _inbound(entry: Mapping[str, Any], name: str) -> list[str]:
    nodes = entry.get("inbound_nodes") or []
    if not isinstance(nodes, list):
        raise SpecError(f"layer {name!r}: inbound_nodes must be a list", field="model")
    if len(nodes) > 1:
        raise SpecError(f"layer {name!r} is called {len(nodes)} times; shared layers are not supported", field="model")
    if not nodes:
        return []
    node = nodes[0]
    where = f"layer {name!r}"
    if isinstance(node, Mapping):  # Keras 3
        args = node.get("args") or []
        refs: list[Any] = []
        for a in args:
            refs.extend(a if isinstance(a, list) else [a])
        return [_history(r, where) for r in refs]
    if isinstance(node, list):  # tf.keras 2
        return [_history(r, where) for r in node]
    raise SpecError(f"{where}: cannot read inbound_nodes {shown(node)}", field="model")


def _ends(value: Any, field: str) -> list[str]:
    if isinstance(value, list) and value and isinstance(value[0], str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise SpecError(f"model config needs '{field}' as [[layer, 0, 0], ...], got {shown(value)}", field=f"model.{field}")
    return [_history(v, field) for v in value]


def _functional(entries: list[Any], config: Mapping[str, Any], model_name: str) -> Model:
    nodes: dict[str, Node] = {}
    shapes: dict[str, Any] = {}
    for i, entry in enumerate(entries):
        class_name, cfg = _config_of(entry, f"model.layers[{i}]")
        name = _layer_name(entry, cfg, f"layer_{i}")
        if name in nodes:
            raise SpecError(f"layer names must be unique: {name!r} appears twice", field="model")
        if class_name == "InputLayer":
            nodes[name] = Node(name, None, [])
            shapes[name] = _input_shape(cfg)
            continue
        inbound = _inbound(entry, name)
        if not inbound:
            raise SpecError(f"layer {name!r} ({class_name}) has no inbound connection", field="model")
        nodes[name] = Node(name, _make(class_name, name, cfg), inbound)
    inputs = _ends(config.get("input_layers"), "input_layers")
    outputs = _ends(config.get("output_layers"), "output_layers")
    for n in inputs:
        if n not in nodes or nodes[n].layer is not None:
            raise SpecError(f"input_layers names {n!r}, which is not an InputLayer of the model", field="model")
    for n in outputs:
        if n not in nodes:
            raise SpecError(f"output_layers names {n!r}, which is not a layer of the model", field="model")
    stray = [n for n, node in nodes.items() if node.layer is None and n not in inputs]
    if stray:
        raise SpecError(f"InputLayer {stray[0]!r} is not among the model's input_layers {inputs}", field="model")
    return Model(toposort(nodes), inputs, outputs, model_name, {k: v for k, v in shapes.items() if v})
