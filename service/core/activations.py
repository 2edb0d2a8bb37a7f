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
``relu``           see :func:`_relu` (slope, max, threshold)   see :func:`_relu`; ``relu'(0) = 0``
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
* float64 ``leaky_relu``: TF's op stores the slope as a float32 attribute (Keras's
  0.2 becomes 0.20000000298); the service keeps the exact slope, as it keeps exact
  regularization factors for float64 data.
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
* Parameter checks are stricter than Keras's activation functions in a few places,
  where Keras would return NaN/inf or a meaningless curve: ``relu``'s
  ``negative_slope``, ``threshold`` and ``max_value`` must be ≥ 0 (as Keras's ``ReLU``
  layer requires), ``leaky_relu``'s ``negative_slope`` ≥ 0 (as the ``LeakyReLU``
  layer), ``celu``'s ``alpha`` > 0, the shrink thresholds ≥ 0 and
  ``squareplus``'s ``b`` ≥ 0.

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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.core import specs
from service.core.errors import ShapeError, SpecError
from service.core.numeric import FloatArray, as_work, result_dtype, to_dtype
from service.core.special import erfc
from service.core.specs import (
    Check,
    Names,
    Params,
    boolean,
    non_negative,
    number,
    optional_non_negative,
    positive,
    split_spec,
)

#: SELU constants (Klambauer et al.; TF's kernel).
SELU_SCALE = 1.0507009873554805
SELU_ALPHA = 1.6732632423543772
SELU_SCALE_ALPHA = 1.7580993408473768

_SQRT_HALF = 0.7071067811865476  # TF's constant in gelu
_INV_SQRT_2PI = 0.3989422804014327
_GELU_TANH_SCALE = 0.7978845608028654  # sqrt(2/pi), TF's constant
_GELU_TANH_COEFF = 0.044715


# --------------------------------------------------------------------------- helpers


def _t(z: FloatArray, v: float) -> Any:
    """A Python number as a scalar of ``z``'s dtype (as TF converts constants)."""
    return z.dtype.type(v)


