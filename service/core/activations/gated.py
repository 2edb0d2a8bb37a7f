"""Activations over an axis that are not a softmax: ``glu`` (which halves the axis) and
``sparsemax`` (Keras's formula), each value beside its vector-Jacobian product.

``glu(z, axis)``: split ``z`` in halves ``a, b`` along ``axis`` (its size must be even);
``y = a ⊙ sigmoid(b)``, so ``y`` has half the size along ``axis``.  vjp:
``(g ⊙ σ(b), g ⊙ a ⊙ σ'(b))`` joined along ``axis``.

``sparsemax(z, axis)``, as Keras 3.15 computes it (every backend): sort ``z`` descending
along ``axis`` (``s``), ``c = cumsum(s)``, ``support_j = s_j − (c_j − 1)/j > 0``,
``k = Σ support``, ``τ = (Σ_j support_j·c_j − 1)/k``, ``y = max(z − τ, 0)``.  Note
``Σ_j c_j`` over the support, not ``c_k``: for ``k > 1`` this is not the published
sparsemax (whose outputs sum to 1); the service follows Keras.  vjp (TF's, through the
sort): ``g ⊙ a − (Σ g ⊙ a)·∂τ/∂z`` with ``a = [z − τ ≥ 0]`` and ``∂τ/∂s_i = n_i/k``,
``n_i`` the number of support positions ``j ≥ i``.

    >>> sparsemax(np.array([[1.0, 0.9, 0.0]]), {"axis": -1})
    array([[0.05, 0.  , 0.  ]])
    >>> glu(np.array([[1.0, 2.0, 0.0, 0.0]]), {"axis": -1})
    array([[0.5, 1. ]])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from service.core.activations.base import P, sigmoid_prime, stable_sigmoid
from service.core.numeric import FloatArray


def _halves(z: FloatArray, axis: int) -> tuple[FloatArray, FloatArray]:
    a, b = np.split(z, 2, axis=axis)
    return a, b


def glu(z: FloatArray, p: P) -> FloatArray:
    a, b = _halves(z, p["axis"])
    return a * stable_sigmoid(b)


def glu_vjp(z: FloatArray, y: FloatArray, g: FloatArray, p: P) -> FloatArray:
    a, b = _halves(z, p["axis"])
    return np.concatenate([g * stable_sigmoid(b), g * a * sigmoid_prime(b)], axis=p["axis"])


def glu_shape(shape: tuple[int, ...], p: P) -> tuple[int, ...]:
    axis = p["axis"] % len(shape)
    return (*shape[:axis], shape[axis] // 2, *shape[axis + 1 :])


def _sparsemax_parts(z: FloatArray) -> tuple[Any, ...]:
    """On the last axis: the descending order, the support counts ``n``, ``k`` and ``τ``."""
    order = np.argsort(-z, axis=-1, kind="stable")  # TF's top_k: ties by lower index first
    s = np.take_along_axis(z, order, axis=-1)
    c = np.cumsum(s, axis=-1)
    r = np.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    support = (s - (c - 1) / r) > 0
    support[..., 0] = True  # s_1 − (s_1 − 1) = 1 > 0, lost to rounding only for |z| ≳ 1/ulp (k = 0: Keras's NaN)
    k = np.sum(support, axis=-1, keepdims=True).astype(z.dtype)
    tau = (np.sum(np.where(support, c, z.dtype.type(0)), axis=-1, keepdims=True) - 1) / k
    n = np.cumsum(support[..., ::-1], axis=-1)[..., ::-1].astype(z.dtype)
    return order, n, k, tau


def sparsemax(z: FloatArray, p: P) -> FloatArray:
    zl = np.moveaxis(z, p["axis"], -1)
    _, _, _, tau = _sparsemax_parts(zl)
    return np.moveaxis(np.maximum(zl - tau, zl.dtype.type(0)), -1, p["axis"])


def sparsemax_vjp(z: FloatArray, y: FloatArray, g: FloatArray, p: P) -> FloatArray:
    zl, gl = np.moveaxis(z, p["axis"], -1), np.moveaxis(g, p["axis"], -1)
    order, n, k, tau = _sparsemax_parts(zl)
    ga = gl * (zl - tau >= 0)
    d_tau = np.empty_like(zl)
    np.put_along_axis(d_tau, order, n / k, axis=-1)
    out = ga - np.sum(ga, axis=-1, keepdims=True) * d_tau
    return np.moveaxis(out, -1, p["axis"])
