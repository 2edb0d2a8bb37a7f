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

Crossentropy on a sigmoid/softmax head (see :func:`head_loss`): Keras's ``sigmoid`` and
``softmax`` activations attach their logits to their output, and ``binary_crossentropy``,
``categorical_crossentropy`` and ``sparse_categorical_crossentropy`` then compute from
those logits (no probability clipping) *whatever ``from_logits`` says* (with
``from_logits=true`` Keras warns and still uses the logits).  The service does the same
for the matching pairs: sigmoid → binary (and the binary focal loss, whose crossentropy
term Keras also takes from the logits), softmax over the loss's axis (``-1``, the last
index, or either as a one-element list) → categorical / sparse categorical.

Two deliberate differences (README, "Where we differ from Keras"):

* crossed heads (a softmax head with a binary loss, a sigmoid head with a categorical
  one): Keras still takes the logits shortcut and so computes another function; the
  service computes the loss asked for on the probabilities;
* a softmax over another axis than the loss's with categorical crossentropy: Keras
  takes the shortcut over the loss's axis (another function again); the service
  computes the crossentropy of the probabilities, in the equal log-space form
  ``q = softmax_loss_axis(log_softmax_head_axis(z))`` so it stays finite where the
  probabilities underflow to 0.  ``from_logits`` is ignored there too (the head's
  output is probabilities).

Example (one linear layer, MSE)::

    >>> x = np.array([[1.0, 2.0]], np.float64); t = np.array([[1.0]])
    >>> r = network(x, t, [LayerSpec(kernel=np.array([[0.5], [0.25]]), kernel_regularizer="l2")])
    >>> float(r.losses["data_loss"]), float(r.losses["dense/kernel_regularizer"])
    (0.0, 0.003125)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.core import losses as loss_registry
from service.core.activations import Activation
from service.core.dense import (
    ActivationSpec,
    Layer,
    Pass,
    RegularizerSpec,
    activity_divisor,
    activity_gradient,
    backward,
    build_layer,
    check_inputs,
    check_normalization,
    chosen,
    forward,
    layer_penalties,
)
from service.core.errors import ShapeError, SpecError, shown
from service.core.losses import Loss
from service.core.numeric import FloatArray, finish, result_dtype, total, work_dtype
from service.core.selection import TOTAL, GradientsSpec, gradient_selection


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


def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """An activation or loss ``axis`` (int, list/tuple of ints, or None = all) as sorted indices."""
    axes = range(ndim) if axis is None else axis if isinstance(axis, tuple | list) else (axis,)
    return tuple(sorted({int(a) % ndim for a in axes}))


def logits_loss(loss: Loss, head: Activation, ndim: int) -> Loss | None:
    """The from-logits loss Keras substitutes for a matching sigmoid/softmax head, if any.

    Matching: ``binary_crossentropy`` on sigmoid (either ``from_logits``); the binary focal
    loss on sigmoid with ``from_logits=false`` (Keras's focal factor uses the same
    probabilities and its crossentropy the logits: the from-logits form exactly);
    ``categorical_crossentropy`` and ``sparse_categorical_crossentropy`` (without
    ``ignore_class``, whose masking drops the logits in Keras) on a softmax over the
    loss's own axis.
    """
    if head.name == "sigmoid":
        if loss.name == "binary_crossentropy" or (
            loss.name == "binary_focal_crossentropy" and not loss.params["from_logits"]
        ):
            return loss.with_logits()
        return None
    if head.name != "softmax" or loss.name not in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
        return None
    if loss.params.get("ignore_class") is not None:
        return None
    if _axes(head.params["axis"], ndim) == _axes(loss.params["axis"], ndim):
        return loss.with_logits()
    return None