def _sigmoid(z: FloatArray) -> FloatArray:
    """``1/(1 + exp(−z))`` via ``e = exp(−|z|)``: never overflows."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _sigmoid_prime(z: FloatArray) -> FloatArray:
    """``σ(z)(1 − σ(z)) = e/(1 + e)²`` with ``e = exp(−|z|)``: accurate where ``σ ≈ 1``."""
    e = np.exp(-np.abs(z))
    return e / ((1 + e) * (1 + e))


def _sech2(z: FloatArray) -> FloatArray:
    """``1 − tanh(z)² = 4e/(1 + e)²`` with ``e = exp(−2|z|)``: accurate where ``tanh ≈ ±1``."""
    e = np.exp(-2 * np.abs(z))
    return 4 * e / ((1 + e) * (1 + e))


def _softplus(z: FloatArray) -> FloatArray:
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def _mask(cond: np.ndarray, z: FloatArray) -> FloatArray:
    return cond.astype(z.dtype)


P = Mapping[str, Any]
Forward = Callable[[FloatArray, P], FloatArray]
Derivative = Callable[[FloatArray, FloatArray, P], FloatArray]
Vjp = Callable[[FloatArray, FloatArray, FloatArray, P], FloatArray]


# --------------------------------------------------------------------------- activations


def _linear(z: FloatArray, p: P) -> FloatArray:
    return z.copy()


def _linear_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    return np.ones_like(z)


def _relu(z: FloatArray, p: P) -> FloatArray:
    """Keras's ``relu(z, negative_slope=s, max_value=m, threshold=θ)``, op for op.

    * ``s ≠ 0``, no ``m``, ``θ = 0``: ``leaky_relu(z, s)``.
    * otherwise ``x = where(z > θ, z, 0)`` if ``θ ≠ 0``; ``relu6(z)`` if ``m == 6``;
      else ``max(z, 0)``; then ``clip(x, 0, m)`` (unless relu6 was used); then
      ``y = x − s·relu(θ − z)``.  So ``θ = 5`` on ``[0, 2, 5, 7]`` gives ``[0, 0, 0, 7]``.

    Derivative (TF): ``where`` passes where ``z > θ``; ``relu`` where ``z > 0``;
    ``relu6`` on ``(0, 6)``; ``clip`` passes on ``[0, m]`` (ties pass: 1 at ``z = m`` when
    ``m ≠ 6``); the negative part adds ``s`` where ``θ − z > 0`` (0 at ``z = θ``).
    """
    s, m, th = p["negative_slope"], p["max_value"], p["threshold"]
    if s != 0 and m is None and th == 0:
        return _leaky_relu(z, {"negative_slope": s})
    if th != 0:
        x = np.where(z > _t(z, th), z, _t(z, 0))
    elif m == 6:
        x = np.minimum(np.maximum(z, 0), _t(z, 6))
    else:
        x = np.maximum(z, _t(z, 0))
    if m is not None and not (th == 0 and m == 6):
        x = np.maximum(np.minimum(x, _t(z, m)), _t(z, 0))
    if s != 0:
        negative = np.maximum(-z + _t(z, th), _t(z, 0)) if th != 0 else np.maximum(-z, _t(z, 0))
        x = x - _t(z, s) * negative
    return x


def _relu_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    s, m, th = p["negative_slope"], p["max_value"], p["threshold"]
    if s != 0 and m is None and th == 0:
        return _leaky_relu_d(z, y, {"negative_slope": s})
    if th != 0:
        x = np.where(z > _t(z, th), z, _t(z, 0))
        d = _mask(z > _t(z, th), z)
    elif m == 6:
        x = np.minimum(np.maximum(z, 0), _t(z, 6))
        d = _mask((z > 0) & (z < 6), z)
    else:
        x = np.maximum(z, _t(z, 0))
        d = _mask(z > 0, z)
    if m is not None and not (th == 0 and m == 6):
        # tf.clip_by_value = maximum(minimum(x, m), 0); both pass the gradient at a tie.
        d = d * _mask((x <= _t(z, m)) & (np.minimum(x, _t(z, m)) >= 0), z)
    if s != 0:
        d = d + _t(z, s) * _mask(-z + _t(z, th) > 0, z)
    return d


def _leaky_relu(z: FloatArray, p: P) -> FloatArray:
    """``z if z > 0 else s·z`` (TF's select, so ``s > 1`` is not a max)."""
    return np.where(z > 0, z, z * _t(z, p["negative_slope"]))


def _leaky_relu_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """``1 if z > 0 else s``: TF tests ``z > 0``, so the slope at 0 is ``s``."""
    return np.where(z > 0, _t(z, 1), _t(z, p["negative_slope"]))


def _relu6(z: FloatArray, p: P) -> FloatArray:
    return np.minimum(np.maximum(z, _t(z, 0)), _t(z, 6))


def _relu6_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """1 on the open interval (0, 6); 0 at 0 and at 6 (TF's Relu6Grad)."""
    return _mask((z > 0) & (z < 6), z)


def _elu_base(z: FloatArray) -> FloatArray:
    """TF's ``elu``: ``exp(z) − 1`` (not expm1) for ``z < 0``, else ``z``."""
    return np.where(z < 0, np.exp(np.minimum(z, 0)) - 1, z)


def _elu(z: FloatArray, p: P) -> FloatArray:
    """``α·(exp(z) − 1)`` for ``z ≤ 0`` and ``z`` above (Keras: ``where(z > 0, elu, α·elu)``)."""
    res = _elu_base(z)
    alpha = p["alpha"]
    return res if alpha == 1 else np.where(z > 0, res, _t(z, alpha) * res)


def _elu_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """EluGrad (``e + 1`` where ``e = elu(z) < 0``, else 1), times ``α`` where ``z ≤ 0``: ``α`` at 0."""
    e = _elu_base(z)
    d = np.where(e < 0, e + 1, _t(z, 1))
    alpha = p["alpha"]
    return d if alpha == 1 else np.where(z > 0, d, _t(z, alpha) * d)


def _selu(z: FloatArray, p: P) -> FloatArray:
    return np.where(
        z < 0,
        _t(z, SELU_SCALE_ALPHA) * (np.exp(np.minimum(z, 0)) - 1),
        _t(z, SELU_SCALE) * z,
    )


def _selu_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """SeluGrad: ``y + λα`` where ``y < 0``, else ``λ`` (so ``λ`` at 0)."""
    return np.where(y < 0, y + _t(z, SELU_SCALE_ALPHA), _t(z, SELU_SCALE))


def _celu(z: FloatArray, p: P) -> FloatArray:
    alpha = _t(z, p["alpha"])
    return np.maximum(z, 0) + alpha * np.expm1(np.minimum(z, 0) / alpha)


def _celu_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """``1`` for ``z > 0``, ``exp(z/α)`` for ``z ≤ 0`` (so 1 at 0: TF's 2 there is not copied)."""
    alpha = _t(z, p["alpha"])
    return np.where(z > 0, _t(z, 1), np.exp(np.minimum(z, 0) / alpha))


def _gelu(z: FloatArray, p: P) -> FloatArray:
    """Exact: ``½z·erfc(−z/√2)``.  Approximate: ``½z(1 + tanh(√(2/π)(z + 0.044715 z³)))``."""
    if p["approximate"]:
        zc = np.clip(z, -100, 100)  # tanh is ±1 well before; keeps z³ finite
        inner = _t(z, _GELU_TANH_SCALE) * (zc + _t(z, _GELU_TANH_COEFF) * zc**3)
        return _t(z, 0.5) * z * (1 + np.tanh(inner))
    return _t(z, 0.5) * z * erfc(-z * _t(z, _SQRT_HALF))


def _gelu_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    if p["approximate"]:
        zc = np.clip(z, -100, 100)
        k, c = _t(z, _GELU_TANH_SCALE), _t(z, _GELU_TANH_COEFF)
        th = np.tanh(k * (zc + c * zc**3))
        return _t(z, 0.5) * (1 + th) + _t(z, 0.5) * z * (1 - th * th) * k * (1 + 3 * c * zc * zc)
    zc = np.clip(z, -40, 40)  # exp(−z²/2) is 0 beyond, in both dtypes
    pdf = _t(z, _INV_SQRT_2PI) * np.exp(_t(z, -0.5) * zc * zc)
    return _t(z, 0.5) * erfc(-z * _t(z, _SQRT_HALF)) + z * pdf


def _sigmoid_f(z: FloatArray, p: P) -> FloatArray:
    return _sigmoid(z)


def _sigmoid_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """``y(1 − y)``, computed as ``e/(1 + e)²`` (TF's ``y(1 − y)`` loses it where y ≈ 1)."""
    return _sigmoid_prime(z)


def _hard_sigmoid(z: FloatArray, p: P) -> FloatArray:
    """``relu6(z + 3)/6`` (Keras 3; Keras 2 used ``0.2z + 0.5``)."""
    return _relu6(z + _t(z, 3), p) / _t(z, 6)


def _hard_sigmoid_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """``1/6`` where ``0 < z + 3 < 6``; 0 at ``z = ±3``."""
    s = z + _t(z, 3)
    return np.where((s > 0) & (s < 6), _t(z, 1) / _t(z, 6), _t(z, 0))


def _hard_silu(z: FloatArray, p: P) -> FloatArray:
    return z * _hard_sigmoid(z, p)


def _hard_silu_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """``hard_sigmoid(z) + z·hard_sigmoid'(z)``: 0 at −3, 1 at 3, ½ at 0."""
    return _hard_sigmoid(z, p) + z * _hard_sigmoid_d(z, y, p)


def _tanh(z: FloatArray, p: P) -> FloatArray:
    return np.tanh(z)


def _tanh_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """``1 − y²``, computed as ``sech²(z)`` (exact where ``y`` rounds to ±1)."""
    return _sech2(z)


def _hard_tanh(z: FloatArray, p: P) -> FloatArray:
    return np.maximum(np.minimum(z, _t(z, 1)), _t(z, -1))


def _hard_tanh_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """1 on the closed interval [−1, 1] (clip_by_value passes ties), 0 outside."""
    return _mask((z <= 1) & (z >= -1), z)


def _softplus_f(z: FloatArray, p: P) -> FloatArray:
    return _softplus(z)


def _softplus_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    return _sigmoid(z)


def _softsign(z: FloatArray, p: P) -> FloatArray:
    return z / (np.abs(z) + 1)


def _softsign_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    r = 1 / (1 + np.abs(z))
    return r * r


def _silu(z: FloatArray, p: P) -> FloatArray:
    return z * _sigmoid(z)


def _silu_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    s = _sigmoid(z)
    return s + z * _sigmoid_prime(z)


def _mish(z: FloatArray, p: P) -> FloatArray:
    return z * np.tanh(_softplus(z))


def _mish_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    sp = _softplus(z)
    return np.tanh(sp) + z * _sech2(sp) * _sigmoid(z)


def _exponential(z: FloatArray, p: P) -> FloatArray:
    return np.exp(z)


def _exponential_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    return np.exp(z)


def _log_sigmoid(z: FloatArray, p: P) -> FloatArray:
    return np.minimum(z, 0) - np.log1p(np.exp(-np.abs(z)))


def _log_sigmoid_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    return _sigmoid(-z)


def _tanh_shrink(z: FloatArray, p: P) -> FloatArray:
    return z - np.tanh(z)


def _tanh_shrink_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    th = np.tanh(z)
    return th * th


def _soft_shrink(z: FloatArray, p: P) -> FloatArray:
    t = _t(z, p["threshold"])
    return np.where(z > t, z - t, np.where(z < -t, z + t, _t(z, 0)))


def _soft_shrink_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """1 where ``|z| > t`` (strictly); 0 at ``±t``."""
    t = _t(z, p["threshold"])
    return _mask((z > t) | (z < -t), z)


def _hard_shrink(z: FloatArray, p: P) -> FloatArray:
    return np.where(np.abs(z) > _t(z, p["threshold"]), z, _t(z, 0))


def _hard_shrink_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """1 where ``|z| > t`` (strictly); 0 at ``±t``."""
    return _mask(np.abs(z) > _t(z, p["threshold"]), z)


def _squareplus_root(z: FloatArray, b: Any) -> FloatArray:
    """``sqrt(z² + b)`` as Keras computes it, or ``hypot(z, √b)`` where ``z²`` overflows."""
    with np.errstate(over="ignore"):
        r = np.sqrt(z * z + b)
    bad = ~np.isfinite(r)
    if bad.any():
        r[bad] = np.hypot(z[bad], np.sqrt(b))
    return r


def _squareplus(z: FloatArray, p: P) -> FloatArray:
    r = _squareplus_root(z, _t(z, p["b"]))
    with np.errstate(over="ignore"):
        y = (z + r) / 2
    bad = ~np.isfinite(y)
    if bad.any():
        y[bad] = z[bad] / 2 + r[bad] / 2
    return y


def _squareplus_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """``(1 + z/sqrt(z² + b))/2``; ½ at ``z = 0`` when ``b = 0`` (TF gives NaN there)."""
    r = _squareplus_root(z, _t(z, p["b"]))
    safe = np.where(r > 0, r, _t(z, 1))
    return (1 + np.where(r > 0, z / safe, _t(z, 0))) / 2


def _sparse_plus(z: FloatArray, p: P) -> FloatArray:
    s = z + 1
    return np.where(z <= -1, _t(z, 0), np.where(z < 1, _t(z, 0.25) * (s * s), z))


def _sparse_plus_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """0 for ``z ≤ −1``, ``(z + 1)/2`` on ``(−1, 1)``, 1 for ``z ≥ 1``."""
    return np.where(z <= -1, _t(z, 0), np.where(z < 1, _t(z, 0.5) * (z + 1), _t(z, 1)))


def _sparse_sigmoid(z: FloatArray, p: P) -> FloatArray:
    return np.where(z <= -1, _t(z, 0), np.where(z >= 1, _t(z, 1), _t(z, 0.5) * (z + 1)))


def _sparse_sigmoid_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """½ on the open interval (−1, 1); 0 at ±1 and outside."""
    return np.where((z > -1) & (z < 1), _t(z, 0.5), _t(z, 0))


def _axes(p: P, ndim: int) -> int | tuple[int, ...] | None:
    axis = p["axis"]
    return tuple(axis) if isinstance(axis, list) else axis


def _softmax(z: FloatArray, p: P) -> FloatArray:
    ax = _axes(p, z.ndim)
    e = np.exp(z - np.max(z, axis=ax, keepdims=True))
    return e / np.sum(e, axis=ax, keepdims=True)


def _softmax_vjp(z: FloatArray, y: FloatArray, g: FloatArray, p: P) -> FloatArray:
    """``y ⊙ (g − Σ_axis g·y)``."""
    ax = _axes(p, z.ndim)
    return y * (g - np.sum(g * y, axis=ax, keepdims=True))


def _log_softmax(z: FloatArray, p: P) -> FloatArray:
    ax = _axes(p, z.ndim)
    shifted = z - np.max(z, axis=ax, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=ax, keepdims=True))


