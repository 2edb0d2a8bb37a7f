"""Smooth activations (exp, tanh and erf based), each value beside its derivative.

Stable forms throughout: ``exp`` only sees non-positive arguments and ``z²`` is never
formed where it could overflow.  Values agree with Keras to a few ulp (Eigen's
``exp``/``tanh`` differ from NumPy's); see the package docstring for the exceptions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from service.core.activations.base import (
    P,
    const,
    sech2,
    sigmoid_prime,
    stable_sigmoid,
    stable_softplus,
)
from service.core.numeric import FloatArray
from service.core.special import erfc

#: SELU constants (Klambauer et al.; TF's kernel).
SELU_SCALE = 1.0507009873554805
SELU_ALPHA = 1.6732632423543772
SELU_SCALE_ALPHA = 1.7580993408473768

_SQRT_HALF = 0.7071067811865476  # TF's constant in gelu
_INV_SQRT_2PI = 0.3989422804014327
_GELU_TANH_SCALE = 0.7978845608028654  # sqrt(2/pi), TF's constant
_GELU_TANH_COEFF = 0.044715


def _elu_base(z: FloatArray) -> FloatArray:
    """TF's ``elu``: ``exp(z) − 1`` (not expm1) for ``z < 0``, else ``z``."""
    return np.where(z < 0, np.exp(np.minimum(z, 0)) - 1, z)


def elu(z: FloatArray, p: P) -> FloatArray:
    """``α·(exp(z) − 1)`` for ``z ≤ 0`` and ``z`` above (Keras: ``where(z > 0, elu, α·elu)``)."""
    res = _elu_base(z)
    alpha = p["alpha"]
    return res if alpha == 1 else np.where(z > 0, res, const(z, alpha) * res)


def elu_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """EluGrad (``e + 1`` where ``e = elu(z) < 0``, else 1), times ``α`` where ``z ≤ 0``: ``α`` at 0."""
    e = _elu_base(z)
    d = np.where(e < 0, e + 1, const(z, 1))
    alpha = p["alpha"]
    return d if alpha == 1 else np.where(z > 0, d, const(z, alpha) * d)


def selu(z: FloatArray, p: P) -> FloatArray:
    return np.where(
        z < 0,
        const(z, SELU_SCALE_ALPHA) * (np.exp(np.minimum(z, 0)) - 1),
        const(z, SELU_SCALE) * z,
    )


def selu_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """SeluGrad: ``y + λα`` where ``y < 0``, else ``λ`` (so ``λ`` at 0)."""
    return np.where(y < 0, y + const(z, SELU_SCALE_ALPHA), const(z, SELU_SCALE))


def celu(z: FloatArray, p: P) -> FloatArray:
    alpha = const(z, p["alpha"])
    return np.maximum(z, 0) + alpha * np.expm1(np.minimum(z, 0) / alpha)


def celu_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """``1`` for ``z > 0``, ``exp(z/α)`` for ``z ≤ 0`` (so 1 at 0: TF's 2 there is not copied)."""
    alpha = const(z, p["alpha"])
    return np.where(z > 0, const(z, 1), np.exp(np.minimum(z, 0) / alpha))


def gelu(z: FloatArray, p: P) -> FloatArray:
    """Exact: ``½z·erfc(−z/√2)``.  Approximate: ``½z(1 + tanh(√(2/π)(z + 0.044715 z³)))``."""
    if p["approximate"]:
        zc = np.clip(z, -100, 100)  # tanh is ±1 well before; keeps z³ finite
        inner = const(z, _GELU_TANH_SCALE) * (zc + const(z, _GELU_TANH_COEFF) * zc**3)
        return const(z, 0.5) * z * (1 + np.tanh(inner))
    return const(z, 0.5) * z * erfc(-z * const(z, _SQRT_HALF))


def gelu_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    if p["approximate"]:
        zc = np.clip(z, -100, 100)
        k, c = const(z, _GELU_TANH_SCALE), const(z, _GELU_TANH_COEFF)
        th = np.tanh(k * (zc + c * zc**3))
        return const(z, 0.5) * (1 + th) + const(z, 0.5) * z * (1 - th * th) * k * (1 + 3 * c * zc * zc)
    zc = np.clip(z, -40, 40)  # exp(−z²/2) is 0 beyond, in both dtypes
    pdf = const(z, _INV_SQRT_2PI) * np.exp(const(z, -0.5) * zc * zc)
    return const(z, 0.5) * erfc(-z * const(z, _SQRT_HALF)) + z * pdf


