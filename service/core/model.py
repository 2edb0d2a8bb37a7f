"""A Keras model as a DAG of layers: forward pass, labelled terms, ``gradients[weight][term]``.

The objective Keras ``fit`` minimises::

    total = data_loss + Σ_layers (activity_regularizer(y)/batch + Σ_args regularizer(weight))

Terms are labelled ``"<layer>/<Keras argument>"`` (``dense/kernel_regularizer``,
``batch_normalization/gamma_regularizer``, ``conv2d/activity_regularizer``) beside
``data_loss`` and ``total``; weights are ``"<layer>/<weight>"`` (``conv2d/kernel``).
Only trainable weights are regularized (Keras never regularizes BatchNormalization's
moving statistics); a regularizer given for a weight the layer does not have
(``use_bias=False``) adds no term, as in Keras.

Each term's gradient is propagated separately from where it enters (the data loss at the
output, an activity term at its layer's output) back through every layer's
vector-Jacobian product, so ``gradients[w][t]`` is exactly ``∂t/∂w``; a term that does
not reach a weight is omitted; ``total`` is their sum, what ``fit`` applies.

Crossentropy on a sigmoid/softmax head uses the logits, by the rule of
:func:`service.core.heads.head_loss` (the one place that rule lives); the head may sit
below layers that pass their input through unchanged (Dropout at inference), as in Keras,
where the output is then the same tensor and keeps its logits.

    >>> import numpy as np
    >>> from service.core.layers import create
    >>> m = Model({"x": Node("x", None, []), "d": Node("d", create("Dense", "d", {"units": 1,
    ...     "use_bias": False, "kernel_regularizer": {"class_name": "L2", "config": {"l2": 0.5}}}), ["x"])},
    ...     inputs=["x"], outputs=["d"])
    >>> r = evaluate(m, {"d/kernel": np.array([[2.0]])}, {"x": np.array([[1.0]])})
    >>> float(r.losses["d/kernel_regularizer"]), float(r.gradients["d/kernel"]["total"][0, 0])
    (2.0, 2.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from service.core.dense import activity_divisor, check_normalization, chosen, per_batch
from service.core.errors import ShapeError, SpecError
from service.core.heads import check_targets, get_loss, head_loss
from service.core.layers.base import Layer, Shape
from service.core.losses import Loss
from service.core.numeric import finish, result_dtype, total, work_dtype
from service.core.regularizers import Regularizer
from service.core.selection import TOTAL, GradientsSpec, gradient_selection


@dataclass(frozen=True)
class Node:
    """One layer call: ``layer`` applied to the outputs of the ``inputs`` nodes (an input
    node has ``layer=None``)."""

    name: str
    layer: Layer | None
    inputs: list[str]


@dataclass
class Model:
    """Nodes in topological order (:func:`toposort` checks it), model inputs and outputs."""

    nodes: dict[str, Node]
    inputs: list[str]
    outputs: list[str]
    name: str = "model"
    input_shapes: dict[str, Shape] = field(default_factory=dict)

    @property
    def layers(self) -> list[Layer]:
        return [n.layer for n in self.nodes.values() if n.layer is not None]

    def cost(self, input_shapes: Mapping[str, Shape]) -> Cost:
        """:func:`cost` of this model for inputs of these shapes."""
        return cost(self, input_shapes)


@dataclass(frozen=True)
class Cost:
    """What a model costs before it runs: multiply-adds of one forward pass, elements of
    every layer output and scratch array, parameters, and layers."""

    flops: int
    elements: int
    parameters: int
    layers: int

    def bytes(self, itemsize: int = 4) -> int:
        """Memory of the layer outputs and scratch arrays at ``itemsize`` bytes per element."""
        return self.elements * itemsize


@dataclass(frozen=True)
class ModelResult:
    outputs: np.ndarray
    losses: dict[str, Any]
    layers: list[dict[str, Any]]
    gradients: dict[str, dict[str, np.ndarray]] | None
    layer_outputs: dict[str, np.ndarray] | None
    diagnostics: list[dict[str, str]]
    updates: dict[str, np.ndarray]
    #: The weighted per-sample data losses, for a loss with ``reduction="none"`` (else None).
    data_loss_values: np.ndarray | None = None


def toposort(nodes: Mapping[str, Node]) -> dict[str, Node]:
    """The nodes in an order where each comes after its inputs; a cycle or a dangling
    input is a SpecError naming the layer."""
    order: dict[str, Node] = {}
    state: dict[str, int] = {}
    for start in nodes:
        stack: list[tuple[str, int]] = [(start, 0)]
        while stack:
            name, i = stack.pop()
            if i == 0:
                if state.get(name) == 2:
                    continue
                state[name] = 1
            node = nodes[name]
            if i < len(node.inputs):
                stack.append((name, i + 1))
                dep = node.inputs[i]
                if dep not in nodes:
                    raise SpecError(f"layer {name!r} takes the output of {dep!r}, which is not a layer "
                                    "of the model", field="model")
                if state.get(dep) == 1:
                    raise SpecError(f"the model has a cycle through layers {dep!r} and {name!r}", field="model")
                if state.get(dep) != 2:
                    stack.append((dep, 0))
                continue
            state[name] = 2
            order[name] = node
    return order


def shapes_of(model: Model, input_shapes: Mapping[str, Shape]) -> dict[str, Shape]:
    """Every node's output shape for model inputs of these shapes (nothing is computed)."""
    shapes: dict[str, Shape] = {}
    for name, node in model.nodes.items():
        if node.layer is None:
            shapes[name] = tuple(input_shapes[name])
            if not shapes[name]:
                raise ShapeError(f"input {name!r} must have a batch axis (rank >= 1), got a scalar",
                                 field="inputs")
            continue
        ins = [shapes[i] for i in node.inputs]
        if node.layer.INPUTS == 1 and len(ins) != 1:
            raise SpecError(f"layer {name!r} takes one input, got {len(ins)}", field="model")
        if node.layer.INPUTS is None and len(ins) < 2:
            raise SpecError(f"layer {name!r} merges two or more inputs, got {len(ins)}", field="model")
        shapes[name] = node.layer.output_shape(ins)
    return shapes