def _log_softmax_vjp(z: FloatArray, y: FloatArray, g: FloatArray, p: P) -> FloatArray:
    """``g − softmax(z)·Σ_axis g`` (``softmax = exp(y)``)."""
    ax = _axes(p, z.ndim)
    return g - np.exp(y) * np.sum(g, axis=ax, keepdims=True)


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
        f"{name} must be an integer, null or a list of distinct integers, got {value!r}",
        field=name,
    )


@dataclass(frozen=True)
class _Kind:
    """One registry entry: the formulas and the declared parameters."""

    name: str
    forward: Forward
    vjp: Vjp
    formula: str
    params: Params
    aliases: tuple[str, ...] = ()
    overflows: bool = False


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
) -> _Kind:
    if vjp is None:
        assert derivative is not None
        vjp = _elementwise(derivative)
    return _Kind(
        name=name,
        forward=forward,
        vjp=vjp,
        formula=formula,
        params=Params.declare(params),
        aliases=aliases,
        overflows=overflows,
    )


_THRESHOLD = {"threshold": (0.5, non_negative)}
_AXIS = {"axis": (-1, _axis)}

_KINDS_LIST = (
    _kind("linear", _linear, _linear_d, "y = z"),
    _kind(
        "relu",
        _relu,
        _relu_d,
        "y = clip(where(z > threshold, z, 0), 0, max_value) - negative_slope * relu(threshold - z)",
        params={
            "negative_slope": (0.0, non_negative),
            "max_value": (None, optional_non_negative),
            "threshold": (0.0, non_negative),
        },
    ),
    _kind(
        "leaky_relu",
        _leaky_relu,
        _leaky_relu_d,
        "y = z if z > 0 else negative_slope * z; slope at 0 is negative_slope",
        params={"negative_slope": (0.2, non_negative)},
    ),
    _kind("relu6", _relu6, _relu6_d, "y = min(max(z, 0), 6); derivative 0 at 0 and 6"),
    _kind(
        "elu",
        _elu,
        _elu_d,
        "y = z if z > 0 else alpha * (exp(z) - 1); derivative alpha at 0",
        params={"alpha": (1.0, number)},
    ),
    _kind(
        "selu",
        _selu,
        _selu_d,
        "y = 1.0507009873554805 * (z if z > 0 else 1.6732632423543772 * (exp(z) - 1))",
    ),
    _kind(
        "celu",
        _celu,
        _celu_d,
        "y = max(z, 0) + alpha * expm1(min(z, 0) / alpha); derivative 1 at 0",
        params={"alpha": (1.0, positive)},
    ),
    _kind(
        "gelu",
        _gelu,
        _gelu_d,
        "y = z/2 * erfc(-z/sqrt(2)), or z/2 * (1 + tanh(sqrt(2/pi) * (z + 0.044715 z^3))) if approximate",
        params={"approximate": (False, boolean)},
    ),
    _kind("sigmoid", _sigmoid_f, _sigmoid_d, "y = 1 / (1 + exp(-z))"),
    _kind(
        "hard_sigmoid",
        _hard_sigmoid,
        _hard_sigmoid_d,
        "y = relu6(z + 3) / 6; derivative 0 at -3 and 3",
    ),
    _kind(
        "hard_silu",
        _hard_silu,
        _hard_silu_d,
        "y = z * relu6(z + 3) / 6",
        aliases=("hard_swish",),
    ),
    _kind("tanh", _tanh, _tanh_d, "y = tanh(z)"),
    _kind("hard_tanh", _hard_tanh, _hard_tanh_d, "y = clip(z, -1, 1); derivative 1 at -1 and 1"),
    _kind("softplus", _softplus_f, _softplus_d, "y = log(1 + exp(z))"),
    _kind("softsign", _softsign, _softsign_d, "y = z / (|z| + 1)"),
    _kind("silu", _silu, _silu_d, "y = z * sigmoid(z)", aliases=("swish",)),
    _kind("mish", _mish, _mish_d, "y = z * tanh(softplus(z))"),
    _kind(
        "exponential",
        _exponential,
        _exponential_d,
        "y = exp(z) (overflows to inf above ~88.7 in float32)",
        overflows=True,
    ),
    _kind("log_sigmoid", _log_sigmoid, _log_sigmoid_d, "y = -softplus(-z)"),
    _kind("tanh_shrink", _tanh_shrink, _tanh_shrink_d, "y = z - tanh(z)"),
    _kind(
        "soft_shrink",
        _soft_shrink,
        _soft_shrink_d,
        "y = z - threshold if z > threshold, z + threshold if z < -threshold, else 0",
        params=_THRESHOLD,
    ),
    _kind(
        "hard_shrink",
        _hard_shrink,
        _hard_shrink_d,
        "y = z if |z| > threshold else 0",
        params=_THRESHOLD,
    ),
    _kind(
        "squareplus",
        _squareplus,
        _squareplus_d,
        "y = (z + sqrt(z^2 + b)) / 2",
        params={"b": (4.0, non_negative)},
    ),
    _kind(
        "sparse_plus",
        _sparse_plus,
        _sparse_plus_d,
        "y = 0 if z <= -1, (z + 1)^2 / 4 if -1 < z < 1, z if z >= 1",
    ),
    _kind(
        "sparse_sigmoid",
        _sparse_sigmoid,
        _sparse_sigmoid_d,
        "y = 0 if z <= -1, (z + 1) / 2 if -1 < z < 1, 1 if z >= 1",
    ),
    _kind(
        "softmax",
        _softmax,
        None,
        "y = exp(z - max) / sum(exp(z - max)) over axis (int, list of ints, or null = all)",
        vjp=_softmax_vjp,
        params=_AXIS,
    ),
    _kind(
        "log_softmax",
        _log_softmax,
        None,
        "y = z - max - log(sum(exp(z - max))) over axis (int, list of ints, or null = all)",
        vjp=_log_softmax_vjp,
        params=_AXIS,
    ),
)