def sigmoid_f(z: FloatArray, p: P) -> FloatArray:
    return stable_sigmoid(z)


def sigmoid_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """``y(1 − y)``, computed as ``e/(1 + e)²`` (TF's ``y(1 − y)`` loses it where y ≈ 1)."""
    return sigmoid_prime(z)


def tanh(z: FloatArray, p: P) -> FloatArray:
    return np.tanh(z)


def tanh_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """``1 − y²``, computed as ``sech²(z)`` (exact where ``y`` rounds to ±1)."""
    return sech2(z)


def softplus_f(z: FloatArray, p: P) -> FloatArray:
    return stable_softplus(z)


def softplus_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    return stable_sigmoid(z)


def softsign(z: FloatArray, p: P) -> FloatArray:
    return z / (np.abs(z) + 1)


def softsign_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    r = 1 / (1 + np.abs(z))
    return r * r


def silu(z: FloatArray, p: P) -> FloatArray:
    return z * stable_sigmoid(z)


def silu_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    s = stable_sigmoid(z)
    return s + z * sigmoid_prime(z)


def mish(z: FloatArray, p: P) -> FloatArray:
    return z * np.tanh(stable_softplus(z))


def mish_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    sp = stable_softplus(z)
    return np.tanh(sp) + z * sech2(sp) * stable_sigmoid(z)


def exponential(z: FloatArray, p: P) -> FloatArray:
    return np.exp(z)


def exponential_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    return np.exp(z)


def log_sigmoid(z: FloatArray, p: P) -> FloatArray:
    return np.minimum(z, 0) - np.log1p(np.exp(-np.abs(z)))


def log_sigmoid_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    return stable_sigmoid(-z)


def tanh_shrink(z: FloatArray, p: P) -> FloatArray:
    return z - np.tanh(z)


def tanh_shrink_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    th = np.tanh(z)
    return th * th


def _squareplus_root(z: FloatArray, b: Any) -> FloatArray:
    """``sqrt(z² + b)`` as Keras computes it, or ``hypot(z, √b)`` where ``z²`` overflows."""
    with np.errstate(over="ignore"):
        r = np.sqrt(z * z + b)
    bad = ~np.isfinite(r)
    if bad.any():
        r[bad] = np.hypot(z[bad], np.sqrt(b))
    return r


def squareplus(z: FloatArray, p: P) -> FloatArray:
    r = _squareplus_root(z, const(z, p["b"]))
    with np.errstate(over="ignore"):
        y = (z + r) / 2
    bad = ~np.isfinite(y)
    if bad.any():
        y[bad] = z[bad] / 2 + r[bad] / 2
    return y


def squareplus_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """``(1 + z/sqrt(z² + b))/2``; ½ at ``z = 0`` when ``b = 0`` (TF gives NaN there)."""
    r = _squareplus_root(z, const(z, p["b"]))
    safe = np.where(r > 0, r, const(z, 1))
    return (1 + np.where(r > 0, z / safe, const(z, 0))) / 2


def _axes(p: P, ndim: int) -> int | tuple[int, ...] | None:
    axis = p["axis"]
    return tuple(axis) if isinstance(axis, list) else axis


def softmax(z: FloatArray, p: P) -> FloatArray:
    ax = _axes(p, z.ndim)
    e = np.exp(z - np.max(z, axis=ax, keepdims=True))
    return e / np.sum(e, axis=ax, keepdims=True)


def softmax_vjp(z: FloatArray, y: FloatArray, g: FloatArray, p: P) -> FloatArray:
    """``y ⊙ (g − Σ_axis g·y)``."""
    ax = _axes(p, z.ndim)
    return y * (g - np.sum(g * y, axis=ax, keepdims=True))


def log_softmax(z: FloatArray, p: P) -> FloatArray:
    ax = _axes(p, z.ndim)
    shifted = z - np.max(z, axis=ax, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=ax, keepdims=True))


def log_softmax_vjp(z: FloatArray, y: FloatArray, g: FloatArray, p: P) -> FloatArray:
    """``g − softmax(z)·Σ_axis g`` (``softmax = exp(y)``)."""
    ax = _axes(p, z.ndim)
    return g - np.exp(y) * np.sum(g, axis=ax, keepdims=True)
