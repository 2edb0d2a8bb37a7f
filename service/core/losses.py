"""Data losses: each value with its gradient wrt ``y_pred`` beside it, reduced as Keras does.

Keras 3.15 (TensorFlow backend) computes a loss per sample by reducing the last axis
(a mean for ``mse``/``mae``/``huber``/``binary_crossentropy``, a sum for
``categorical_crossentropy``), then reduces with ``"sum_over_batch_size"``: the sum of
the per-sample losses divided by their number ``n`` (every axis but the last).  So
for a ``(B, K)`` tensor ``mse = Σ(t − p)²/(B·K)`` and ``cce = Σ_rows(...)/B``.

=============================  ==============================================  ==================================
name (aliases)                 per-element / per-sample value                  gradient wrt ``p`` (before ``/n``)
=============================  ==============================================  ==================================
``mean_squared_error`` (mse)   ``mean((t − p)²)``                              ``2(p − t)/K``
``mean_absolute_error`` (mae)  ``mean(|t − p|)``                               ``sign(p − t)/K`` (0 where equal)
``huber(delta=1)``             ``mean(½e² if |e| ≤ δ else δ|e| − ½δ²)``, e=p−t  ``e`` or ``δ·sign(e)``, ``/K``
``binary_crossentropy`` (bce)  ``mean(−t·log q − (1−t)·log(1−q))``            ``[clip passes]·(−t/q + (1−t)/(1−q))/K``
  ``from_logits=True``         ``mean(max(z,0) − z·t + log1p(exp(−|z|)))``     ``(sigmoid(z) − t)/K``
``categorical_crossentropy``   ``−Σ t·log q``, ``q = clip(p/Σp)``              through the clip and the ``p/Σp``
  ``from_logits=True``         ``Σ t·(logsumexp(z) − z)``                      ``softmax(z)·Σt − t``
=============================  ==============================================  ==================================

``q = clip(·, 1e-7, 1 − 1e-7)``.  TF's ``clip_by_value`` passes the gradient at a tie,
so an element exactly at a bound has its full gradient; outside the bounds it has 0.
Keras 3.15 does not add an epsilon inside the logs (tf.keras 2.x did for bce).

Conventions
-----------
* Shapes: ``y_true`` and ``y_pred`` must have equal shapes, except that, as Keras's
  loss classes do, ranks differing by one with a trailing axis of size 1 are aligned
  (``(N,)`` vs ``(N, 1)``: the rank-1 tensor gains the axis).  Keras's broadcasting of
  other shapes (mse of ``(2, 3)`` against ``(3,)``) is refused.  Rank 0 is refused
  (Keras fails on it).  A rank-1 tensor is one sample.
* An empty ``y_pred`` gives 0 and an empty gradient (Keras returns an empty tensor,
  or NaN for an empty last axis).
* The computation runs in ``y_pred``'s dtype (float16 via float32); ``y_true`` is
  cast to it.  Keras's loss objects compute in ``floatx`` (float32) whatever the
  inputs' dtype: float64 results here are more accurate than Keras's.
* A result that overflows the dtype becomes ``inf`` (the caller checks finiteness);
  nothing becomes NaN.  A ``categorical_crossentropy`` row of probabilities that sums
  to 0 raises :class:`NonFiniteError` (Keras returns NaN).
* ``categorical_crossentropy(from_logits=True)``: the gradient is the derivative of
  the value, ``softmax(z)·Σt − t``.  TF's kernel returns ``softmax(z) − t``, which is
  the same whenever each row of ``y_true`` sums to 1 (one-hot or probabilities) and
  is not the derivative of its own value otherwise.

    >>> t = np.array([[0.0, 1.0], [0.0, 0.0]], np.float32)
    >>> p = np.array([[0.6, 0.4], [0.4, 0.6]], np.float32)
    >>> float(get("mse").value(t, p))
    0.3100000023841858
    >>> get("mse").gradient(t, p)
    array([[ 0.3, -0.3],
           [ 0.2,  0.3]], dtype=float32)
    >>> round(float(get({"name": "huber", "delta": 1.0}).value(t, p)), 6)
    0.155
    >>> get("bce").get_config()
    {'name': 'binary_crossentropy', 'from_logits': False, 'label_smoothing': 0.0}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from service.core import specs
from service.core.errors import NonFiniteError, ShapeError, SpecError
from service.core.numeric import FloatArray, result_dtype, to_dtype, work_dtype
from service.core.specs import (
    Check,
    Entry,
    Named,
    Names,
    Params,
    boolean,
    positive,
    split_spec,
    unit_interval,
)

#: Keras's ``backend.epsilon()``: probabilities are clipped to ``[EPSILON, 1 − EPSILON]``.
EPSILON = 1e-7

P = Mapping[str, Any]
#: ``(t, p, params) -> per-sample losses`` (shape ``p.shape[:-1]``).
PerSample = Callable[[FloatArray, FloatArray, P], FloatArray]
#: ``(t, p, params) -> ∂(Σ per-sample losses)/∂p`` (shape ``p.shape``).
PerSampleGrad = Callable[[FloatArray, FloatArray, P], FloatArray]


def _c(x: FloatArray, v: float) -> Any:
    """A Python number as a scalar of ``x``'s dtype (as TF converts constants)."""
    return x.dtype.type(v)