#: One registry: canonical Keras name -> formulas, defaults and checks.
_KINDS: dict[str, _Kind] = {k.name: k for k in _KINDS_LIST}
_NAMES = Names(
    "activation",
    ((k.name, k.aliases) for k in _KINDS_LIST),
    example='{"name": "leaky_relu", "negative_slope": 0.1}',
)
#: Canonical names, in the order of SPEC §4.
NAMES: tuple[str, ...] = _NAMES.names
#: Every accepted name (canonical and alias) -> canonical name.
ALIASES: dict[str, str] = _NAMES.aliases


@dataclass(frozen=True)
class Activation:
    """An activation with its parameters (defaults filled in); build it with :func:`get`.

    ``self(z)`` is ``y``; ``self.vjp(z, y, g)`` is ``dL/dz`` given ``g = dL/dy``.

    >>> a = get({"name": "leaky_relu", "negative_slope": 0.1})
    >>> a(np.array([-2.0, 0.0, 3.0]))
    array([-0.2,  0. ,  3. ])
    >>> a.vjp(np.array([-2.0, 0.0, 3.0]), None, np.array([1.0, 1.0, 1.0]))
    array([0.1, 0.1, 1. ])
    """

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        name = _NAMES.canonical(self.name, "activation")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "params", _KINDS[name].params.validate(f"activation {name}", self.params))

    @property
    def formula(self) -> str:
        return _KINDS[self.name].formula

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

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """``y = act(z)``: same shape and dtype as ``z``."""
        z = np.asarray(z)
        self._check(z)
        if z.size == 0:
            return z.copy()
        w = as_work(z)
        with np.errstate(under="ignore", over="ignore" if _KINDS[self.name].overflows else None):
            return to_dtype(_KINDS[self.name].forward(w, self.params), z.dtype)

    def vjp(self, z: np.ndarray, y: np.ndarray | None, g: np.ndarray) -> np.ndarray:
        """``dL/dz`` from ``g = dL/dy``; ``y = self(z)`` may be passed to save recomputing it.

        Same shape and dtype as ``z``; ``g`` must have ``z``'s shape.
        """
        z, g = np.asarray(z), np.asarray(g)
        self._check(z)
        if g.shape != z.shape:
            raise ShapeError(
                f"the upstream gradient has shape {list(g.shape)} but the activation input has "
                f"shape {list(z.shape)}; they must be equal",
                field="g",
            )
        if z.size == 0:
            return np.zeros_like(z)
        w = as_work(z)
        kind = _KINDS[self.name]
        with np.errstate(under="ignore", over="ignore" if kind.overflows else None):
            if y is None or z.dtype == np.float16 or np.shape(y) != z.shape:
                yw = kind.forward(w, self.params)
            else:
                yw = np.asarray(y, dtype=w.dtype)
            dz = kind.vjp(w, yw, np.asarray(g, dtype=w.dtype), self.params)
            return to_dtype(dz, z.dtype)

    def get_config(self) -> dict[str, Any]:
        """``{"name": name, **params}``; :func:`get` of it rebuilds an equal activation."""
        return {"name": self.name, **self.params}


def get(spec: str | Mapping[str, Any] | Activation | None) -> Activation:
    """An activation from ``None``, a name or alias, ``{"name": ..., **params}`` or an Activation."""
    if spec is None:
        return Activation("linear")
    if isinstance(spec, Activation):
        return spec
    return Activation(*split_spec(spec, _NAMES))


def describe() -> list[dict[str, Any]]:
    """What the service supports, for a discovery endpoint."""
    return specs.describe(_KINDS_LIST)
