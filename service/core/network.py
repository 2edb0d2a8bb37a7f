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

The stack is a Sequential :class:`~service.core.model.Model` of Dense layers evaluated by
:func:`service.core.model.evaluate` (the one code path of ``/v1/model`` and ``/v1/train``);
this module adds the stack's own checks, whose messages name ``layers.<i>.…``.  The data
loss on a sigmoid/softmax head follows Keras's logits rule (:mod:`service.core.heads`).

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

from service.core.dense import (
    ActivationSpec,
    Layer,
    RegularizerSpec,
    build_layer,
    check_normalization,
    output_shape,
)
from service.core.errors import SpecError, shown
from service.core.heads import check_targets, get_loss
from service.core.layers.dense import Dense
from service.core.losses import Loss
from service.core.model import Model, Node, evaluate
from service.core.numeric import result_dtype
from service.core.selection import GradientsSpec


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
    #: The weighted per-sample data losses, for a loss with ``reduction="none"`` (else None).
    data_loss_values: np.ndarray | None = None


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


#: The name of the stack's input node (a layer name cannot contain "/", so it never clashes).
INPUT = "inputs/"


def sequential(
    names: Sequence[str], built: Sequence[Layer], specs: Sequence[LayerSpec]
) -> tuple[Model, dict[str, np.ndarray]]:
    """The stack as a Sequential :class:`Model` of Dense layers (checked ``built``), and the
    ``specs``' weights by path."""
    nodes = {INPUT: Node(INPUT, None, [])}
    weights: dict[str, np.ndarray] = {}
    below = INPUT
    for name, layer, spec in zip(names, built, specs, strict=True):
        nodes[name] = Node(name, Dense.of(name, layer), [below])
        weights[f"{name}/kernel"] = spec.kernel
        if spec.bias is not None:
            weights[f"{name}/bias"] = spec.bias
        below = name
    return Model(nodes, inputs=[INPUT], outputs=[below], name="sequential"), weights


def network(
    inputs: np.ndarray,
    targets: np.ndarray,
    layers: Sequence[LayerSpec],
    loss: str | Mapping[str, Any] | Loss = "mean_squared_error",
    activity_normalization: str = "batch",
    return_gradients: GradientsSpec = True,
    sample_weight: np.ndarray | None = None,
) -> NetworkResult:
    """Forward pass of a Dense stack, every loss term, and every term's gradient per parameter.

    The computation runs in the promoted dtype of all tensors given.  ``sample_weight``
    weights the data loss's per-sample values (Keras's ``fit(sample_weight=...)``).  With
    the loss's ``reduction="none"``, ``data_loss`` is the sum of the weighted per-sample
    values and ``data_loss_values`` holds them.  ``return_gradients`` selects the gradients
    (:mod:`service.core.selection`): a term's backward pass runs only as deep as the
    lowest parameter that needs it.  The stack is checked here (messages name
    ``layers.<i>.…``) and evaluated by :func:`service.core.model.evaluate`.
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
    data_loss_fn = get_loss(loss)
    shape = tuple(inputs.shape)
    for i, layer in enumerate(built):  # every shape error, before anything is computed
        shape = output_shape(shape, layer, field="inputs" if i == 0 else f"the outputs of layer {names[i - 1]!r}")
    check_targets(data_loss_fn, targets.shape, shape, "network")
    model, weights = sequential(names, built, layers)
    # The weights go in as given and the inputs in the promoted dtype, so the model computes
    # in (and rounds to) the stack's dtype above.
    r = evaluate(
        model, weights, np.asarray(inputs, dtype=dtype), targets, data_loss_fn,
        activity_normalization=activity_normalization, return_gradients=return_gradients,
        diagnose=False, sample_weight=sample_weight,
    )
    return NetworkResult(outputs=r.outputs, losses=r.losses, gradients=r.gradients,
                         data_loss_values=r.data_loss_values)
