"""The activation registry: each Keras activation's formulas, declared parameters (Keras's
defaults and checks) and one-line formula, in the order of SPEC §4 (then Keras 3.15's
``glu``, ``sparsemax``, ``threshold``).  :mod:`service.core.activations` builds on it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.core.activations import gated, piecewise, smooth
from service.core.activations.base import Derivative, Forward, P, Vjp
from service.core.errors import SpecError, shown
from service.core.numeric import FloatArray
from service.core.specs import (
    REQUIRED,
    Check,
    Params,
    boolean,
    non_negative,
    nonzero,
    number,
    optional_number,
)

# --------------------------------------------------------------------------- validation


def _axis(name: str, value: Any) -> int | tuple[int, ...] | None:
    """An int, ``None`` (all axes) or a non-empty list of distinct ints (as ``ops.softmax``)."""
    if value is None:
        return None
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, list | tuple) and value:
        if all(isinstance(a, int | np.integer) and not isinstance(a, bool) for a in value):
            axes = tuple(int(a) for a in value)
            if len(set(axes)) == len(axes):
                return axes
    raise SpecError(
        f"{name} must be an integer, null or a list of distinct integers, got {shown(value)}",
        field=name,
    )


def _int_axis(name: str, value: Any) -> int:
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value)
    raise SpecError(f"{name} must be an integer, got {shown(value)}", field=name)


@dataclass(frozen=True)
class Kind:
    """One registry entry: the formulas and the declared parameters."""

    name: str
    forward: Forward
    vjp: Vjp
    formula: str
    params: Params
    aliases: tuple[str, ...] = ()
    overflows: bool = False
    #: The output shape from the input's (None: the same shape).
    shape: Callable[[tuple[int, ...], P], tuple[int, ...]] | None = None


def _elementwise(derivative: Derivative) -> Vjp:
    def vjp(z: FloatArray, y: FloatArray, g: FloatArray, p: P) -> FloatArray:
        return g * derivative(z, y, p)

    return vjp


def _kind(
    name: str,
    forward: Forward,
    derivative: Derivative | None,
    formula: str,
    *,
    vjp: Vjp | None = None,
    params: Mapping[str, tuple[Any, Check]] | None = None,
    aliases: tuple[str, ...] = (),
    overflows: bool = False,
    shape: Callable[[tuple[int, ...], P], tuple[int, ...]] | None = None,
) -> Kind:
    if vjp is None:
        assert derivative is not None
        vjp = _elementwise(derivative)
    return Kind(
        name=name,
        forward=forward,
        vjp=vjp,
        formula=formula,
        params=Params.declare(params),
        aliases=aliases,
        overflows=overflows,
        shape=shape,
    )


_THRESHOLD = {"threshold": (0.5, number)}
_AXIS = {"axis": (-1, _axis)}

KINDS_LIST = (
    _kind("linear", piecewise.linear, piecewise.linear_d, "y = z"),
    _kind(
        "relu",
        piecewise.relu,
        piecewise.relu_d,
        "y = clip(where(z > threshold, z, 0), 0, max_value) - negative_slope * relu(threshold - z)",
        params={
            "negative_slope": (0.0, number),
            "max_value": (None, optional_number),
            "threshold": (0.0, number),
        },
    ),
    _kind(
        "leaky_relu",
        piecewise.leaky_relu,
        piecewise.leaky_relu_d,
        "y = z if z > 0 else negative_slope * z; slope at 0 is negative_slope",
        params={"negative_slope": (0.2, number)},
    ),
    _kind("relu6", piecewise.relu6, piecewise.relu6_d, "y = min(max(z, 0), 6); derivative 0 at 0 and 6"),
    _kind(
        "elu",
        smooth.elu,
        smooth.elu_d,
        "y = z if z > 0 else alpha * (exp(z) - 1); derivative alpha at 0",
        params={"alpha": (1.0, number)},
    ),
    _kind(
        "selu",
        smooth.selu,
        smooth.selu_d,
        "y = 1.0507009873554805 * (z if z > 0 else 1.6732632423543772 * (exp(z) - 1))",
    ),
    _kind(
        "celu",
        smooth.celu,
        smooth.celu_d,
        "y = max(z, 0) + alpha * expm1(min(z, 0) / alpha); derivative 1 at 0",
        params={"alpha": (1.0, nonzero)},
        overflows=True,  # for alpha < 0: alpha * expm1(|z / alpha|) grows without bound
    ),
    _kind(
        "gelu",
        smooth.gelu,
        smooth.gelu_d,
        "y = z/2 * erfc(-z/sqrt(2)), or z/2 * (1 + tanh(sqrt(2/pi) * (z + 0.044715 z^3))) if approximate",
        params={"approximate": (False, boolean)},
    ),
    _kind("sigmoid", smooth.sigmoid_f, smooth.sigmoid_d, "y = 1 / (1 + exp(-z))"),
    _kind(
        "hard_sigmoid",
        piecewise.hard_sigmoid,
        piecewise.hard_sigmoid_d,
        "y = relu6(z + 3) / 6; derivative 0 at -3 and 3",
    ),
    _kind(
        "hard_silu",
        piecewise.hard_silu,
        piecewise.hard_silu_d,
        "y = z * relu6(z + 3) / 6",
        aliases=("hard_swish",),
    ),
    _kind("tanh", smooth.tanh, smooth.tanh_d, "y = tanh(z)"),
    _kind("hard_tanh", piecewise.hard_tanh, piecewise.hard_tanh_d, "y = clip(z, -1, 1); derivative 1 at -1 and 1"),
    _kind("softplus", smooth.softplus_f, smooth.softplus_d, "y = log(1 + exp(z))"),
    _kind("softsign", smooth.softsign, smooth.softsign_d, "y = z / (|z| + 1)"),
    _kind("silu", smooth.silu, smooth.silu_d, "y = z * sigmoid(z)", aliases=("swish",)),
    _kind("mish", smooth.mish, smooth.mish_d, "y = z * tanh(softplus(z))"),
    _kind(
        "exponential",
        smooth.exponential,
        smooth.exponential_d,
        "y = exp(z) (overflows to inf above ~88.7 in float32)",
        overflows=True,
    ),
    _kind("log_sigmoid", smooth.log_sigmoid, smooth.log_sigmoid_d, "y = -softplus(-z)"),
    _kind("tanh_shrink", smooth.tanh_shrink, smooth.tanh_shrink_d, "y = z - tanh(z)"),
    _kind(
        "soft_shrink",
        piecewise.soft_shrink,
        piecewise.soft_shrink_d,
        "y = z - threshold if z > threshold, z + threshold if z < -threshold, else 0",
        params=_THRESHOLD,
    ),
    _kind(
        "hard_shrink",
        piecewise.hard_shrink,
        piecewise.hard_shrink_d,
        "y = z if |z| > threshold else 0",
        params=_THRESHOLD,
    ),
    _kind(
        "squareplus",
        smooth.squareplus,
        smooth.squareplus_d,
        "y = (z + sqrt(z^2 + b)) / 2",
        params={"b": (4.0, non_negative)},
    ),
    _kind(
        "sparse_plus",
        piecewise.sparse_plus,
        piecewise.sparse_plus_d,
        "y = 0 if z <= -1, (z + 1)^2 / 4 if -1 < z < 1, z if z >= 1",
    ),
    _kind(
        "sparse_sigmoid",
        piecewise.sparse_sigmoid,
        piecewise.sparse_sigmoid_d,
        "y = 0 if z <= -1, (z + 1) / 2 if -1 < z < 1, 1 if z >= 1",
    ),
    _kind(
        "softmax",
        smooth.softmax,
        None,
        "y = exp(z - max) / sum(exp(z - max)) over axis (int, list of ints, or null = all)",
        vjp=smooth.softmax_vjp,
        params=_AXIS,
    ),
    _kind(
        "log_softmax",
        smooth.log_softmax,
        None,
        "y = z - max - log(sum(exp(z - max))) over axis (int, list of ints, or null = all)",
        vjp=smooth.log_softmax_vjp,
        params=_AXIS,
    ),
    _kind(
        "glu",
        gated.glu,
        None,
        "y = a * sigmoid(b), [a, b] = the two halves of z along axis (its size must be even)",
        vjp=gated.glu_vjp,
        params={"axis": (-1, _int_axis)},
        shape=gated.glu_shape,
    ),
    _kind(
        "sparsemax",
        gated.sparsemax,
        None,
        "y = max(z - tau, 0) over axis, Keras's tau = (sum of the cumulative sums of the sorted "
        "z over the support - 1) / support size",
        vjp=gated.sparsemax_vjp,
        params={"axis": (-1, _int_axis)},
    ),
    _kind(
        "threshold",
        piecewise.threshold,
        piecewise.threshold_d,
        "y = z if z > threshold else default_value (both required)",
        params={"threshold": (REQUIRED, number), "default_value": (REQUIRED, number)},
    ),
)

#: One registry: canonical Keras name -> formulas, defaults and checks.
KINDS: dict[str, Kind] = {k.name: k for k in KINDS_LIST}
