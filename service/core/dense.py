"""One Dense layer: forward pass, labelled penalty terms, and each term's gradient.

Forward (``x`` of shape ``(batch, …, in)``, ``kernel`` ``(in, units)``, ``bias`` ``(units,)``)::

    z = x · kernel (+ bias)          contracting the last axis of x
    y = activation(z)

Penalty terms, labelled (Keras's ``layer.losses`` lists the same three values,
unlabelled, in the order activity, kernel, bias)::

    kernel_regularizer    R_k(kernel)                 never depends on the batch
    bias_regularizer      R_b(bias)
    activity_regularizer  R_a(y) / batch              batch = y.shape[0] with
                                                      activity_normalization="batch"
                                                      (Keras ≥ 3.14, tf.keras 2.x);
                                                      R_a(y) with "none" (Keras 3.0–3.13, Keras 1)

Gradients of the activity term (the weight terms are the regularizers' own)::

    g_y = ∂R_a/∂y / batch,   g_z = activation'(z) ⊙ g_y   (a Jacobian-vector product for softmax)
    ∂/∂kernel = xᵀ g_z,   ∂/∂bias = Σ g_z,   ∂/∂x = g_z kernelᵀ   (sums over all leading axes)

Example, the seed of SPEC §7 (``Dense(3)`` with all three regularizers on ``ones((2,2,4))*3``)::

    >>> x = np.full((2, 2, 4), 3.0, np.float32)
    >>> k = np.arange(12, dtype=np.float32).reshape(4, 3) / 10 - 0.5
    >>> r = dense(x, k, np.zeros(3, np.float32), None,
    ...           {"type": "l1", "l1": 0.1}, {"type": "l2", "l2": 0.1}, {"type": "l1", "l1": 0.1})
    >>> sorted(r.losses)
    ['activity_regularizer', 'bias_regularizer', 'kernel_regularizer', 'total']
    >>> round(float(r.losses["kernel_regularizer"]), 6)  # 0.1 * Σ|k| = 0.1 * 3.6
    0.36
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.core import activations, regularizers
from service.core.activations import Activation
from service.core.errors import ShapeError, SpecError, shown
from service.core.numeric import FloatArray, finish, result_dtype, total, work_dtype
from service.core.regularizers import Regularizer
from service.core.selection import TOTAL, GradientsSpec, Selection, gradient_selection

#: Accepted values of ``activity_normalization``.
NORMALIZATIONS = ("batch", "none")
#: The penalty terms of one layer, in Keras's ``layer.losses`` order.
TERMS = ("activity_regularizer", "kernel_regularizer", "bias_regularizer")
#: The tensors a gradient is taken with respect to.
PARAMETERS = ("kernel", "bias", "inputs")

RegularizerSpec = str | Mapping[str, Any] | Regularizer | None
ActivationSpec = str | Mapping[str, Any] | Activation | None


@dataclass(frozen=True)
class DenseResult:
    """``losses``: the given terms and ``total``.  ``gradients[parameter][term]`` for
    parameters ``kernel``, ``bias`` (when there is one) and ``inputs``; each holds the
    terms that reach it and ``total``."""

    outputs: np.ndarray
    losses: dict[str, np.floating[Any]]
    gradients: dict[str, dict[str, np.ndarray]] | None


@dataclass(frozen=True)
class Layer:
    """A validated Dense layer: weights in the working dtype, parsed activation and regularizers.

    ``where`` prefixes field names in errors (``""`` for a lone layer, ``"layers.1."`` in a stack).
    """

    kernel: FloatArray
    bias: FloatArray | None
    activation: Activation
    regularizers: dict[str, Regularizer]
    where: str = ""

    @property
    def units(self) -> int:
        return int(self.kernel.shape[1])


@dataclass(frozen=True)
class Pass:
    """What the backward pass needs from the forward pass."""

    x: FloatArray
    z: FloatArray
    y: FloatArray


def check_normalization(value: str) -> str:
    if value not in NORMALIZATIONS:
        raise SpecError(
            f"activity_normalization must be 'batch' or 'none', got {shown(value)}",
            field="activity_normalization",
        )
    return value


def build_layer(
    kernel: np.ndarray,
    bias: np.ndarray | None,
    activation: ActivationSpec,
    kernel_regularizer: RegularizerSpec,
    bias_regularizer: RegularizerSpec,
    activity_regularizer: RegularizerSpec,
    *,
    dtype: np.dtype[Any],
    where: str = "",
) -> Layer:
    """Validate shapes and specs; cast weights to the working dtype of ``dtype``."""
    if kernel.ndim != 2:
        raise ShapeError(
            f"{where}kernel must have rank 2 (in, units), got shape {list(kernel.shape)}",
            field=f"{where}kernel",
        )
    if bias is not None and bias.shape != (kernel.shape[1],):
        raise ShapeError(
            f"{where}bias has shape {list(bias.shape)} but the kernel has "
            f"{kernel.shape[1]} units; bias must have shape [{kernel.shape[1]}]",
            field=f"{where}bias",
        )
    if bias is None and bias_regularizer is not None:
        raise SpecError(
            f"{where}bias_regularizer is given but the layer has no bias; "
            "pass a bias or drop the bias_regularizer",
            field=f"{where}bias_regularizer",
        )
    specs = {
        "activity_regularizer": activity_regularizer,
        "kernel_regularizer": kernel_regularizer,
        "bias_regularizer": bias_regularizer,
    }
    built = {term: _regularizer(spec, f"{where}{term}") for term, spec in specs.items() if spec is not None}
    wd = work_dtype(dtype)
    return Layer(
        kernel=np.asarray(kernel, dtype=wd),
        bias=None if bias is None else np.asarray(bias, dtype=wd),
        activation=_activation(activation, f"{where}activation"),
        regularizers=built,
        where=where,
    )


def _regularizer(spec: RegularizerSpec, field: str) -> Regularizer:
    try:
        return regularizers.get(spec)  # type: ignore[arg-type]
    except SpecError as exc:
        raise _located(exc, field) from None


def _activation(spec: ActivationSpec, field: str) -> Activation:
    try:
        return activations.get(spec)
    except SpecError as exc:
        raise _located(exc, field) from None


def _located(exc: SpecError, field: str) -> SpecError:
    inner = f".{exc.field}" if exc.field and exc.field not in ("regularizer", "activation") else ""
    return SpecError(f"{field}: {exc.message}", field=field + inner)


def check_inputs(inputs: np.ndarray, layer: Layer, *, field: str = "inputs") -> None:
    check_input_shape(inputs.shape, layer, field=field)


def check_input_shape(shape: tuple[int, ...], layer: Layer, *, field: str = "inputs") -> None:
    """Inputs of this shape fit the layer: rank >= 2 and as many features as kernel rows."""
    if len(shape) < 2:
        raise ShapeError(
            f"{field} must have rank >= 2 (batch, ..., features), got shape {list(shape)}",
            field=field,
        )
    if shape[-1] != layer.kernel.shape[0]:
        raise ShapeError(
            f"{layer.where}kernel has {layer.kernel.shape[0]} rows but {field} have "
            f"{shape[-1]} features (last axis)",
            field=f"{layer.where}kernel",
        )


def forward(layer: Layer, x: FloatArray) -> Pass:
    """``z = x·kernel + bias``, ``y = activation(z)``.  Overflow to inf is not an error
    here: every result is checked by :func:`~service.core.numeric.finish`."""
    with np.errstate(over="ignore", invalid="ignore"):
        z = np.matmul(x, layer.kernel)
        if layer.bias is not None:
            z += layer.bias
    try:
        y = layer.activation(z)
    except ShapeError as exc:
        raise _activation_error(layer, exc) from None
    return Pass(x=x, z=z, y=y)


def output_shape(shape: tuple[int, ...], layer: Layer, *, field: str = "inputs") -> tuple[int, ...]:
    """The layer's output shape for inputs of ``shape``, after every shape check that
    :func:`check_inputs` and :func:`forward` make (the same errors; nothing is computed)."""
    check_input_shape(shape, layer, field=field)
    try:
        return layer.activation.checked_output_shape((*shape[:-1], layer.units), layer.kernel.dtype)
    except ShapeError as exc:
        raise _activation_error(layer, exc) from None


def _activation_error(layer: Layer, exc: ShapeError) -> ShapeError:
    where = f"{layer.where}activation"
    return ShapeError(f"{where}: {exc.message}", field=f"{where}.{exc.field}")


def backward(
    layer: Layer,
    p: Pass,
    g_z: FloatArray,
    *,
    need_inputs: bool = True,
    need_kernel: bool = True,
    need_bias: bool = True,
) -> tuple[FloatArray | None, FloatArray | None, FloatArray | None]:
    """``(∂/∂kernel, ∂/∂bias, ∂/∂x)`` given ``g_z = ∂L/∂z``; None for those not needed
    (and for the bias of a layer without one)."""
    rows = math.prod(p.x.shape[:-1])  # explicit: -1 is ambiguous when a dimension is 0
    g2 = g_z.reshape(rows, layer.units)
    d_kernel = p.x.reshape(rows, layer.kernel.shape[0]).T @ g2 if need_kernel else None
    d_bias = g2.sum(axis=0) if layer.bias is not None and need_bias else None
    d_x = g_z @ layer.kernel.T if need_inputs else None
    return d_kernel, d_bias, d_x


def activity_divisor(y: np.ndarray, normalization: str) -> int:
    """What the activity penalty is divided by: ``y.shape[0]`` with ``"batch"`` (1 for a
    rank-0 output), 1 with ``"none"``."""
    if normalization == "none" or y.ndim == 0:
        return 1
    return int(y.shape[0])


def per_batch(value: Any, divisor: int) -> Any:
    """``value / divisor`` as Keras's ``divide_no_nan``: 0 for an empty batch.

    A division, not a multiplication by ``1/divisor``, so the rounding is Keras's.
    """
    if divisor == 1:
        return value
    if divisor == 0:
        return np.zeros_like(value)
    return value / np.asarray(value).dtype.type(divisor)


def layer_penalties(layer: Layer, p: Pass, divisor: int) -> dict[str, np.floating[Any]]:
    """The given terms of one layer, in Keras order, in the working dtype."""
    values: dict[str, np.floating[Any]] = {}
    for term, reg in layer.regularizers.items():
        if term == "activity_regularizer":
            values[term] = per_batch(reg.penalty(p.y), divisor)
        elif term == "kernel_regularizer":
            values[term] = reg.penalty(layer.kernel)
        else:
            assert layer.bias is not None
            values[term] = reg.penalty(layer.bias)
    return values


def activity_gradient(layer: Layer, p: Pass, divisor: int) -> FloatArray:
    """``∂(R_a(y)/divisor)/∂z``."""
    reg = layer.regularizers["activity_regularizer"]
    g_y = per_batch(reg.gradient(p.y), divisor)
    return layer.activation.vjp(p.z, p.y, g_y)


def dense(
    inputs: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray | None = None,
    activation: ActivationSpec = None,
    kernel_regularizer: RegularizerSpec = None,
    bias_regularizer: RegularizerSpec = None,
    activity_regularizer: RegularizerSpec = None,
    activity_normalization: str = "batch",
    return_gradients: GradientsSpec = True,
) -> DenseResult:
    """Forward pass of one Dense layer with its labelled penalty terms and their gradients.

    The computation runs in the promoted dtype of ``inputs``, ``kernel`` and ``bias``.
    ``return_gradients`` selects the gradients (:mod:`service.core.selection`): only
    those asked for, and the terms of a ``total`` asked for, are computed.
    """
    check_normalization(activity_normalization)
    dtype = result_dtype(inputs, kernel, bias)
    layer = build_layer(
        kernel, bias, activation, kernel_regularizer, bias_regularizer, activity_regularizer,
        dtype=dtype,
    )
    check_inputs(inputs, layer)
    p = forward(layer, np.asarray(inputs, dtype=work_dtype(dtype)))
    divisor = activity_divisor(p.y, activity_normalization)
    terms = layer_penalties(layer, p, divisor)
    losses = finish({**terms, "total": total(terms, p.y.dtype.type(0))}, dtype, prefix="losses.")
    outputs = finish({"outputs": p.y}, dtype)["outputs"]
    selection = gradient_selection(return_gradients)
    if selection is None:
        return DenseResult(outputs=outputs, losses=losses, gradients=None)
    selection.check(PARAMETERS, (*TERMS, TOTAL), "return_gradients")

    present = [q for q in PARAMETERS if q != "bias" or layer.bias is not None]
    grads: dict[str, dict[str, FloatArray]] = {q: {} for q in present if selection.wants_parameter(q)}

    def needs(param: str, term: str) -> bool:
        return param in grads and term in layer.regularizers and selection.needs(param, term)

    if needs("kernel", "kernel_regularizer"):
        grads["kernel"]["kernel_regularizer"] = layer.regularizers["kernel_regularizer"].gradient(
            layer.kernel
        )
    if needs("bias", "bias_regularizer"):
        assert layer.bias is not None
        grads["bias"]["bias_regularizer"] = layer.regularizers["bias_regularizer"].gradient(
            layer.bias
        )
    wanted = {q: needs(q, "activity_regularizer") for q in PARAMETERS}
    if any(wanted.values()):
        d_kernel, d_bias, d_x = backward(
            layer, p, activity_gradient(layer, p, divisor),
            need_kernel=wanted["kernel"], need_bias=wanted["bias"], need_inputs=wanted["inputs"],
        )
        for param, grad in (("kernel", d_kernel), ("bias", d_bias), ("inputs", d_x)):
            if grad is not None:
                grads[param]["activity_regularizer"] = grad
    like = {"kernel": layer.kernel, "bias": layer.bias, "inputs": p.x}
    gradients = {
        param: finish(chosen(terms_of, like[param], selection, param), dtype,
                      prefix=f"gradients.{param}.")
        for param, terms_of in grads.items()
    }
    return DenseResult(outputs=outputs, losses=losses, gradients=gradients)


def chosen(
    terms: dict[str, FloatArray], like: Any, selection: Selection, param: str
) -> dict[str, FloatArray]:
    """The terms asked for of one parameter, and their ``total`` (over every term) if asked."""
    out = {term: g for term, g in terms.items() if selection.wants(param, term)}
    if selection.wants(param, TOTAL):
        out[TOTAL] = total(terms, like)
    return out