def head_loss(
    loss: Loss,
    head: Activation,
    z: FloatArray,
    y: FloatArray,
    t: FloatArray,
    sample_weight: np.ndarray | None = None,
    need_gradient: bool = True,
) -> tuple[Any, FloatArray | None]:
    """The data loss of a head ``y = head(z)`` and its gradient wrt ``z``, as Keras ``fit``.

    Returns ``(value, ∂Σvalue/∂z)``; ``value`` is a tensor for ``reduction="none"``.
    Uses the logits where Keras does (:func:`logits_loss`); a categorical crossentropy
    on a softmax over another axis is the crossentropy of the probabilities, computed as
    ``q = softmax_loss_axis(log_softmax_head_axis(z))`` (equal to ``y/Σy``, finite where
    ``y`` underflows).  Otherwise the loss of ``y``, back through the activation.
    """
    sub = logits_loss(loss, head, y.ndim)
    if sub is not None:
        return sub.value(t, z, sample_weight), sub.gradient(t, z, sample_weight) if need_gradient else None
    if loss.name == "categorical_crossentropy" and head.name == "softmax":
        probs = Loss(loss.name, {**loss.params, "from_logits": False})
        log_head = Activation("log_softmax", {"axis": head.params["axis"]})
        normalise = Activation("softmax", {"axis": loss.params["axis"]})
        lz = log_head(z)
        q = normalise(lz)
        value = probs.value(t, q, sample_weight)
        if not need_gradient:
            return value, None
        g_q = probs.gradient(t, q, sample_weight)
        return value, log_head.vjp(z, lz, normalise.vjp(lz, q, g_q))
    value = loss.value(t, y, sample_weight)
    if not need_gradient:
        return value, None
    return value, head.vjp(z, y, loss.gradient(t, y, sample_weight))


#: Losses whose targets are class indices (the outputs' shape without the class axis).
SPARSE_LOSSES = ("sparse_categorical_crossentropy", "categorical_generalized_cross_entropy", "circle")


def _targets_fit(targets: tuple[int, ...], outputs: tuple[int, ...]) -> bool:
    """Equal shapes, or Keras's allowance of a trailing axis of size 1 on either side
    (labels of shape ``(N,)`` for a one-unit output of shape ``(N, 1)``)."""
    return (
        targets == outputs
        or (outputs[-1:] == (1,) and targets == outputs[:-1])
        or (targets[-1:] == (1,) and targets[:-1] == outputs)
    )


def check_targets(loss: Loss, targets: tuple[int, ...], outputs: tuple[int, ...], what: str) -> None:
    """Targets fit the outputs as ``loss`` reads them, else a :class:`ShapeError` on ``targets``.

    Class-index losses take the outputs' shape without the class axis (or with a trailing
    1; ``categorical_generalized_cross_entropy`` without it only); the others
    :func:`_targets_fit`.
    """
    if loss.name in SPARSE_LOSSES:
        if targets not in (outputs[:-1], (*outputs[:-1], 1)) or (
            loss.name == "categorical_generalized_cross_entropy" and targets != outputs[:-1]
        ):
            raise ShapeError(
                f"targets have shape {list(targets)} but {loss.name} takes one class "
                f"index per sample: shape {list(outputs[:-1])} (the outputs' {list(outputs)} "
                "without the class axis) or with a trailing 1",
                field="targets",
            )
    elif not _targets_fit(targets, outputs):
        raise ShapeError(
            f"targets have shape {list(targets)} but the {what} outputs shape "
            f"{list(outputs)}; they must be equal (or differ by a trailing axis of size 1)",
            field="targets",
        )


def _get_loss(spec: str | Mapping[str, Any] | Loss) -> Loss:
    try:
        return loss_registry.get(spec)
    except SpecError as exc:
        raise SpecError(f"loss: {exc.message}", field="loss") from None


