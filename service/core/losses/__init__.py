"""Data losses: every Keras 3.15 loss with a closed form, value and gradient wrt ``y_pred``,
reduced (and weighted) as Keras's loss objects do.

A loss first computes one value per sample (the feature axis reduced: a mean for
``mse``/``mae``/``huber``/``binary_crossentropy``/…, a sum for the categorical ones; see
:mod:`.regression`, :mod:`.probabilistic`, :mod:`.margin` for each formula), then Keras's
``reduce_weighted_values``:

* ``sample_weight`` (optional, broadcast against the per-sample values after Keras's
  ``squeeze_or_expand_to_same_rank``) multiplies them;
* ``reduction``: ``"sum_over_batch_size"`` (the default, and what ``fit`` minimises:
  ``Σ w·v / n`` with ``n`` the number of per-sample values), ``"mean"`` (the same),
  ``"sum"``, ``"mean_with_sample_weight"`` (``Σ w·v / Σ w``) or ``"none"`` (``null``
  too: the weighted per-sample values, a tensor).  A division by 0 gives 0 (TF's
  ``divide_no_nan``).  A scalar per-sample value (``dice``/``tversky`` with ``axis=null``)
  is returned as it is, whatever the reduction.
* ``sparse_categorical_crossentropy(ignore_class=k)`` masks samples whose label is
  ``k``: their value is 0 and, for the mean reductions, the others are averaged alone.

The gradient is that of the returned value; for ``reduction="none"`` it is the gradient of
the sum of the returned tensor (what ``tf.GradientTape`` gives for a non-scalar target).

Other routes take a loss through :func:`get` and call :meth:`Loss.evaluate`::

    >>> t = np.array([[0.0, 1.0], [0.0, 0.0]], np.float32)
    >>> p = np.array([[0.6, 0.4], [0.4, 0.6]], np.float32)
    >>> r = get("mse").evaluate(t, p)
    >>> float(r.value), r.per_sample.tolist(), r.gradient.tolist()
    (0.3100000023841858, [0.36000001430511475, 0.2600000202655792], [[0.30000001192092896, -0.30000001192092896], [0.20000000298023224, 0.30000001192092896]])
    >>> r = get({"name": "mse", "reduction": "sum"}).evaluate(t, p, sample_weight=np.array([1.0, 0.0]))
    >>> round(float(r.value), 6)
    0.36
    >>> get({"name": "huber", "reduction": "none"}).value(t, p).tolist()
    [0.18000000715255737, 0.1300000101327896]

Conventions
-----------
* Shapes: ``y_true`` and ``y_pred`` must have equal shapes, except that, as Keras's
  loss classes do, ranks differing by one with a trailing axis of size 1 are aligned
  (``(N,)`` vs ``(N, 1)``).  Keras's broadcasting of other shapes is refused.  The
  sparse losses take class indices of shape ``y_pred.shape[:-1]`` (or with a trailing 1).
  Rank 0 is refused.  A ``sample_weight`` must broadcast to the per-sample values
  without enlarging them (Keras also accepts shapes that enlarge them).
* An empty ``y_pred`` gives 0 (an empty tensor for ``none``) and an empty gradient.
* The computation runs in ``y_pred``'s dtype (float16 via float32); ``y_true`` is
  cast to it.  Keras's loss objects compute in ``floatx`` (float32) unless given a
  dtype: float64 results here are Keras's with ``dtype="float64"``.
* A result that overflows the dtype becomes ``inf`` in :meth:`Loss.value` /
  :meth:`Loss.gradient` (the caller checks finiteness); :meth:`Loss.evaluate` refuses
  it.  Where Keras returns NaN or inf from finite inputs (a categorical row of ``y_pred``
  summing to 0, ``poisson`` with ``y_pred ≤ −1e-7``, a dice/tversky denominator of 0,
  class indices out of range) a :class:`NonFiniteError` / :class:`ShapeError` names it.
* ``categorical_crossentropy(from_logits=True)``: the gradient is the derivative of
  the value, ``softmax(z)·Σt − t``.  TF's kernel returns ``softmax(z) − t``, the same
  whenever each row of ``y_true`` sums to 1.
* Parameter domains are Keras's, narrowed where the result would not be finite:
  ``gamma ≥ 0`` for the focal losses, ``delta > 0`` for huber, ``label_smoothing`` in
  ``[0, 1]``; ``q`` in ``(0, 1)`` as Keras requires.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from service.core import specs
from service.core.errors import SpecError, shown
from service.core.losses import margin, probabilistic, regression
from service.core.losses.base import EPSILON, Kind, Mask, PerSample, Vjp
from service.core.losses.reduction import aligned, feature_axis, reduce, weights
from service.core.numeric import check_finite, result_dtype, to_dtype, work_dtype
from service.core.specs import (
    Check,
    Entry,
    Named,
    Names,
    Params,
    boolean,
    non_negative,
    number,
    positive,
    split_spec,
    unit_interval,
)

__all__ = ["EPSILON", "REDUCTIONS", "Loss", "LossResult", "describe", "get"]

#: Keras's reductions (``None`` is read as ``"none"``).
REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none")


def _reduction(name: str, value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, str) and value in REDUCTIONS:
        return value
    raise SpecError(f"{name} must be one of {', '.join(REDUCTIONS)} or null, got {shown(value)}", field=name)


def _int_axis(name: str, value: Any) -> int:
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value)
    raise SpecError(f"{name} must be an integer, got {shown(value)}", field=name)


def _axes(name: str, value: Any) -> int | tuple[int, ...] | None:
    """``None`` (every axis), an int, or a non-empty list of distinct ints."""
    if value is None:
        return None
    if isinstance(value, list | tuple) and value:
        axes = tuple(_int_axis(name, a) for a in value)
        if len(set(axes)) == len(axes):
            return axes
        raise SpecError(f"{name} must not repeat an axis, got {shown(value)}", field=name)
    return _int_axis(name, value)


def _optional_int(name: str, value: Any) -> int | None:
    return None if value is None else _int_axis(name, value)


def _open_unit(name: str, value: Any) -> float:
    v = number(name, value)
    if not 0 < v < 1:
        raise SpecError(f"{name} must be in the open interval (0, 1), got {shown(value)}", field=name)
    return v


_REDUCTION: dict[str, tuple[Any, Check]] = {"reduction": ("sum_over_batch_size", _reduction)}
_CROSSENTROPY: dict[str, tuple[Any, Check]] = {
    "from_logits": (False, boolean),
    "label_smoothing": (0.0, unit_interval),
    "axis": (-1, _int_axis),
}
_FOCAL: dict[str, tuple[Any, Check]] = {"alpha": (0.25, number), "gamma": (2.0, non_negative)}


def _kind(
    name: str,
    per_sample: PerSample,
    vjp: Vjp,
    formula: str,
    *,
    params: Mapping[str, tuple[Any, Check]] | None = None,
    aliases: tuple[str, ...] = (),
    labels: str = "dense",
    axis: str = "last",
    mask: Mask | None = None,
) -> Kind:
    return Kind(
        name=name,
        per_sample=per_sample,
        vjp=vjp,
        formula=formula,
        params=Params.declare({**(params or {}), **_REDUCTION}),
        aliases=aliases,
        labels=labels,  # type: ignore[arg-type]
        axis=axis,  # type: ignore[arg-type]
        mask=mask,
    )


_KINDS_LIST = (
    _kind("mean_squared_error", regression.mse, regression.mse_vjp,
          "mean over the last axis of (y_true - y_pred)^2", aliases=("mse", "MSE", "MeanSquaredError")),
    _kind("mean_absolute_error", regression.mae, regression.mae_vjp,
          "mean over the last axis of |y_true - y_pred|", aliases=("mae", "MAE", "MeanAbsoluteError")),
    _kind("mean_absolute_percentage_error", regression.mape, regression.mape_vjp,
          "100 * mean over the last axis of |y_true - y_pred| / max(|y_true|, 1e-7)",
          aliases=("mape", "MAPE", "MeanAbsolutePercentageError")),
    _kind("mean_squared_logarithmic_error", regression.msle, regression.msle_vjp,
          "mean over the last axis of (log(max(y_pred, 1e-7) + 1) - log(max(y_true, 1e-7) + 1))^2",
          aliases=("msle", "MSLE", "MeanSquaredLogarithmicError")),
    _kind("cosine_similarity", regression.cosine_similarity, regression.cosine_similarity_vjp,
          "-sum over axis of l2_normalize(y_true) * l2_normalize(y_pred) (norms floored at 1e-7)",
          params={"axis": (-1, _int_axis)}, aliases=("CosineSimilarity",), axis="param"),
    _kind("huber", regression.huber, regression.huber_vjp,
          "mean of (0.5 e^2 if |e| <= delta else delta |e| - 0.5 delta^2), e = y_pred - y_true",
          params={"delta": (1.0, positive)}, aliases=("Huber",)),
    _kind("log_cosh", regression.log_cosh, regression.log_cosh_vjp,
          "mean over the last axis of log(cosh(y_pred - y_true))", aliases=("LogCosh",)),
    _kind("hinge", margin.hinge, margin.hinge_vjp,
          "mean of max(1 - t * y_pred, 0); t = 2 y_true - 1 when every label is 0 or 1", aliases=("Hinge",)),
    _kind("squared_hinge", margin.squared_hinge, margin.squared_hinge_vjp,
          "mean of max(1 - t * y_pred, 0)^2; t = 2 y_true - 1 when every label is 0 or 1",
          aliases=("SquaredHinge",)),
    _kind("categorical_hinge", margin.categorical_hinge, margin.categorical_hinge_vjp,
          "max(max((1 - y_true) * y_pred) - sum(y_true * y_pred) + 1, 0) over the last axis",
          aliases=("CategoricalHinge",)),
    _kind("kl_divergence", probabilistic.kld, probabilistic.kld_vjp,
          "sum over the last axis of t * log(t / p), t and p clipped to [1e-7, 1]",
          aliases=("kld", "KLD", "KLDivergence")),
    _kind("poisson", probabilistic.poisson, probabilistic.poisson_vjp,
          "mean over the last axis of y_pred - y_true * log(y_pred + 1e-7)", aliases=("Poisson",)),
    _kind("binary_crossentropy", probabilistic.bce, probabilistic.bce_vjp,
          "mean over axis of -(t log q + (1 - t) log(1 - q)), q = clip(y_pred, 1e-7, 1 - 1e-7) "
          "or sigmoid(y_pred) if from_logits", params=_CROSSENTROPY,
          aliases=("bce", "BCE", "BinaryCrossentropy"), axis="param"),
    _kind("binary_focal_crossentropy", probabilistic.bfce, probabilistic.bfce_vjp,
          "mean over axis of w (1 - p_t)^gamma bce, p_t = t p + (1 - t)(1 - p), "
          "w = t alpha + (1 - t)(1 - alpha) if apply_class_balancing else 1",
          params={"apply_class_balancing": (False, boolean), **_FOCAL, **_CROSSENTROPY},
          aliases=("BinaryFocalCrossentropy",), axis="param"),
    _kind("categorical_crossentropy", probabilistic.cce, probabilistic.cce_vjp,
          "-sum over axis of t log q, q = clip(y_pred / sum(y_pred), 1e-7, 1 - 1e-7) "
          "or softmax(y_pred) if from_logits", params=_CROSSENTROPY,
          aliases=("CategoricalCrossentropy",), axis="param"),
    _kind("categorical_focal_crossentropy", probabilistic.cfce, probabilistic.cfce_vjp,
          "sum over axis of alpha (1 - q)^gamma (-t log q), q = clip(p / sum(p), 1e-7, 1 - 1e-7), "
          "p = softmax(y_pred) if from_logits", params={**_FOCAL, **_CROSSENTROPY},
          aliases=("CategoricalFocalCrossentropy",), axis="param"),
    _kind("sparse_categorical_crossentropy", probabilistic.scce, probabilistic.scce_vjp,
          "log(sum(q)) - log(q[y_true]), q = clip(y_pred, 1e-7, 1 - 1e-7), or "
          "logsumexp(y_pred) - y_pred[y_true] if from_logits; ignore_class masks samples",
          params={"from_logits": (False, boolean), "ignore_class": (None, _optional_int),
                  "axis": (-1, _int_axis)},
          aliases=("SparseCategoricalCrossentropy",), labels="sparse", axis="param",
          mask=probabilistic.scce_mask),
    _kind("categorical_generalized_cross_entropy", probabilistic.cgce, probabilistic.cgce_vjp,
          "(1 - y_pred[y_true]^q) / q", params={"q": (0.5, _open_unit)},
          aliases=("CategoricalGeneralizedCrossEntropy",), labels="sparse"),
    _kind("dice", margin.dice, margin.dice_vjp,
          "1 - 2 sum(t p) / (sum(t) + sum(p) + 1e-7) over axis (null: all axes)",
          params={"axis": (None, _axes)}, aliases=("Dice",), axis="own"),
    _kind("tversky", margin.tversky, margin.tversky_vjp,
          "1 - I / (I + alpha FP + beta FN + 1e-7), I = sum(t p), FP = sum((1 - p) t), "
          "FN = sum(p (1 - t)) over axis (null: all axes)",
          params={"alpha": (0.5, number), "beta": (0.5, number), "axis": (None, _axes)},
          aliases=("Tversky",), axis="own"),
    _kind("circle", margin.circle, margin.circle_vjp,
          "softplus(logsumexp_pos(-gamma w_p (margin - d)) + logsumexp_neg(gamma w_n (1 - margin - d))) "
          "over the batch's pairs, d = max(1 - y_pred y_pred^T, 0), y_true the class labels",
          params={"gamma": (80.0, number), "margin": (0.4, number), "remove_diagonal": (True, boolean)},
          aliases=("Circle",), labels="pairs", mask=margin.circle_mask),
)

_KINDS: dict[str, Kind] = {k.name: k for k in _KINDS_LIST}
_NAMES = Names(
    "loss",
    ((k.name, k.aliases) for k in _KINDS_LIST),
    example='{"name": "huber", "delta": 2.0}',
)
#: Canonical Keras function names.
NAMES: tuple[str, ...] = _NAMES.names
#: Every accepted name -> canonical name: Keras's function names, its aliases (mse, kld, …)
#: and its loss class names (MeanSquaredError, Huber, …), as ``keras.losses.get`` takes them.
ALIASES: dict[str, str] = _NAMES.aliases


# --------------------------------------------------------------------------- the loss object


@dataclass(frozen=True)
class LossResult:
    """A loss evaluated on one batch (every array in ``y_pred``'s dtype).

    ``value``: the reduced loss (a scalar, or a tensor for ``reduction="none"``);
    ``per_sample``: the unweighted per-sample values (shape ``y_pred.shape[:-1]``, or the
    axes left by ``axis``); ``gradient``: ``∂value/∂y_pred`` (of ``Σ value`` for ``none``),
    shape of ``y_pred``, or None when not asked for.
    """

    value: Any
    per_sample: np.ndarray
    gradient: np.ndarray | None


@dataclass(frozen=True)
class Loss(Named):
    """A Keras data loss with its parameters (defaults filled in); build it with :func:`get`.

    >>> cce = get("categorical_crossentropy")
    >>> t = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    >>> p = np.array([[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]], np.float32)
    >>> round(float(cce.value(t, p)), 4)
    1.1769
    >>> get("bce").get_config()
    {'name': 'binary_crossentropy', 'from_logits': False, 'label_smoothing': 0.0, 'axis': -1, 'reduction': 'sum_over_batch_size'}
    """

    _registry: ClassVar[Mapping[str, Entry]] = _KINDS
    _names: ClassVar[Names] = _NAMES

    @property
    def takes_logits(self) -> bool:
        """Whether the loss has a ``from_logits`` form."""
        return "from_logits" in self.params

    @property
    def reduction(self) -> str:
        return str(self.params["reduction"])

    def _compute(
        self, y_true: Any, y_pred: Any, sample_weight: Any, need_gradient: bool
    ) -> tuple[Any, np.ndarray, np.ndarray | None, np.dtype[Any]]:
        y_pred, y_true = np.asarray(y_pred), np.asarray(y_true)
        dtype = result_dtype(y_pred)
        if y_true.dtype.kind not in "biuf":
            raise SpecError(f"y_true must be numeric, got dtype {y_true.dtype}", field="y_true")
        kind = _KINDS[self.name]
        t, p = aligned(kind, y_true, y_pred)
        wd = work_dtype(dtype)
        t, p = np.asarray(t, dtype=wd), np.asarray(p, dtype=wd)
        axis = feature_axis(kind, self.params, p.ndim)
        if axis is not None:
            t, p = np.moveaxis(t, axis, -1), np.moveaxis(p, axis, -1)
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight)
            if sample_weight.dtype.kind not in "biuf":
                raise SpecError(f"sample_weight must be numeric, got dtype {sample_weight.dtype}",
                                field="sample_weight")
        with np.errstate(under="ignore", over="ignore", divide="ignore", invalid="ignore"):
            if p.size == 0:
                v = np.zeros(p.shape[:-1] if kind.axis != "own" else (), wd)
                if self.reduction == "none":
                    return v, v, np.zeros(y_pred.shape, dtype) if need_gradient else None, dtype
                zero = wd.type(0)
                return zero, v, np.zeros(y_pred.shape, dtype) if need_gradient else None, dtype
            v = kind.per_sample(t, p, self.params)
            mask = kind.mask(t, p, self.params) if kind.mask else None
            w = weights(v, sample_weight, mask, self.reduction)
            value, g_v = reduce(v, w, self.reduction)
            grad = None
            if need_gradient:
                grad = kind.vjp(t, p, g_v, self.params)
                if axis is not None:
                    grad = np.moveaxis(grad, -1, axis)
                grad = to_dtype(np.reshape(grad, y_pred.shape), dtype)
            return value, v, grad, dtype

    def value(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        """The loss: a scalar of ``y_pred``'s dtype (a tensor for ``reduction="none"``)."""
        value, _, _, dtype = self._compute(y_true, y_pred, sample_weight, False)
        return to_dtype(value, dtype)

    def gradient(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> np.ndarray:
        """``∂value/∂y_pred`` (of ``Σ value`` for ``reduction="none"``): shape and dtype of ``y_pred``."""
        _, _, grad, _ = self._compute(y_true, y_pred, sample_weight, True)
        assert grad is not None
        return grad

    def evaluate(
        self, y_true: Any, y_pred: Any, sample_weight: Any = None, *, gradient: bool = True
    ) -> LossResult:
        """Value, per-sample values and gradient in one pass; refuses a non-finite result."""
        value, v, grad, dtype = self._compute(y_true, y_pred, sample_weight, gradient)
        result = LossResult(value=to_dtype(value, dtype), per_sample=to_dtype(np.asarray(v), dtype), gradient=grad)
        check_finite("loss", result.value, dtype=dtype)
        if grad is not None:
            check_finite("loss gradient", grad, dtype=dtype)
        return result

    def with_logits(self) -> Loss:
        """The same crossentropy with ``from_logits=True``.

        Keras's ``sigmoid`` and ``softmax`` activations attach their input (the logits)
        to their output, and the crossentropies then compute from those logits whatever
        ``from_logits`` says.  Losses without a ``from_logits`` form raise :class:`SpecError`.
        """
        if not self.takes_logits:
            raise SpecError(f"{self.name} has no from_logits form", field="loss")
        return Loss(self.name, {**self.params, "from_logits": True})


def get(spec: str | Mapping[str, Any] | Loss) -> Loss:
    """A loss from a name or Keras alias, ``{"name": ..., **params}`` or a Loss."""
    if isinstance(spec, Loss):
        return spec
    return Loss(*split_spec(spec, _NAMES))


def describe() -> list[dict[str, Any]]:
    """What the service supports, for a discovery endpoint."""
    return specs.describe(_KINDS_LIST)

