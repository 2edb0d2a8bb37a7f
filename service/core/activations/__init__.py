"""Activations: each value ``y = act(z)`` with its vector-Jacobian product beside it.

Names, parameters and defaults are Keras 3.15's ``keras.activations``; the values
follow the TensorFlow backend's formulas, and every derivative at a kink is the one
``tf.GradientTape`` returns there (checked against TF 2.21).  ``d`` below is
``dy/dz``; :meth:`Activation.vjp` returns ``g ⊙ d`` (a true Jacobian-vector product
for ``softmax`` and ``log_softmax``).

=================  ==========================================  ======================================
name (aliases)     y                                           d = dy/dz, TF's value at each kink
=================  ==========================================  ======================================
``linear``         ``z``                                       ``1``
``relu``           see :func:`piecewise.relu` (slope, max, threshold)   see :func:`piecewise.relu`; ``relu'(0) = 0``
``leaky_relu``     ``z if z > 0 else s·z``  (s = 0.2)          ``1 if z > 0 else s``; ``s`` at 0
``relu6``          ``min(max(z, 0), 6)``                       ``1 on (0, 6)``; 0 at 0 and at 6
``elu``            ``z if z > 0 else α·(exp(z) − 1)``          ``α·exp(z)`` for z < 0; ``α`` at 0
``selu``           ``λz if z > 0 else λα·(exp(z) − 1)``        ``λ`` for y ≥ 0 (so ``λ`` at 0)
``celu``           ``max(z,0) + α·expm1(min(z,0)/α)``          ``1`` at 0 (smooth there; TF says 2)
``gelu``           ``½z·erfc(−z/√2)``; tanh form if approx     smooth
``sigmoid``        ``1/(1 + exp(−z))``                         ``y(1 − y)``
``hard_sigmoid``   ``relu6(z + 3)/6``                          ``1/6 on (−3, 3)``; 0 at ±3
``hard_silu``      ``z·hard_sigmoid(z)``  (``hard_swish``)     ``hs(z) + z·hs'(z)``: 0 at −3, 1 at 3
``tanh``           ``tanh(z)``                                 ``1 − y²``
``hard_tanh``      ``clip(z, −1, 1)``                          ``1 on [−1, 1]`` (1 at ±1), else 0
``softplus``       ``max(z,0) + log1p(exp(−|z|))``             ``sigmoid(z)``
``softsign``       ``z/(|z| + 1)``                             ``1/(1 + |z|)²``
``silu``           ``z·sigmoid(z)``  (``swish``)               ``σ(1 + z(1 − σ))``
``mish``           ``z·tanh(softplus(z))``                     smooth
``exponential``    ``exp(z)``                                  ``y``
``log_sigmoid``    ``−softplus(−z)``                           ``sigmoid(−z)``
``tanh_shrink``    ``z − tanh(z)``                             ``tanh(z)²``
``soft_shrink``    ``z ∓ t for |z| > t, else 0``  (t = 0.5)    ``1 for |z| > t``; 0 at ±t
``hard_shrink``    ``z for |z| > t, else 0``  (t = 0.5)        ``1 for |z| > t``; 0 at ±t
``squareplus``     ``(z + sqrt(z² + b))/2``  (b = 4)           ``(1 + z/sqrt(z² + b))/2``
``sparse_plus``    ``0 / (z+1)²/4 / z`` on ``(−∞,−1] (−1,1) [1,∞)``  ``0 / (z+1)/2 / 1``: 0 at −1, 1 at 1
``sparse_sigmoid`` ``0 / (z+1)/2 / 1`` on ``(−∞,−1] (−1,1) [1,∞)``  ``1/2 on (−1, 1)``; 0 at ±1
``softmax``        ``exp(z − m)/Σ exp(z − m)`` over ``axis``   vjp ``y ⊙ (g − Σ g·y)``
``log_softmax``    ``z − m − log Σ exp(z − m)`` over ``axis``  vjp ``g − softmax(z)·Σ g``
``glu``            ``a ⊙ sigmoid(b)``, ``[a, b]`` halves of    see :mod:`.gated`; ``y`` is half as
                   ``z`` along ``axis``                        wide along ``axis``
``sparsemax``      ``max(z − τ, 0)`` (Keras's τ, :mod:`.gated`)  TF's, through the sort
``threshold``      ``z if z > threshold else default_value``   ``1 if z > threshold else 0``
=================  ==========================================  ======================================

Conventions
-----------
* The computation runs in ``z``'s dtype; float16 is computed in float32 and rounded
  back (see :mod:`service.core.numeric`).  Results have ``z``'s shape and dtype.
* Stable forms: nothing overflows or becomes NaN for any finite float32 input
  (``exp`` only ever sees non-positive arguments, ``z²`` is never formed where it
  could overflow).  Underflow to zero or a subnormal is the correctly rounded answer
  and is not reported.  ``exponential`` is the exception: ``exp(z)`` really overflows
  (``z > 88.7`` in float32) and returns ``inf``; the caller checks finiteness.
  A value whose true result exceeds its dtype (``selu(65504)`` in float16) is also
  ``inf``, as in Keras.
* Piecewise-linear activations repeat TF's operations in TF's order, so they match
  Keras bit for bit (``sparse_plus`` to 1 ulp: TF squares with ``pow``); ``exp``/``tanh``
  based ones agree to a few ulp, and where a derivative is tiny (``sigmoid'``, ``tanh'``
  near saturation) it is computed accurately rather than as TF's ``y(1 − y)`` / ``1 − y²``
  (the difference is below 1e-6 absolute).  TF's float64 ``erfc`` is only good to
  ~1e-8, so float64 ``gelu`` agrees with Keras to ~1e-6 relative; this one is exact.
* float64 parameters: as Keras, ``leaky_relu``'s slope (TF's float32 attribute: 0.2
  becomes 0.20000000298), and ``relu``'s ``threshold`` (in its comparison) and
  ``max_value`` (``ops.cast`` of a Python float goes through float32) are rounded to
  float32 for float64 data too; every other parameter is used exactly, as Keras does.
* ``gelu`` (exact) uses an erfc written here (NumPy has none): a Chebyshev series
  for ``erfc(x)·exp(x²)`` in ``t = 2/(2 + x)`` with ``exp(−x²)`` split so that no
  rounding of ``x²`` is lost; relative error < 1e-14 in float64.
* ``squareplus`` uses Keras's formula ``(z + sqrt(z² + b))/2`` (so it agrees with Keras
  to the ulp, including Keras's cancellation for very negative ``z``) except where
  ``z²`` would overflow, where ``sqrt(z² + b)`` is computed as ``hypot(z, sqrt(b))``.
  With ``b = 0`` the derivative at ``z = 0`` is defined as ½ (TF returns NaN).
* Not copied from TF: ``celu'(0)``.  celu is continuously differentiable at 0
  (both one-sided derivatives are 1), but TF's ``maximum``/``minimum`` gradients
  both pass at a tie and TF returns 2; the service returns the true value 1.
* TF conventions kept at real kinks: ``elu'(0) = α``;
  ``selu'`` tests ``y < 0`` (so a tiny negative ``z`` whose ``exp(z) − 1`` rounds to
  0 gets ``λ``, not ``λα``).
* Parameter domains are Keras's activation functions' (negative slopes, thresholds and
  ``max_value``, any non-zero ``celu`` α), narrowed only where Keras's result is NaN:
  ``celu``'s ``alpha`` ≠ 0 and ``squareplus``'s ``b`` ≥ 0.
* Keras's activation layer class names are accepted as names, meaning the layer with
  its defaults and argument names: ``"LeakyReLU"`` is ``leaky_relu`` with slope 0.3 (the
  layer's default; the function's is 0.2) and takes ``alpha`` (Keras 2's name) for
  ``negative_slope``; ``"ReLU"``, ``"ELU"``, ``"Softmax"`` are ``relu``, ``elu``,
  ``softmax``; the layers' parameter checks apply (``ReLU``/``LeakyReLU`` refuse negative
  values, as Keras's layers).  ``keras.activations.get`` itself refuses class names;
  ``PReLU`` (a trained slope per unit) is refused.

Specs accepted by :func:`get`::

    >>> get("swish").name
    'silu'
    >>> get({"name": "leaky_relu", "negative_slope": 0.1}).get_config()
    {'name': 'leaky_relu', 'negative_slope': 0.1}
    >>> get("relu").get_config()
    {'name': 'relu', 'negative_slope': 0.0, 'max_value': None, 'threshold': 0.0}
    >>> get({"name": "relu", "threshold": 5.0})(np.array([0.0, 2.0, 5.0, 7.0], np.float32))
    array([0., 0., 0., 7.], dtype=float32)
    >>> get("relu").vjp(np.array([-1.0, 0.0, 2.0]), None, np.ones(3))
    array([0., 0., 1.])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from service.core import specs
from service.core.activations import smooth
from service.core.activations.registry import KINDS as _KINDS
from service.core.activations.registry import KINDS_LIST as _KINDS_LIST
from service.core.errors import ShapeError, SpecError
from service.core.numeric import as_work, result_dtype, to_dtype
from service.core.specs import (
    Check,
    Entry,
    Named,
    Names,
    non_negative,
    optional_non_negative,
    split_spec,
)

#: SELU constants, re-exported (see :mod:`service.core.activations.smooth`).
SELU_SCALE = smooth.SELU_SCALE
SELU_ALPHA = smooth.SELU_ALPHA
SELU_SCALE_ALPHA = smooth.SELU_SCALE_ALPHA


_NAMES = Names(
    "activation",
    ((k.name, k.aliases) for k in _KINDS_LIST),
    example='{"name": "leaky_relu", "negative_slope": 0.1}',
)
#: Canonical names, in the order of SPEC §4.
NAMES: tuple[str, ...] = _NAMES.names

#: Keras's activation layer classes accepted as names: class -> (function, the layer's
#: defaults where they differ, Keras 2 argument names -> Keras 3, the layer's checks).
LAYER_CLASSES: dict[str, tuple[str, dict[str, Any], dict[str, str], dict[str, Check]]] = {
    "LeakyReLU": ("leaky_relu", {"negative_slope": 0.3}, {"alpha": "negative_slope"},
                  {"negative_slope": non_negative}),
    "ReLU": ("relu", {}, {}, {"negative_slope": non_negative, "threshold": non_negative,
                              "max_value": optional_non_negative}),
    "ELU": ("elu", {}, {}, {}),
    "Softmax": ("softmax", {}, {}, {}),
}
#: Every accepted name (canonical, alias, layer class name) -> canonical name.
ALIASES: dict[str, str] = {**_NAMES.aliases, **{c: f for c, (f, *_) in LAYER_CLASSES.items()}}


@dataclass(frozen=True)
class Activation(Named):
    """An activation with its parameters (defaults filled in); build it with :func:`get`.

    ``self(z)`` is ``y``; ``self.vjp(z, y, g)`` is ``dL/dz`` given ``g = dL/dy``.

    >>> a = get({"name": "leaky_relu", "negative_slope": 0.1})
    >>> a(np.array([-2.0, 0.0, 3.0]))
    array([-0.2,  0. ,  3. ])
    >>> a.vjp(np.array([-2.0, 0.0, 3.0]), None, np.array([1.0, 1.0, 1.0]))
    array([0.1, 0.1, 1. ])
    """

    _registry: ClassVar[Mapping[str, Entry]] = _KINDS
    _names: ClassVar[Names] = _NAMES

    def _check(self, z: np.ndarray) -> None:
        result_dtype(z)
        if "axis" in self.params:
            axis = self.params["axis"]
            axes = () if axis is None else axis if isinstance(axis, tuple) else (axis,)
            for a in axes:
                if not -z.ndim <= a < z.ndim:
                    raise ShapeError(
                        f"{self.name} axis {a} is out of range for a tensor of rank {z.ndim} "
                        f"(shape {list(z.shape)})",
                        field="axis",
                    )
        if self.name == "glu" and z.shape[self.params["axis"]] % 2:
            raise ShapeError(
                f"glu splits axis {self.params['axis']} in two halves, so its size must be even; "
                f"got shape {list(z.shape)}",
                field="axis",
            )

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of ``self(z)`` for ``z`` of ``shape`` (``glu`` halves its axis)."""
        kind = _KINDS[self.name]
        return tuple(shape) if kind.shape is None else kind.shape(tuple(shape), self.params)

    def checked_output_shape(self, shape: tuple[int, ...], dtype: Any = np.float64) -> tuple[int, ...]:
        """:meth:`output_shape`, after the checks a call on a ``z`` of ``shape`` makes
        (the same ShapeError; nothing is computed or allocated)."""
        self._check(np.broadcast_to(np.zeros((), dtype), shape))
        return self.output_shape(shape)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """``y = act(z)``: same dtype as ``z``, shape :meth:`output_shape` (``z``'s but for glu)."""
        z = np.asarray(z)
        self._check(z)
        if z.size == 0:
            return np.zeros(self.output_shape(z.shape), z.dtype)
        w = as_work(z)
        with np.errstate(under="ignore", over="ignore" if _KINDS[self.name].overflows else None):
            return to_dtype(_KINDS[self.name].forward(w, self.params), z.dtype)

    def vjp(self, z: np.ndarray, y: np.ndarray | None, g: np.ndarray) -> np.ndarray:
        """``dL/dz`` from ``g = dL/dy``; ``y = self(z)`` may be passed to save recomputing it.

        Same shape and dtype as ``z``; ``g`` must have the output's shape.
        """
        z, g = np.asarray(z), np.asarray(g)
        self._check(z)
        out = self.output_shape(z.shape)
        if g.shape != out:
            raise ShapeError(
                f"the upstream gradient has shape {list(g.shape)} but the activation output has "
                f"shape {list(out)}; they must be equal",
                field="g",
            )
        if z.size == 0:
            return np.zeros_like(z)
        w = as_work(z)
        kind = _KINDS[self.name]
        with np.errstate(under="ignore", over="ignore" if kind.overflows else None):
            if y is None or z.dtype == np.float16 or np.shape(y) != out:
                yw = kind.forward(w, self.params)
            else:
                yw = np.asarray(y, dtype=w.dtype)
            dz = kind.vjp(w, yw, np.asarray(g, dtype=w.dtype), self.params)
            return to_dtype(dz, z.dtype)



