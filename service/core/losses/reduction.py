"""Shapes and reductions shared by every loss: Keras's alignment of ``y_true`` with
``y_pred`` (``squeeze_or_expand_to_same_rank``), the feature axis, and
``reduce_weighted_values`` (``sample_weight``, masks, the five reductions) with its
derivative ``∂value/∂per-sample values``.

    >>> value, g = reduce(np.array([1.0, 3.0]), np.array([1.0, 0.5]), "sum_over_batch_size")
    >>> float(value), g.tolist()
    (1.25, [0.5, 0.25])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from service.core.errors import ShapeError
from service.core.losses.base import Kind
from service.core.numeric import FloatArray

# --------------------------------------------------------------------------- shapes


def squeeze_or_expand(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keras's ``squeeze_or_expand_to_same_rank``: ranks differing by one with a trailing 1."""
    if a.ndim == b.ndim + 1 and a.shape[-1] == 1:
        return (a, b[..., None]) if b.ndim == 1 else (a[..., 0], b)
    if b.ndim == a.ndim + 1 and b.shape[-1] == 1:
        return (a[..., None], b) if a.ndim == 1 else (a, b[..., 0])
    return a, b


def aligned(kind: Kind, y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if y_pred.ndim == 0:
        raise ShapeError(
            "y_true and y_pred must have rank >= 1 (samples along the leading axes, "
            "features along the last), got scalars",
            field="y_pred",
        )
    t, p = squeeze_or_expand(y_true, y_pred)
    if kind.labels == "pairs":
        if p.ndim != 2 or t.reshape(-1).shape != p.shape[:1]:
            raise ShapeError(
                f"{kind.name} takes embeddings y_pred of shape [batch, dim] and one label per "
                f"sample; got y_pred {list(y_pred.shape)} and y_true {list(y_true.shape)}",
                field="y_pred" if p.ndim != 2 else "y_true",
            )
        return t.reshape(-1), p
    if kind.labels == "sparse":
        if t.ndim == p.ndim and t.shape[-1:] == (1,) and kind.name == "categorical_generalized_cross_entropy":
            raise ShapeError(
                f"{kind.name} takes y_true of shape {list(p.shape[:-1])} (one index per sample); "
                f"Keras broadcasts labels of shape {list(y_true.shape)} against y_pred into "
                "another function, so they are refused",
                field="y_true",
            )
        if t.ndim == p.ndim and t.shape[-1:] == (1,):
            t = t[..., 0]
        if t.shape != p.shape[:-1]:
            raise ShapeError(
                f"{kind.name} takes class indices: y_true must have shape {list(p.shape[:-1])} "
                f"(y_pred's without its last axis) or {[*p.shape[:-1], 1]}, got {list(y_true.shape)}",
                field="y_true",
            )
        return t, p
    if t.shape != p.shape:
        raise ShapeError(
            f"y_true has shape {list(y_true.shape)} but y_pred has shape {list(y_pred.shape)}; "
            "they must be equal (or differ only by a trailing axis of size 1)",
            field="y_true",
        )
    return t, p


def feature_axis(kind: Kind, params: Mapping[str, Any], ndim: int) -> int | None:
    """The axis moved to the end before the formula runs (None: leave the layout)."""
    if kind.axis == "own":
        axis = params["axis"]
        for a in () if axis is None else axis if isinstance(axis, tuple) else (axis,):
            if not -ndim <= a < ndim:
                raise ShapeError(f"{kind.name} axis {a} is out of range for y_pred of rank {ndim}", field="axis")
        return None
    if kind.axis == "last":
        return None
    a = params["axis"]
    if not -ndim <= a < ndim:
        raise ShapeError(f"{kind.name} axis {a} is out of range for y_pred of rank {ndim}", field="axis")
    if kind.labels == "sparse" and a % ndim != ndim - 1:
        raise ShapeError(f"{kind.name} supports only the last axis (-1 or {ndim - 1}), as Keras", field="axis")
    return None if a % ndim == ndim - 1 else a % ndim


# --------------------------------------------------------------------------- reduction


def _unbroadcast(g: FloatArray, shape: tuple[int, ...]) -> FloatArray:
    """Sum ``g`` down to ``shape`` (the reverse of NumPy broadcasting)."""
    extra = g.ndim - len(shape)
    g = np.sum(g, axis=tuple(range(extra))) if extra > 0 else g
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return np.sum(g, axis=axes, keepdims=True) if axes else g


def _check_broadcast(v: FloatArray, w: np.ndarray, given: Any) -> None:
    vv, ww = squeeze_or_expand(v, w)
    try:
        shape: tuple[int, ...] | None = np.broadcast_shapes(vv.shape, ww.shape)
    except ValueError:
        shape = None
    if shape is None or (vv.shape != () and shape != vv.shape):
        raise ShapeError(
            f"sample_weight has shape {list(np.shape(given))} but the per-sample losses "
            f"have shape {list(v.shape)}; it must broadcast to them",
            field="sample_weight",
        )


def weights(
    v: FloatArray, sample_weight: np.ndarray | None, mask: np.ndarray | None, reduction: str
) -> FloatArray | None:
    """Keras's ``apply_mask`` then the alignment of the weights with the per-sample values.

    A ``sample_weight`` must broadcast to the per-sample values ``v`` (after Keras's
    squeeze/expand of a trailing 1) without enlarging them: :class:`ShapeError` otherwise.
    """
    w: FloatArray | None = None
    if sample_weight is not None:
        w = np.asarray(sample_weight, dtype=v.dtype)
        _check_broadcast(v, w, sample_weight)
    if mask is not None:
        if reduction in ("mean", "sum_over_batch_size"):
            valid = int(np.count_nonzero(mask))
            fm = np.where(mask, v.dtype.type(mask.size / valid if valid else 0), v.dtype.type(0))
        else:
            fm = mask.astype(v.dtype)
        if w is None:
            w = fm
        else:
            fm, w = squeeze_or_expand(fm, w)
            w = fm * w
    if w is None:
        return None
    _check_broadcast(v, w, sample_weight if sample_weight is not None else w)
    return squeeze_or_expand(v, w)[1]


def reduce(v: FloatArray, w: FloatArray | None, reduction: str) -> tuple[Any, FloatArray]:
    """``(value, ∂value/∂v)``: Keras's ``reduce_weighted_values`` and its derivative."""
    if w is not None:
        vv, ww = squeeze_or_expand(v, w)
        weighted = vv * ww
    else:
        vv, ww, weighted = v, np.ones((), v.dtype), v
    if reduction == "none" or weighted.shape in ((), (0,)):
        value, g = weighted, np.ones_like(weighted)
    else:
        if reduction == "mean_with_sample_weight" and w is not None:
            divisor = np.sum(ww)
        elif reduction == "sum":
            divisor = v.dtype.type(1)
        else:
            divisor = v.dtype.type(weighted.size)
        s = np.sum(weighted)
        value = s / divisor if divisor != 0 else v.dtype.type(0)
        g = np.full(weighted.shape, 1 / divisor if divisor != 0 else 0, v.dtype)
    g_v = _unbroadcast(g * ww, vv.shape)
    return value, np.reshape(g_v, v.shape)