def _clip_probs(p: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``clip(p, ε, 1 − ε)`` and where the gradient passes (ties included, as TF)."""
    lo, hi = _c(p, EPSILON), _c(p, 1.0 - EPSILON)
    return np.maximum(np.minimum(p, hi), lo), ((p >= lo) & (p <= hi)).astype(p.dtype)


def _sigmoid(z: FloatArray) -> FloatArray:
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


# --------------------------------------------------------------------------- losses


def _mse(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    d = t - p
    return np.mean(d * d, axis=-1)


def _mse_grad(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    return 2 * (p - t) / _c(p, p.shape[-1])


def _mae(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    return np.mean(np.abs(t - p), axis=-1)


def _mae_grad(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    """``sign(p − t)/K``: 0 where ``p == t`` (TF's ``abs`` gradient is ``sign``)."""
    return np.sign(p - t) / _c(p, p.shape[-1])


def _huber(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    delta, half = _c(p, params["delta"]), _c(p, 0.5)
    e = p - t
    a = np.abs(e)
    return np.mean(np.where(a <= delta, half * (e * e), delta * a - half * (delta * delta)), axis=-1)


def _huber_grad(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    """``e`` where ``|e| ≤ δ`` (the quadratic branch at the tie), else ``δ·sign(e)``; ``/K``."""
    delta = _c(p, params["delta"])
    e = p - t
    return np.where(np.abs(e) <= delta, e, delta * np.sign(e)) / _c(p, p.shape[-1])


def _smoothed_binary(t: FloatArray, params: P) -> FloatArray:
    ls = params["label_smoothing"]
    return t * _c(t, 1.0 - ls) + _c(t, 0.5 * ls) if ls else t


def _bce(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    t = _smoothed_binary(t, params)
    if params["from_logits"]:
        elem = np.maximum(p, 0) - p * t + np.log1p(np.exp(-np.abs(p)))
    else:
        q, _ = _clip_probs(p)
        elem = -(t * np.log(q) + (1 - t) * np.log(1 - q))
    return np.mean(elem, axis=-1)


def _bce_grad(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    t = _smoothed_binary(t, params)
    k = _c(p, p.shape[-1])
    if params["from_logits"]:
        return (_sigmoid(p) - t) / k
    q, passes = _clip_probs(p)
    return passes * ((1 - t) / (1 - q) - t / q) / k


def _smoothed_categorical(t: FloatArray, params: P) -> FloatArray:
    ls = params["label_smoothing"]
    return t * _c(t, 1.0 - ls) + _c(t, ls) / _c(t, t.shape[-1]) if ls else t


def _row_sums(p: FloatArray) -> FloatArray:
    s = np.sum(p, axis=-1, keepdims=True)
    if np.any(s == 0):
        raise NonFiniteError(
            "categorical_crossentropy: a row of y_pred sums to 0, so it cannot be normalised "
            "to probabilities (Keras returns NaN); pass probabilities, or logits with "
            "from_logits=true",
            field="y_pred",
        )
    return s


def _cce(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    t = _smoothed_categorical(t, params)
    if params["from_logits"]:
        shifted = p - np.max(p, axis=-1, keepdims=True)
        lse = np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
        return np.sum(t * (lse - shifted), axis=-1)
    q, _ = _clip_probs(p / _row_sums(p))
    return -np.sum(t * np.log(q), axis=-1)


def _cce_grad(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    t = _smoothed_categorical(t, params)
    if params["from_logits"]:
        e = np.exp(p - np.max(p, axis=-1, keepdims=True))
        softmax = e / np.sum(e, axis=-1, keepdims=True)
        return softmax * np.sum(t, axis=-1, keepdims=True) - t
    s = _row_sums(p)
    r = p / s
    q, passes = _clip_probs(r)
    a = np.where(passes > 0, -t / q, _c(p, 0))  # ∂loss/∂r (0 where the clip holds)
    r_in = np.where(passes > 0, r, _c(p, 0))  # r is only needed where a ≠ 0 (and may be ±inf elsewhere)
    return (a - np.sum(a * r_in, axis=-1, keepdims=True)) / s


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class _Kind:
    name: str
    per_sample: PerSample
    gradient: PerSampleGrad
    formula: str
    params: Params
    aliases: tuple[str, ...] = ()


_CROSSENTROPY_PARAMS: dict[str, tuple[Any, Check]] = {
    "from_logits": (False, boolean),
    "label_smoothing": (0.0, unit_interval),
}


def _kind(
    name: str,
    per_sample: PerSample,
    gradient: PerSampleGrad,
    formula: str,
    *,
    params: Mapping[str, tuple[Any, Check]] | None = None,
    aliases: tuple[str, ...] = (),
) -> _Kind:
    return _Kind(
        name=name,
        per_sample=per_sample,
        gradient=gradient,
        formula=formula,
        params=Params.declare(params),
        aliases=aliases,
    )


_KINDS_LIST = (
    _kind(
        "mean_squared_error",
        _mse,
        _mse_grad,
        "mean over all elements of (y_true - y_pred)^2",
        aliases=("mse", "MSE", "MeanSquaredError"),
    ),
    _kind(
        "mean_absolute_error",
        _mae,
        _mae_grad,
        "mean over all elements of |y_true - y_pred|",
        aliases=("mae", "MAE", "MeanAbsoluteError"),
    ),
    _kind(
        "huber",
        _huber,
        _huber_grad,
        "mean of (0.5 e^2 if |e| <= delta else delta |e| - 0.5 delta^2), e = y_pred - y_true",
        params={"delta": (1.0, positive)},
        aliases=("Huber",),
    ),
    _kind(
        "binary_crossentropy",
        _bce,
        _bce_grad,
        "mean of -(t log q + (1 - t) log(1 - q)), q = clip(y_pred, 1e-7, 1 - 1e-7) "
        "or sigmoid(y_pred) if from_logits",
        params=_CROSSENTROPY_PARAMS,
        aliases=("bce", "BCE", "BinaryCrossentropy"),
    ),
    _kind(
        "categorical_crossentropy",
        _cce,
        _cce_grad,
        "mean over samples of -sum(t log q) over the last axis, q = clip(y_pred / sum(y_pred), "
        "1e-7, 1 - 1e-7) or softmax(y_pred) if from_logits",
        params=_CROSSENTROPY_PARAMS,
        aliases=("CategoricalCrossentropy",),
    ),
)

_KINDS: dict[str, _Kind] = {k.name: k for k in _KINDS_LIST}
_NAMES = Names(
    "loss",
    ((k.name, k.aliases) for k in _KINDS_LIST),
    example='{"name": "huber", "delta": 2.0}',
)
#: Canonical Keras function names.
NAMES: tuple[str, ...] = _NAMES.names
#: Every accepted name -> canonical name: Keras's function names, its aliases (mse, MSE, …)
#: and its loss class names (MeanSquaredError, Huber, …), as ``keras.losses.get`` takes them.
ALIASES: dict[str, str] = _NAMES.aliases


def _aligned(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keras's ``squeeze_or_expand_to_same_rank(y_true, y_pred)``, then equal shapes."""
    t, p = y_true, y_pred
    if t.ndim == p.ndim + 1 and t.shape[-1] == 1:
        if p.ndim == 1:
            p = p[:, None]
        else:
            t = t[..., 0]
    elif p.ndim == t.ndim + 1 and p.shape[-1] == 1:
        if t.ndim == 1:
            t = t[:, None]
        else:
            p = p[..., 0]
    if t.shape != p.shape:
        raise ShapeError(
            f"y_true has shape {list(y_true.shape)} but y_pred has shape {list(y_pred.shape)}; "
            "they must be equal (or differ only by a trailing axis of size 1)",
            field="y_true",
        )
    if p.ndim == 0:
        raise ShapeError(
            "y_true and y_pred must have rank >= 1 (samples along the leading axes, "
            "features along the last), got scalars",
            field="y_pred",
        )
    return t, p


@dataclass(frozen=True)
class Loss(Named):
    """A Keras data loss with its parameters (defaults filled in); build it with :func:`get`.

    ``value(y_true, y_pred)`` is the ``sum_over_batch_size`` reduction Keras's ``fit``
    minimises; ``gradient`` is its derivative wrt ``y_pred`` (shape and dtype of ``y_pred``).

    >>> cce = get("categorical_crossentropy")
    >>> t = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    >>> p = np.array([[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]], np.float32)
    >>> round(float(cce.value(t, p)), 4)
    1.1769
    """

    _registry: ClassVar[Mapping[str, Entry]] = _KINDS
    _names: ClassVar[Names] = _NAMES

    @property
    def takes_logits(self) -> bool:
        """Whether the loss has a ``from_logits`` form (the two crossentropies)."""
        return "from_logits" in self.params

    def _prepare(
        self, y_true: np.ndarray, y_pred: np.ndarray
    ) -> tuple[FloatArray, FloatArray, np.dtype[Any]]:
        y_pred = np.asarray(y_pred)
        y_true = np.asarray(y_true)
        dtype = result_dtype(y_pred)
        if y_true.dtype.kind not in "biuf":
            raise SpecError(f"y_true must be numeric, got dtype {y_true.dtype}", field="y_true")
        t, p = _aligned(y_true, y_pred)
        wd = work_dtype(dtype)
        return np.asarray(t, dtype=wd), np.asarray(p, dtype=wd), dtype

    def value(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.floating[Any]:
        """The loss, a scalar of ``y_pred``'s dtype."""
        t, p, dtype = self._prepare(y_true, y_pred)
        if p.size == 0:
            return to_dtype(p.dtype.type(0), dtype)
        with np.errstate(under="ignore", over="ignore"):
            per = _KINDS[self.name].per_sample(t, p, self.params)
            total = np.sum(per) / p.dtype.type(max(per.size, 1))
            return to_dtype(p.dtype.type(total), dtype)

    def gradient(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        """``∂value/∂y_pred``: same shape and dtype as ``y_pred``."""
        shape = np.shape(y_pred)
        t, p, dtype = self._prepare(y_true, y_pred)
        if p.size == 0:
            return np.zeros(shape, dtype=dtype)
        samples = p.size // p.shape[-1]
        with np.errstate(under="ignore", over="ignore"):
            g = _KINDS[self.name].gradient(t, p, self.params) / p.dtype.type(samples)
            return to_dtype(g.reshape(shape), dtype)


    def with_logits(self) -> Loss:
        """The same crossentropy with ``from_logits=True``.

        Keras's ``sigmoid`` and ``softmax`` activations attach their input (the logits)
        to their output, and ``binary_crossentropy`` / ``categorical_crossentropy``
        with ``from_logits=False`` then compute from those logits instead of the
        probabilities (so no clipping at 1e-7).  A caller that reproduces a network
        with such a head evaluates ``loss.with_logits()`` on the head's pre-activation.
        Losses without a ``from_logits`` form raise :class:`SpecError`.
        """
        if not self.takes_logits:
            raise SpecError(
                f"{self.name} has no from_logits form; only binary_crossentropy and "
                "categorical_crossentropy take logits",
                field="loss",
            )
        return Loss(self.name, {**self.params, "from_logits": True})


def get(spec: str | Mapping[str, Any] | Loss) -> Loss:
    """A loss from a name or Keras alias, ``{"name": ..., **params}`` or a Loss."""
    if isinstance(spec, Loss):
        return spec
    return Loss(*split_spec(spec, _NAMES))


def describe() -> list[dict[str, Any]]:
    """What the service supports, for a discovery endpoint."""
    return specs.describe(_KINDS_LIST)