def _from_layer_class(spec: Any) -> Any:
    """A spec naming an activation layer class, as the function spec with the layer's defaults."""
    name = spec if isinstance(spec, str) else spec.get("name") if isinstance(spec, Mapping) else None
    if not isinstance(name, str) or name not in LAYER_CLASSES:
        if name == "PReLU":
            raise SpecError(
                "PReLU learns a slope per unit (a weight), so it is not a parameter-free "
                "activation; use leaky_relu with a fixed negative_slope",
                field="name" if isinstance(spec, Mapping) else "activation",
            )
        return spec
    function, defaults, renamed, checks = LAYER_CLASSES[name]
    given = {k: v for k, v in spec.items() if k != "name"} if isinstance(spec, Mapping) else {}
    for old, new in renamed.items():
        if old in given:
            if new in given:
                raise SpecError(f"{name}: give {new} or its Keras 2 name {old}, not both", field=old)
            given[new] = given.pop(old)
    for key, check in checks.items():
        if key in given:
            check(key, given[key])
    return {"name": function, **defaults, **given}


def get(spec: str | Mapping[str, Any] | Activation | None) -> Activation:
    """An activation from ``None``, a name or alias, ``{"name": ..., **params}`` or an Activation.

    Keras's activation layer class names (``"LeakyReLU"``, ``"ReLU"``, ``"ELU"``,
    ``"Softmax"``) mean that layer: its defaults, its Keras 2 argument names and checks.
    """
    if spec is None:
        return Activation("linear")
    if isinstance(spec, Activation):
        return spec
    return Activation(*split_spec(_from_layer_class(spec), _NAMES))


def describe() -> list[dict[str, Any]]:
    """What the service supports, for a discovery endpoint."""
    return specs.describe(_KINDS_LIST)
