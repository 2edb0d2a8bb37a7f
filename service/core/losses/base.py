"""What every loss formula shares: the signatures, Keras's epsilon, clipping and a stable sigmoid.

A loss kind maps ``(t, p)`` to per-sample values ``v`` (one per sample: the feature
axis reduced) and carries the vector-Jacobian product ``vjp(t, p, g) = Σ g ⊙ ∂v/∂p``
beside it, so any reduction (and any ``sample_weight``) is one ``g`` away.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from service.core.numeric import FloatArray
from service.core.specs import Params

#: Keras's ``backend.epsilon()``: probabilities are clipped to ``[EPSILON, 1 − EPSILON]``.
EPSILON = 1e-7

P = Mapping[str, Any]
#: ``(t, p, params) -> per-sample values``.
PerSample = Callable[[FloatArray, FloatArray, P], FloatArray]
#: ``(t, p, g, params) -> Σ g ⊙ ∂values/∂p`` (shape ``p.shape``).
Vjp = Callable[[FloatArray, FloatArray, FloatArray, P], FloatArray]
#: ``(t, p, params) -> bool mask over the per-sample values`` (or None).
Mask = Callable[[FloatArray, FloatArray, P], "np.ndarray | None"]

#: How a kind's ``y_true`` relates to ``y_pred``: equal shapes (``dense``) or class indices
#: with the class axis of ``y_pred`` removed (``sparse``), or one label per row of a
#: ``[batch, dim]`` ``y_pred`` whose rows are compared pairwise (``pairs``: circle).
Labels = Literal["dense", "sparse", "pairs"]
#: Which axis the per-sample reduction runs over: always the last (``last``), the ``axis``
#: parameter (``param``: moved to the end before the formula runs), or the axes the
#: formula reduces itself (``own``: dice and tversky, ``axis=None`` meaning all).
Axis = Literal["last", "param", "own"]


@dataclass(frozen=True)
class Kind:
    """One registry entry: value and vjp formulas, declared parameters and how labels align."""

    name: str
    per_sample: PerSample
    vjp: Vjp
    formula: str
    params: Params
    aliases: tuple[str, ...] = ()
    labels: Labels = "dense"
    axis: Axis = "last"
    mask: Mask | None = None


def c(x: FloatArray, v: float) -> Any:
    """A Python number as a scalar of ``x``'s dtype (as TF converts constants)."""
    return x.dtype.type(v)


def clip_probs(p: FloatArray, hi: float = 1.0 - EPSILON) -> tuple[FloatArray, FloatArray]:
    """``clip(p, ε, hi)`` and where the gradient passes (ties included, as TF's clip)."""
    lo_, hi_ = c(p, EPSILON), c(p, hi)
    return np.maximum(np.minimum(p, hi_), lo_), ((p >= lo_) & (p <= hi_)).astype(p.dtype)


def sigmoid(z: FloatArray) -> FloatArray:
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_prime(z: FloatArray) -> FloatArray:
    e = np.exp(-np.abs(z))
    return e / ((1 + e) * (1 + e))


def softplus(z: FloatArray) -> FloatArray:
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def softmax(z: FloatArray) -> FloatArray:
    """Softmax over the last axis."""
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def softmax_vjp(y: FloatArray, g: FloatArray) -> FloatArray:
    """``y ⊙ (g − Σ g·y)`` over the last axis (``y`` the softmax)."""
    return y * (g - np.sum(g * y, axis=-1, keepdims=True))


def mean_last(elem: FloatArray) -> FloatArray:
    return np.mean(elem, axis=-1)


def spread(g: FloatArray, d: FloatArray) -> FloatArray:
    """The vjp of ``mean(elem, axis=-1)`` given ``d = ∂elem/∂p``: ``g[..., None] ⊙ d / K``."""
    return g[..., None] * d / c(d, d.shape[-1])