def _backprop(
    layers: Sequence[Layer],
    passes: Sequence[Pass],
    names: Sequence[str],
    top: int,
    g_z: FloatArray,
    term: str,
    grads: dict[str, dict[str, FloatArray]],
    needs: Callable[[str, str], bool],
) -> None:
    """Propagate ``g_z = ∂term/∂z_top`` down, recording the kernel and bias gradients
    ``needs(parameter, term)`` asks for, and stopping below the lowest layer that needs one."""
    wanted = [
        (needs(f"{names[i]}/kernel", term), needs(f"{names[i]}/bias", term)) for i in range(top + 1)
    ]
    lowest = next((i for i, w in enumerate(wanted) if any(w)), None)
    if lowest is None:
        return
    for i in range(top, lowest - 1, -1):
        d_kernel, d_bias, d_x = backward(
            layers[i], passes[i], g_z,
            need_inputs=i > lowest, need_kernel=wanted[i][0], need_bias=wanted[i][1],
        )
        if d_kernel is not None:
            grads[f"{names[i]}/kernel"][term] = d_kernel
        if d_bias is not None:
            grads[f"{names[i]}/bias"][term] = d_bias
        if i > lowest:
            assert d_x is not None
            below = passes[i - 1]
            g_z = layers[i - 1].activation.vjp(below.z, below.y, d_x)


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
    values (its gradient is what ``tf.GradientTape`` gives for that tensor) and
    ``data_loss_values`` holds them.  ``return_gradients`` selects the gradients
    (:mod:`service.core.selection`): a term's backward pass runs only as deep as the
    lowest parameter that needs it.
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

    wd = work_dtype(dtype)
    x: FloatArray = np.asarray(inputs, dtype=wd)
    passes: list[Pass] = []
    for i, layer in enumerate(built):
        check_inputs(x, layer, field="inputs" if i == 0 else f"the outputs of layer {names[i - 1]!r}")
        passes.append(forward(layer, x))
        x = passes[-1].y
    check_targets(data_loss_fn, targets.shape, x.shape, "network")
    t = np.asarray(targets, dtype=wd)
    head = passes[-1]
    data_value, g_top = head_loss(
        data_loss_fn, built[-1].activation, head.z, head.y, t, sample_weight,
        gradient_selection(return_gradients) is not None,
    )
    values = None
    if np.ndim(data_value) > 0:
        values = finish({"data_loss_values": data_value}, dtype)["data_loss_values"]
        data_value = np.sum(data_value)
    terms: dict[str, Any] = {"data_loss": data_value}
    divisors = [activity_divisor(p.y, activity_normalization) for p in passes]
    for name, layer, p, divisor in zip(names, built, passes, divisors, strict=True):
        for term, value in layer_penalties(layer, p, divisor).items():
            terms[f"{name}/{term}"] = value
    losses = finish({**terms, "total": total(terms, head.y.dtype.type(0))}, dtype, prefix="losses.")
    outputs = finish({"outputs": head.y}, dtype)["outputs"]
    selection = gradient_selection(return_gradients)
    if selection is None:
        return NetworkResult(outputs=outputs, losses=losses, gradients=None, data_loss_values=values)

    like: dict[str, FloatArray] = {}
    for name, layer in zip(names, built, strict=True):
        like[f"{name}/kernel"] = layer.kernel
        if layer.bias is not None:
            like[f"{name}/bias"] = layer.bias
    selection.check(like, [*terms, TOTAL], "return_gradients")
    grads: dict[str, dict[str, FloatArray]] = {q: {} for q in like if selection.wants_parameter(q)}

    def needs(param: str, term: str) -> bool:
        return param in grads and selection.needs(param, term)

    if any(needs(q, "data_loss") for q in grads):
        assert g_top is not None
        _backprop(built, passes, names, len(built) - 1, g_top, "data_loss", grads, needs)
    for k, (name, layer) in enumerate(zip(names, built, strict=True)):
        for term, reg in layer.regularizers.items():
            label = f"{name}/{term}"
            if term == "kernel_regularizer":
                if needs(f"{name}/kernel", label):
                    grads[f"{name}/kernel"][label] = reg.gradient(layer.kernel)
            elif term == "bias_regularizer":
                if needs(f"{name}/bias", label):
                    assert layer.bias is not None
                    grads[f"{name}/bias"][label] = reg.gradient(layer.bias)
            elif any(needs(q, label) for q in grads):
                g_z = activity_gradient(layer, passes[k], divisors[k])
                _backprop(built, passes, names, k, g_z, label, grads, needs)
    gradients = {
        param: finish(chosen(of, like[param], selection, param), dtype, prefix=f"gradients.{param}.")
        for param, of in grads.items()
    }
    return NetworkResult(outputs=outputs, losses=losses, gradients=gradients, data_loss_values=values)
