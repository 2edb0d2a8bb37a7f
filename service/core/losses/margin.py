"""Hinge losses (margins over the last axis), the overlap losses dice and tversky, and the
pairwise circle loss.

* ``hinge``  ``mean(max(1 − t·p, 0))``; ``squared_hinge`` its square.  As Keras, labels
  that are all 0 or 1 (over the whole tensor) become ``2t − 1``; others are used as given.
  TF's ``maximum`` passes the gradient at the tie ``1 − t·p = 0``.
* ``categorical_hinge``  ``max(max((1 − t)·p) − Σ t·p + 1, 0)``; the inner ``max``'s
  gradient is shared equally among tied maxima (TF's ``reduce_max``).
* ``dice``  ``1 − 2Σ t·p / (Σt + Σp + ε)`` over ``axis`` (None: every axis, one value).
* ``tversky``  ``1 − I / (I + α·FP + β·FN + ε)``, ``I = Σ t·p``, ``FP = Σ (1 − p)·t``,
  ``FN = Σ p·(1 − t)``, over ``axis``.
* ``circle``  over the batch's pairs, with ``d = max(1 − p·pᵀ, 0)`` and the labels ``t``:
  ``softplus(lse_pos(−γ·w_p·(m − d)) + lse_neg(γ·w_n·(1 − m − d)))``,
  ``w_p = max(m + d, 0)`` on positive pairs (same label; the diagonal removed if
  ``remove_diagonal``), ``w_n = max(1 + m − d, 0)`` on negative pairs.  A sample without
  a positive or a negative pair has loss 0 and is masked (the mean reductions skip it).

    >>> t = np.array([[0.0, 1.0]]); p = np.array([[0.3, 0.6]])
    >>> [round(float(v), 4) for v in hinge(t, p, {})]
    [0.85]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from service.core.errors import NonFiniteError
from service.core.losses.base import EPSILON, P, c, mean_last, spread
from service.core.numeric import FloatArray


def _signed(t: FloatArray) -> FloatArray:
    return 2 * t - 1 if np.all((t == 0) | (t == 1)) else t


def hinge(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    return mean_last(np.maximum(1 - _signed(t) * p, c(p, 0)))


def hinge_vjp(t: FloatArray, p: FloatArray, g: FloatArray, params: P) -> FloatArray:
    s = _signed(t)
    return spread(g, -s * (1 - s * p >= 0))


def squared_hinge(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    m = np.maximum(1 - _signed(t) * p, c(p, 0))
    return mean_last(m * m)


def squared_hinge_vjp(t: FloatArray, p: FloatArray, g: FloatArray, params: P) -> FloatArray:
    s = _signed(t)
    return spread(g, -2 * s * np.maximum(1 - s * p, c(p, 0)))


def _categorical_parts(t: FloatArray, p: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    pos = np.sum(t * p, axis=-1)
    other = (1 - t) * p
    neg = np.max(other, axis=-1)
    return pos, neg, other


def categorical_hinge(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    pos, neg, _ = _categorical_parts(t, p)
    return np.maximum(neg - pos + 1, c(p, 0))


def categorical_hinge_vjp(t: FloatArray, p: FloatArray, g: FloatArray, params: P) -> FloatArray:
    pos, neg, other = _categorical_parts(t, p)
    at_max = (other == neg[..., None]).astype(p.dtype)
    d_neg = (1 - t) * at_max / np.sum(at_max, axis=-1, keepdims=True)
    live = (neg - pos + 1 >= 0).astype(p.dtype)
    return (g * live)[..., None] * (d_neg - t)


def _axes(params: P, ndim: int) -> tuple[int, ...]:
    axis = params["axis"]
    if axis is None:
        return tuple(range(ndim))
    return tuple(a % ndim for a in (axis if isinstance(axis, tuple) else (axis,)))


def _expand(x: Any, axes: tuple[int, ...]) -> Any:
    return np.expand_dims(x, axes) if axes else x


def _denominator(d: FloatArray, name: str) -> FloatArray:
    if np.any(d == 0):
        raise NonFiniteError(
            f"{name}: a denominator is exactly 0 (the sums of y_true and y_pred cancel "
            "epsilon), so the loss is not finite (Keras returns inf or NaN)",
            field="y_pred",
        )
    return d


def dice(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    ax = _axes(params, p.ndim)
    inter = np.sum(t * p, axis=ax)
    den = _denominator(np.sum(t, axis=ax) + np.sum(p, axis=ax) + c(p, EPSILON), "dice")
    return 1 - 2 * inter / den


def dice_vjp(t: FloatArray, p: FloatArray, g: FloatArray, params: P) -> FloatArray:
    """``−2(t·D − I)/D²``, with ``I = Σ t·p`` and ``D = Σt + Σp + ε``."""
    ax = _axes(params, p.ndim)
    inter = _expand(np.sum(t * p, axis=ax), ax)
    den = _expand(_denominator(np.sum(t, axis=ax) + np.sum(p, axis=ax) + c(p, EPSILON), "dice"), ax)
    return _expand(g, ax) * -2 * (t * den - inter) / (den * den)


def _tversky_parts(t: FloatArray, p: FloatArray, params: P) -> tuple[FloatArray, FloatArray]:
    ax = _axes(params, p.ndim)
    alpha, beta = c(p, params["alpha"]), c(p, params["beta"])
    inter = np.sum(t * p, axis=ax)
    fp = np.sum((1 - p) * t, axis=ax)
    fn = np.sum(p * (1 - t), axis=ax)
    return inter, _denominator(inter + fp * alpha + fn * beta + c(p, EPSILON), "tversky")


def tversky(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    inter, den = _tversky_parts(t, p, params)
    return 1 - inter / den


def tversky_vjp(t: FloatArray, p: FloatArray, g: FloatArray, params: P) -> FloatArray:
    """``−(t·D − I·∂D)/D²`` with ``∂D = t − α·t + β·(1 − t)``."""
    ax = _axes(params, p.ndim)
    inter, den = (_expand(x, ax) for x in _tversky_parts(t, p, params))
    alpha, beta = c(p, params["alpha"]), c(p, params["beta"])
    d_den = t - alpha * t + beta * (1 - t)
    return _expand(g, ax) * -(t * den - inter * d_den) / (den * den)


# --------------------------------------------------------------------------- circle


def _circle_parts(t: FloatArray, p: FloatArray, params: P) -> dict[str, Any]:
    """Keras's ``circle``: every pair of the batch, ``d = max(1 − p·pᵀ, 0)``."""
    labels = np.trunc(t.reshape(-1))  # Keras casts the labels to int32
    pm = labels[:, None] == labels[None, :]
    nm = ~pm
    if params["remove_diagonal"]:
        pm = pm & ~np.eye(labels.size, dtype=bool)
    gamma, m = c(p, params["gamma"]), c(p, params["margin"])
    d_raw = 1 - p @ p.T
    d = np.maximum(d_raw, c(p, 0))
    pos_in = (m + d) * pm
    neg_in = (1 + m - d) * nm
    pos_w, neg_w = np.maximum(pos_in, c(p, 0)), np.maximum(neg_in, c(p, 0))
    pos_wd = -gamma * pos_w * (m - d)
    neg_wd = gamma * neg_w * ((1 - m) - d)
    lse = {}
    for key, mask, wd in (("p", pm, pos_wd), ("n", nm, neg_wd)):
        x = np.where(mask, wd, -np.inf)
        top = np.max(x, axis=1, keepdims=True)
        top = np.where(np.isfinite(top), top, c(p, 0))
        e = np.exp(x - top)
        s = np.sum(e, axis=1, keepdims=True)
        with np.errstate(divide="ignore"):
            lse[key] = (np.log(s) + top)[:, 0]
        lse[key + "_soft"] = np.where(s > 0, e / np.where(s > 0, s, c(p, 1)), c(p, 0))
    return {"pm": pm, "nm": nm, "gamma": gamma, "m": m, "d_raw": d_raw, "d": d, "pos_in": pos_in,
            "neg_in": neg_in, "pos_w": pos_w, "neg_w": neg_w, **lse}


