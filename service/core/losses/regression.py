"""Regression losses: per-sample means over the last axis (cosine similarity: a sum over
``axis``), each value beside its vjp.  ``e = p − t``, ``K`` the size of the last axis.

* ``mean_squared_error``  ``mean(e²)``; ``∂ = 2e/K``
* ``mean_absolute_error``  ``mean(|e|)``; ``∂ = sign(e)/K`` (0 at ``e = 0``, TF's ``abs``)
* ``mean_absolute_percentage_error``  ``100·mean(|e|/max(|t|, ε))``
* ``mean_squared_logarithmic_error``  ``mean((log(max(p, ε) + 1) − log(max(t, ε) + 1))²)``;
  TF's ``maximum`` passes the gradient to ``p`` at a tie
* ``cosine_similarity``  ``−Σ t̂·p̂``, ``x̂ = x·min(rsqrt(Σx²), 1/ε)``
* ``huber``  ``mean(½e² if |e| ≤ δ else δ|e| − ½δ²)``
* ``log_cosh``  ``mean(e + softplus(−2e) − log 2)``; ``∂ = tanh(e)/K``

    >>> t = np.array([[1.0, 2.0]]); p = np.array([[1.5, 2.0]])
    >>> float(mse(t, p, {})[0]), mse_vjp(t, p, np.ones(1), {}).tolist()
    (0.125, [[0.5, 0.0]])
"""

from __future__ import annotations

import numpy as np

from service.core.losses.base import EPSILON, P, c, mean_last, spread
from service.core.numeric import FloatArray


def mse(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    d = t - p
    return mean_last(d * d)


def mse_vjp(t: FloatArray, p: FloatArray, g: FloatArray, params: P) -> FloatArray:
    return spread(g, 2 * (p - t))


def mae(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    return mean_last(np.abs(t - p))


def mae_vjp(t: FloatArray, p: FloatArray, g: FloatArray, params: P) -> FloatArray:
    return spread(g, np.sign(p - t))


def _mape_denominator(t: FloatArray) -> FloatArray:
    return np.maximum(np.abs(t), c(t, EPSILON))


def mape(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    return c(p, 100) * mean_last(np.abs((t - p) / _mape_denominator(t)))


def mape_vjp(t: FloatArray, p: FloatArray, g: FloatArray, params: P) -> FloatArray:
    m = _mape_denominator(t)
    return spread(g, c(p, 100) * -np.sign((t - p) / m) / m)


def _log1p_floor(x: FloatArray) -> FloatArray:
    return np.log(np.maximum(x, c(x, EPSILON)) + 1)


def msle(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    d = _log1p_floor(p) - _log1p_floor(t)
    return mean_last(d * d)


def msle_vjp(t: FloatArray, p: FloatArray, g: FloatArray, params: P) -> FloatArray:
    eps = c(p, EPSILON)
    d = _log1p_floor(p) - _log1p_floor(t)
    passes = (p >= eps).astype(p.dtype)
    return spread(g, 2 * d * passes / (np.maximum(p, eps) + 1))


def _inv_norm(x: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``min(rsqrt(Σx²), 1/ε)`` over the last axis (keepdims) and where the rsqrt branch holds."""
    s = np.sum(x * x, axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        r = 1 / np.sqrt(s)
    cap = c(x, 1 / EPSILON)
    return np.minimum(r, cap), r <= cap


def cosine_similarity(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    tn = t * _inv_norm(t)[0]
    pn = p * _inv_norm(p)[0]
    return -np.sum(tn * pn, axis=-1)


def cosine_similarity_vjp(t: FloatArray, p: FloatArray, g: FloatArray, params: P) -> FloatArray:
    """``−g·inv·(t̂ − p̂·Σ t̂·p̂)`` where the norm is not capped, ``−g·t̂/ε`` where it is."""
    tn = t * _inv_norm(t)[0]
    inv, free = _inv_norm(p)
    pn = p * inv
    dot = np.sum(tn * pn, axis=-1, keepdims=True)
    d = np.where(free, tn - pn * dot, tn)
    return -g[..., None] * inv * d


def huber(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    delta, half = c(p, params["delta"]), c(p, 0.5)
    e = p - t
    a = np.abs(e)
    return mean_last(np.where(a <= delta, half * (e * e), delta * a - half * (delta * delta)))


def huber_vjp(t: FloatArray, p: FloatArray, g: FloatArray, params: P) -> FloatArray:
    """``e`` where ``|e| ≤ δ`` (the quadratic branch at the tie), else ``δ·sign(e)``."""
    delta = c(p, params["delta"])
    e = p - t
    return spread(g, np.where(np.abs(e) <= delta, e, delta * np.sign(e)))


#: Keras's ``ops.log(2.0)``: computed in float32, then converted (so float64 sees it rounded).
_LOG2 = float(np.log(np.float32(2.0)))


def log_cosh(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    """``mean(e + softplus(−2e) − log 2)``, with Keras's float32 ``log 2`` in float64 too."""
    e = p - t
    return mean_last(e + (np.maximum(-2 * e, 0) + np.log1p(np.exp(-np.abs(2 * e)))) - c(p, _LOG2))


def log_cosh_vjp(t: FloatArray, p: FloatArray, g: FloatArray, params: P) -> FloatArray:
    return spread(g, np.tanh(p - t))
