"""A stack of Dense layers with a data loss: every loss term and its gradient per parameter.

The objective Keras ``fit`` minimises::

    total = data_loss + Σ_layers (activity_regularizer + kernel_regularizer + bias_regularizer)

``losses`` labels each term ``"<layer>/<term>"`` (layer names default to Keras's
``dense``, ``dense_1``, ``dense_2``, …) beside ``"data_loss"`` and ``"total"``.
``gradients["<layer>/kernel"]["<term>"]`` is the gradient of one term with respect
to one parameter; a term that does not reach a parameter is omitted:

* ``data_loss`` reaches every parameter;
* a weight penalty reaches only its own weight;
* the activity penalty of layer k reaches the kernels and biases of layers ≤ k.

``gradients[...]["total"]`` is their sum: the gradient ``fit`` applies.

The stack is evaluated as a Sequential model of :class:`service.core.layers.dense.Dense`
layers by :func:`service.core.model.evaluate`, the code ``POST /v1/model`` runs; this
module validates the stack (field names ``layers.<i>.…`` in errors) and names its layers.

Crossentropy on a sigmoid/softmax head: Keras's ``sigmoid`` and ``softmax``
activations attach their logits to their output, and ``binary_crossentropy`` /
``categorical_crossentropy`` with ``from_logits=False`` then compute from those
logits (no probability clipping).  The service does the same for the matching
pairs (sigmoid → binary, softmax over the last axis → categorical).  Keras also
takes that shortcut for the crossed pairs (a softmax head with binary
crossentropy, a sigmoid head with categorical crossentropy), where it computes a
different function than the one asked for; the service does not copy that and
computes those losses on the probabilities.

Example (one linear layer, MSE)::

    >>> x = np.array([[1.0, 2.0]], np.float64); t = np.array([[1.0]])
    >>> r = network(x, t, [LayerSpec(kernel=np.array([[0.5], [0.25]]), kernel_regularizer="l2")])
    >>> float(r.losses["data_loss"]), float(r.losses["dense/kernel_regularizer"])
    (0.0, 0.003125)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.core import losses as loss_registry
from service.core.activations import Activation
from service.core.dense import (
    ActivationSpec,
    RegularizerSpec,
    build_layer,
    check_inputs,
    check_normalization,
)
from service.core.errors import ShapeError, SpecError, shown
from service.core.losses import Loss
from service.core.numeric import result_dtype, work_dtype


@dataclass(frozen=True)
class LayerSpec:
    """One Dense layer of a stack, as a client describes it."""

    kernel: np.ndarray
    bias: np.ndarray | None = None
    activation: ActivationSpec = None
    kernel_regularizer: RegularizerSpec = None
    bias_regularizer: RegularizerSpec = None
    activity_regularizer: RegularizerSpec = None
    name: str | None = None


@dataclass(frozen=True)
class NetworkResult:
    outputs: np.ndarray
    losses: dict[str, np.floating[Any]]
    gradients: dict[str, dict[str, np.ndarray]] | None


def layer_names(specs: Sequence[LayerSpec]) -> list[str]:
    """Explicit names, and Keras's ``dense``, ``dense_1``, … for unnamed layers (in order)."""
    names: list[str] = []
    unnamed = 0
    for i, spec in enumerate(specs):
        if spec.name is None:
            names.append("dense" if unnamed == 0 else f"dense_{unnamed}")
            unnamed += 1
            continue
        if not isinstance(spec.name, str) or not spec.name or "/" in spec.name:
            raise SpecError(
                f"layers.{i}.name must be a non-empty string without '/', got {shown(spec.name)}",
                field=f"layers.{i}.name",
            )
        names.append(spec.name)
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise SpecError(
                f"layer names must be unique: {shown(name)} names layers {seen[name]} and {i}",
                field=f"layers.{i}.name",
            )
        seen[name] = i
    return names


def logits_loss(loss: Loss, head: Activation, ndim: int) -> Loss | None:
    """The from-logits loss Keras substitutes for a matching sigmoid/softmax head, if any."""
    if loss.params.get("from_logits") is not False:
        return None
    if loss.name == "binary_crossentropy" and head.name == "sigmoid":
        return loss.with_logits()
    if (
        loss.name == "categorical_crossentropy"
        and head.name == "softmax"
        and head.params.get("axis") in (-1, ndim - 1)
    ):
        return loss.with_logits()
    return None


def _targets_fit(targets: tuple[int, ...], outputs: tuple[int, ...]) -> bool:
    """Equal shapes, or Keras's allowance of a trailing axis of size 1 on either side
    (labels of shape ``(N,)`` for a one-unit output of shape ``(N, 1)``)."""
    return (
        targets == outputs
        or (outputs[-1:] == (1,) and targets == outputs[:-1])
        or (targets[-1:] == (1,) and targets[:-1] == outputs)
    )


def _get_loss(spec: str | Mapping[str, Any] | Loss) -> Loss:
    try:
        return loss_registry.get(spec)
    except SpecError as exc:
        raise SpecError(f"loss: {exc.message}", field="loss") from None


def network(
    inputs: np.ndarray,
    targets: np.ndarray,
    layers: Sequence[LayerSpec],
    loss: str | Mapping[str, Any] | Loss = "mean_squared_error",
    activity_normalization: str = "batch",
    return_gradients: bool = True,
) -> NetworkResult:
    """Forward pass of a Dense stack, every loss term, and every term's gradient per parameter.

    The computation runs in the promoted dtype of all tensors given.
    """
    check_normalization(activity_normalization)
    if not layers:
        raise SpecError("layers must hold at least one layer", field="layers")
    names = layer_names(layers)
    dtype = result_dtype(inputs, targets, *(a for s in layers for a in (s.kernel, s.bias)))
    built = [
        build_layer(
            s.kernel, s.bias, s.activation, s.kernel_regularizer, s.bias_regularizer,
            s.activity_regularizer, dtype=dtype, where=f"layers.{i}.",
        )
        for i, s in enumerate(layers)
    ]
    data_loss_fn = _get_loss(loss)

    # The stack is a Sequential model of Dense layers: one code path with POST /v1/model.
    from service.core.layers.dense import Dense
    from service.core.model import Model, Node, evaluate

    shape = inputs.shape
    for i, layer in enumerate(built):
        check_inputs(np.broadcast_to(np.zeros((), work_dtype(dtype)), shape), layer,
                     field="inputs" if i == 0 else f"the outputs of layer {names[i - 1]!r}")
        shape = (*shape[:-1], layer.units)
    if not _targets_fit(targets.shape, shape):
        raise ShapeError(
            f"targets have shape {list(targets.shape)} but the network outputs shape "
            f"{list(shape)}; they must be equal (or differ by a trailing axis of size 1)",
            field="targets",
        )
    nodes = {"": Node("", None, [])}  # the input node; layer names are never empty
    weights: dict[str, np.ndarray] = {}
    previous = ""
    for name, spec, layer in zip(names, layers, built, strict=True):
        nodes[name] = Node(name, Dense.of(name, layer), [previous])
        weights[f"{name}/kernel"] = spec.kernel
        if spec.bias is not None:
            weights[f"{name}/bias"] = spec.bias
        previous = name
    result = evaluate(
        Model(nodes, [""], [previous]), weights, inputs, targets, data_loss_fn,
        activity_normalization=activity_normalization, return_gradients=return_gradients, diagnose=False,
    )
    return NetworkResult(outputs=result.outputs, losses=result.losses, gradients=result.gradients)