def _softplus(x: FloatArray) -> FloatArray:
    with np.errstate(invalid="ignore"):
        return np.where(np.isneginf(x), x.dtype.type(0), np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))))


def circle(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    q = _circle_parts(t, p, params)
    return _softplus(q["p"] + q["n"])


def circle_mask(t: FloatArray, p: FloatArray, params: P) -> np.ndarray:
    """Keras masks the samples whose loss is 0 (no positive or no negative pair)."""
    return circle(t, p, params) > 0


def circle_vjp(t: FloatArray, p: FloatArray, g: FloatArray, params: P) -> FloatArray:
    """Back through softplus, the two masked logsumexps, the weights' ``max(·, 0)`` (TF's
    ``maximum`` passes at a tie), ``d = max(1 − p·pᵀ, 0)`` and the Gram matrix (both sides)."""
    q = _circle_parts(t, p, params)
    z = q["p"] + q["n"]
    s = np.where(np.isneginf(z), c(p, 0), 1 / (1 + np.exp(-np.where(np.isneginf(z), c(p, 0), z))))
    gs = (g * s)[:, None]
    gamma, m, d = q["gamma"], q["m"], q["d"]
    d_pos_w = (q["pm"] & (q["pos_in"] >= 0)).astype(p.dtype)  # ∂pos_w/∂d
    d_neg_w = -(q["nm"] & (q["neg_in"] >= 0)).astype(p.dtype)  # ∂neg_w/∂d
    d_pos_wd = -gamma * (d_pos_w * (m - d) - q["pos_w"])
    d_neg_wd = gamma * (d_neg_w * ((1 - m) - d) - q["neg_w"])
    g_d = gs * (q["p_soft"] * d_pos_wd + q["n_soft"] * d_neg_wd)
    g_gram = -g_d * (q["d_raw"] >= 0)
    return np.asarray(g_gram @ p + g_gram.T @ p)