def cost(model: Model, input_shapes: Mapping[str, Shape]) -> Cost:
    """Price a model before it runs (conv output sizes × kernel sizes, parameters, layers)."""
    shapes = shapes_of(model, input_shapes)
    flops = elements = params = 0
    for name, node in model.nodes.items():
        elements += math.prod(int(d or 1) for d in shapes[name])
        if node.layer is None:
            continue
        ins = [shapes[i] for i in node.inputs]
        flops += node.layer.flops(ins)
        elements += node.layer.workspace(ins)
        params += sum(math.prod(w.shape) for w in node.layer.weight_specs(ins))
    return Cost(flops=flops, elements=elements, parameters=params, layers=len(model.layers))


def _inputs_by_name(model: Model, inputs: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if isinstance(inputs, Mapping):
        missing = [n for n in model.inputs if n not in inputs]
        extra = [n for n in inputs if n not in model.inputs]
        if missing or extra:
            raise SpecError(
                f"inputs must name the model's input layers {model.inputs}; "
                f"missing {missing}, unknown {extra}",
                field="inputs",
            )
        return {n: inputs[n] for n in model.inputs}
    if len(model.inputs) != 1:
        raise SpecError(f"the model has {len(model.inputs)} inputs {model.inputs}: send inputs as an "
                        "object keyed by input layer name", field="inputs")
    return {model.inputs[0]: inputs}


def check_weights(model: Model, weights: Mapping[str, np.ndarray], shapes: Mapping[str, Shape]) -> None:
    """Every weight present with its shape (checked by each layer's build); no unknown key."""
    known: set[str] = set()
    for name, node in model.nodes.items():
        if node.layer is not None:
            node.layer.build([shapes[i] for i in node.inputs], weights)
            known |= {f"{name}/{w.name}" for w in node.layer.specs}
    unknown = sorted(set(weights) - known)
    if unknown:
        raise ShapeError(f"weight {unknown[0]!r} belongs to no layer of the model; the weights are "
                         f"{', '.join(sorted(known)) or 'none'}", field=f"weights.{unknown[0]}")


def evaluate(
    model: Model,
    weights: Mapping[str, np.ndarray],
    inputs: np.ndarray | Mapping[str, np.ndarray],
    targets: np.ndarray | None = None,
    loss: str | Mapping[str, Any] | Loss | None = None,
    *,
    training: bool = False,
    activity_normalization: str = "batch",
    return_gradients: GradientsSpec = True,
    return_layer_outputs: bool = False,
    diagnose: bool = True,
    sample_weight: np.ndarray | None = None,
) -> ModelResult:
    """Forward pass, every labelled term and ``gradients[weight][term]`` (see the module doc).

    ``sample_weight`` weights the data loss's per-sample values (Keras's
    ``fit(sample_weight=...)``).  With the loss's ``reduction="none"``, ``data_loss`` is the
    sum of the weighted per-sample values (its gradient is what ``tf.GradientTape`` gives
    for that tensor) and ``data_loss_values`` holds them.  ``return_gradients`` selects the
    gradients (:mod:`service.core.selection`): a term whose gradient nobody needs is not
    propagated, and a propagation stops below the last layer whose weights need it.
    """
    from service.core.diagnostics import diagnose as find_diagnostics

    check_normalization(activity_normalization)
    selection = gradient_selection(return_gradients)
    xs = _inputs_by_name(model, inputs)
    if (targets is None) != (loss is None):
        raise SpecError("targets and loss go together: give both or neither", field="loss" if targets is not None else "targets")
    if sample_weight is not None and loss is None:
        raise SpecError("sample_weight weights the data loss: give targets and a loss with it", field="sample_weight")
    if len(model.outputs) != 1:
        raise SpecError(f"the model has {len(model.outputs)} outputs {model.outputs}; only single-output "
                        "models are supported", field="model")
    dtype = result_dtype(*[a for a in xs.values() if a.dtype.kind == "f"], *weights.values(),
                         *([targets] if targets is not None else []))
    wd = work_dtype(dtype)
    shapes = shapes_of(model, {n: x.shape for n, x in xs.items()})
    check_weights(model, {k: np.asarray(v, dtype=wd) for k, v in weights.items()}, shapes)
    trainable = {f"{n}/{w.name}": node.layer.weights[w.name] for n, node in model.nodes.items()
                 if node.layer is not None for w in node.layer.specs if w.trainable}

    def needed(term: str) -> set[str]:
        """The trainable weights whose gradient of ``term`` must be computed."""
        return {p for p in trainable if selection is not None and selection.needs(p, term)}

    values: dict[str, np.ndarray] = {n: np.asarray(x, dtype=wd) for n, x in xs.items()}
    caches: dict[str, Any] = {}
    for name, node in model.nodes.items():
        if node.layer is None:
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            values[name], caches[name] = node.layer.forward([values[i] for i in node.inputs], training)
    out_name = model.outputs[0]
    y_out = values[out_name]

    terms: dict[str, Any] = {}
    data_values = None
    # (term, node, ∂term/∂(node output, or its pre-activation when from_logits) once computed, from_logits)
    starts: list[tuple[str, str, Callable[[], np.ndarray], bool]] = []
    if targets is not None and loss is not None:
        loss_fn = get_loss(loss)
        check_targets(loss_fn, targets.shape, y_out.shape, "model")
        t = np.asarray(targets, dtype=wd)
        head_name = _head_node(model, caches, out_name)
        out_layer = model.nodes[head_name].layer
        head = out_layer.head(caches[head_name]) if out_layer is not None else None
        need = bool(needed("data_loss"))
        if head is not None:  # the loss of the head's output, from its logits where Keras does
            value, g_z = head_loss(loss_fn, head[0], head[1], y_out, t, sample_weight, need)
            starts.append(("data_loss", head_name, partial(_given, g_z), True))
        else:
            value = loss_fn.value(t, y_out, sample_weight)
            starts.append(("data_loss", out_name, lambda: loss_fn.gradient(t, y_out, sample_weight), False))
        if np.ndim(value) > 0:  # reduction "none": the per-sample values, and their sum
            data_values = finish({"data_loss_values": value}, dtype)["data_loss_values"]
            value = np.sum(value)
        terms["data_loss"] = value

    summary: list[dict[str, Any]] = []
    own_grads: dict[str, dict[str, Callable[[], np.ndarray]]] = {}
    for name, node in model.nodes.items():
        layer = node.layer
        if layer is None:
            continue
        own: dict[str, Any] = {}
        if "activity_regularizer" in layer.regularizers:
            reg = layer.regularizers["activity_regularizer"]
            divisor = activity_divisor(values[name], activity_normalization)
            own["activity_regularizer"] = per_batch(reg.penalty(values[name]), divisor)
            starts.append((f"{name}/activity_regularizer", name,
                           partial(_activity_gradient, reg, values[name], divisor), False))
        for arg, wname in layer.regularized_weights().items():
            reg, w = layer.regularizers[arg], layer.weights[wname]
            own[arg] = reg.penalty(w)
            own_grads.setdefault(f"{name}/{wname}", {})[f"{name}/{arg}"] = partial(reg.gradient, w)
        terms.update({f"{name}/{k}": v for k, v in own.items()})
        summary.append({"name": name, "class_name": layer.CLASS_NAME, "output_shape": list(values[name].shape),
                        "losses": own})

    losses = finish({**terms, "total": total(terms, y_out.dtype.type(0))}, dtype, prefix="losses.")
    for entry in summary:
        entry["losses"] = {k: losses[f"{entry['name']}/{k}"] for k in entry["losses"]}
    outputs = finish({"outputs": y_out}, dtype)["outputs"]
    updates = finish({f"{n}/{k}": v for n, node in model.nodes.items() if node.layer is not None
                      for k, v in node.layer.updates(caches[n]).items()}, dtype, prefix="updates.")
    layer_outputs = (finish({n: values[n] for n in caches}, dtype, prefix="layer_outputs.")
                     if return_layer_outputs else None)
    diagnostics = find_diagnostics(model, values, caches, losses, training) if diagnose else []
    result = partial(ModelResult, outputs, losses, summary, layer_outputs=layer_outputs, diagnostics=diagnostics,
                     updates=updates, data_loss_values=data_values)
    if selection is None:
        return result(gradients=None)

    selection.check(trainable, [*terms, TOTAL], "return_gradients")
    grads: dict[str, dict[str, np.ndarray]] = {p: {} for p in trainable}
    for path, by_term in own_grads.items():
        for term, gradient in by_term.items():
            if path in trainable and selection.needs(path, term):
                grads[path][term] = gradient()
    for term, node_name, g, from_logits in starts:
        want = needed(term)
        if want:
            for path, g_w in backprop(model, caches, node_name, g(), from_logits, want).items():
                grads[path][term] = g_w
    order = list(terms)
    gradients = {}
    for path, like in trainable.items():
        if selection.wants_parameter(path):
            of = {t: grads[path][t] for t in order if t in grads[path]}
            gradients[path] = finish(chosen(of, like, selection, path), dtype, prefix=f"gradients.{path}.")
    return result(gradients=gradients)


def _given(g: np.ndarray | None) -> np.ndarray:
    assert g is not None  # computed whenever a weight needs the data loss's gradient
    return g


def _activity_gradient(reg: Regularizer, y: np.ndarray, divisor: int) -> np.ndarray:
    return per_batch(reg.gradient(y), divisor)


def _head_node(model: Model, caches: Mapping[str, Any], name: str) -> str:
    """The node whose activation produced the output: below layers that passed it through."""
    node = model.nodes[name]
    while node.layer is not None and node.layer.passes_through(caches[node.name]):
        node = model.nodes[node.inputs[0]]
    return node.name


def backprop(model: Model, caches: Mapping[str, Any], start: str, g: np.ndarray,
             from_logits: bool = False, needed: Collection[str] | None = None) -> dict[str, np.ndarray]:
    """``{"<layer>/<weight>": ∂term/∂weight}`` for a term whose gradient wrt ``start``'s
    output (its pre-activation when ``from_logits``) is ``g``.

    ``needed`` (default: every trainable weight) names the weights wanted: a layer is
    visited only if it or a layer feeding it holds one, and computes only those products."""
    names = list(model.nodes)[: list(model.nodes).index(start) + 1]
    wanted: dict[str, set[str]] = {}
    reaches: dict[str, bool] = {}  # the node or one feeding it holds a wanted weight
    for name in names:
        node = model.nodes[name]
        own = set() if node.layer is None else {
            w.name for w in node.layer.specs if w.trainable and (needed is None or f"{name}/{w.name}" in needed)}
        wanted[name] = own
        reaches[name] = bool(own) or any(reaches.get(i, False) for i in node.inputs)
    upstream: dict[str, np.ndarray] = {start: g}
    out: dict[str, np.ndarray] = {}
    for name in reversed(names):
        node = model.nodes[name]
        if name not in upstream or node.layer is None:
            continue
        g_y = upstream.pop(name)
        if not reaches[name]:
            continue
        feeds = any(reaches[i] for i in node.inputs)
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            g_xs, g_w = node.layer.backward_some(g_y, caches[name], inputs=feeds, weights=wanted[name],
                                                 from_logits=name == start and from_logits)
        out.update({f"{name}/{k}": v for k, v in g_w.items() if k in wanted[name]})
        for src, g_x in zip(node.inputs, g_xs, strict=True):
            if g_x is not None and model.nodes[src].layer is not None and reaches[src]:
                upstream[src] = upstream[src] + g_x if src in upstream else g_x
    return out

