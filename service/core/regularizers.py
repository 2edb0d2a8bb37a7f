"""Weight and activity regularizers: each penalty with its gradient beside it.

Notation: ``S1(x) = Σ|x|`` and ``S2(x) = Σx²`` over all elements.

=============  ===========================  ======================  =====================
kind           parameters (Keras defaults)  penalty                 gradient wrt x
=============  ===========================  ======================  =====================
``l1``         ``l1=0.01``                  ``l1·S1(x)``            ``l1·sign(x)`` (0 at 0)
``l2``         ``l2=0.01``                  ``l2·S2(x)``            ``2·l2·x``
``l1l2``       ``l1=0, l2=0``               ``l1·S1 + l2·S2``       the sum of both
``orthogonal`` ``factor=0.01, mode="rows"`` mean ``|cos|`` of pairs  analytic (see class)
=============  ===========================  ======================  =====================

The factor multiplies the finished sum (Keras 2/3), not each element (Keras 1).
Keras's L2 is ``l2·Σw²`` with gradient ``2·l2·w``: an optax-style
``add_decayed_weights(λ)`` equals ``L2(λ/2)``.

Specs accepted by :func:`get` (the same three forms the HTTP API takes)::

    >>> get("l1").get_config()
    {'type': 'l1', 'l1': 0.01}
    >>> get({"type": "l2", "l2": 0.1}).get_config()
    {'type': 'l2', 'l2': 0.1}
    >>> get({"class_name": "L1L2", "config": {"l1": 0.01, "l2": 0.0}}).get_config()
    {'type': 'l1l2', 'l1': 0.01, 'l2': 0.0}
    >>> float(get({"type": "l1", "l1": 0.1}).penalty(np.full((2, 2, 4), 3.0, np.float32)))
    4.800000190734863
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from service.core.errors import ShapeError, SpecError, shown
from service.core.numeric import (
    FloatArray,
    as_work,
    factor_in,
    finish,
    result_dtype,
    sum_abs,
    sum_squares,
    to_dtype,
    total,
    work_dtype,
)
from service.core.specs import non_negative

#: Keras's ``backend.epsilon()``: the smallest row/column norm the orthogonal
#: regularizer divides by.
ORTHOGONAL_EPSILON = 1e-7


class Regularizer(ABC):
    """A penalty ``R(x)`` and its gradient ``∂R/∂x``, in the dtype of ``x``."""

    #: Canonical wire tag (``{"type": kind, ...}``).
    kind: ClassVar[str]
    #: Keras class name, for the serialized form ``{"class_name": ..., "config": ...}``.
    keras_class: ClassVar[str]
    #: Parameter names and Keras defaults.
    defaults: ClassVar[dict[str, Any]]
    #: One-line formula for discovery endpoints and docs.
    formula: ClassVar[str]

    @abstractmethod
    def penalty(self, x: np.ndarray) -> np.floating[Any]:
        """The penalty, a scalar of ``x``'s dtype."""

    @abstractmethod
    def gradient(self, x: np.ndarray) -> FloatArray:
        """``∂penalty/∂x``, an array of ``x``'s shape and dtype."""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The parameters, in the order of :attr:`defaults`."""

    def get_config(self) -> dict[str, Any]:
        """The canonical tagged form; :func:`get` of it rebuilds an equal regularizer."""
        return {"type": self.kind, **self.params()}

    def keras_config(self) -> dict[str, Any]:
        """The Keras serialized form (``keras.regularizers.serialize``)."""
        return {"class_name": self.keras_class, "config": self.params()}

    def __call__(self, x: np.ndarray) -> np.floating[Any]:
        return self.penalty(x)


@dataclass(frozen=True)
class L1(Regularizer):
    """``l1·Σ|x|``; gradient ``l1·sign(x)`` with ``sign(0) = 0`` (as TensorFlow).

    >>> float(L1(0.1).penalty(np.array([[1.0, -2.0]], np.float32)))
    0.30000001192092896
    """

    l1: float = 0.01

    kind: ClassVar[str] = "l1"
    keras_class: ClassVar[str] = "L1"
    defaults: ClassVar[dict[str, Any]] = {"l1": 0.01}
    formula: ClassVar[str] = "l1 * sum(|x|); gradient l1 * sign(x)"

    def __post_init__(self) -> None:
        object.__setattr__(self, "l1", non_negative("l1", self.l1))

    def penalty(self, x: np.ndarray) -> np.floating[Any]:
        return to_dtype(factor_in(self.l1, x.dtype) * sum_abs(x), x.dtype)

    def gradient(self, x: np.ndarray) -> FloatArray:
        g = np.sign(as_work(x))
        g *= factor_in(self.l1, x.dtype)
        return to_dtype(g, x.dtype)

    def params(self) -> dict[str, Any]:
        return {"l1": self.l1}


@dataclass(frozen=True)
class L2(Regularizer):
    """``l2·Σx²``; gradient ``2·l2·x``.

    >>> float(L2(0.1).penalty(np.array([[1.0, -2.0]], np.float64)))
    0.5
    """

    l2: float = 0.01

    kind: ClassVar[str] = "l2"
    keras_class: ClassVar[str] = "L2"
    defaults: ClassVar[dict[str, Any]] = {"l2": 0.01}
    formula: ClassVar[str] = "l2 * sum(x^2); gradient 2 * l2 * x"

    def __post_init__(self) -> None:
        object.__setattr__(self, "l2", non_negative("l2", self.l2))

    def penalty(self, x: np.ndarray) -> np.floating[Any]:
        with np.errstate(over="ignore"):
            return to_dtype(factor_in(self.l2, x.dtype) * sum_squares(x), x.dtype)

    def gradient(self, x: np.ndarray) -> FloatArray:
        w = as_work(x)
        with np.errstate(over="ignore"):
            return to_dtype((2 * factor_in(self.l2, x.dtype)) * w, x.dtype)

    def params(self) -> dict[str, Any]:
        return {"l2": self.l2}


@dataclass(frozen=True)
class L1L2(Regularizer):
    """``l1·Σ|x| + l2·Σx²``; a term whose factor is 0 is skipped (as Keras does).

    Keras 3's defaults are ``l1=0, l2=0``; the tf.keras 2.x identifier ``"l1_l2"``
    meant ``L1L2(0.01, 0.01)`` and is accepted by :func:`get` with that meaning.
    """

    l1: float = 0.0
    l2: float = 0.0

    kind: ClassVar[str] = "l1l2"
    keras_class: ClassVar[str] = "L1L2"
    defaults: ClassVar[dict[str, Any]] = {"l1": 0.0, "l2": 0.0}
    formula: ClassVar[str] = "l1 * sum(|x|) + l2 * sum(x^2); gradient l1 * sign(x) + 2 * l2 * x"

    def __post_init__(self) -> None:
        object.__setattr__(self, "l1", non_negative("l1", self.l1))
        object.__setattr__(self, "l2", non_negative("l2", self.l2))

    def penalty(self, x: np.ndarray) -> np.floating[Any]:
        total = work_dtype(x.dtype).type(0)
        with np.errstate(over="ignore"):
            if self.l1:
                total = total + factor_in(self.l1, x.dtype) * sum_abs(x)
            if self.l2:
                total = total + factor_in(self.l2, x.dtype) * sum_squares(x)
        return to_dtype(total, x.dtype)

    def gradient(self, x: np.ndarray) -> FloatArray:
        w = as_work(x)
        with np.errstate(over="ignore"):
            # the terms added to +0 in this order, in place: sign(±0) is +0, so a -0 in x
            # still gives +0 (+0 + -0), as zeros + l1·sign(x) + 2·l2·x does
            if self.l1:
                g = np.sign(w)
                g *= factor_in(self.l1, x.dtype)
            else:
                g = np.zeros_like(w)
            if self.l2:
                g += (2 * factor_in(self.l2, x.dtype)) * w
        return to_dtype(g, x.dtype)

    def params(self) -> dict[str, Any]:
        return {"l1": self.l1, "l2": self.l2}


@dataclass(frozen=True)
class Orthogonal(Regularizer):
    """Mean absolute cosine between distinct rows (or columns) of a rank-2 tensor.

    With ``eps = 1e-7`` and mode ``"rows"``::

        V = W · min(1/‖w_i‖, 1/eps)         (each row scaled to unit norm; zero rows stay 0)
        P = V Vᵀ,  n = rows
        penalty = factor · 0.5 · Σ_{i≠j} |P_ij| / (n(n−1)/2)

    Mode ``"columns"`` does the same on ``Wᵀ``.  Gradient, with
    ``c = factor / (n(n−1)/2)``, ``G_P = ½·c·sign(P)`` off the diagonal and 0 on it::

        G_V = (G_P + G_Pᵀ)·V = c·sign(P)·V      (P = V Vᵀ is symmetric)
        G_w_i = s_i (G_v_i − (G_v_i·v_i) v_i)   where the row was normalised, s_i = 1/‖w_i‖
        G_w_i = G_v_i / eps                    where the norm was clamped (‖w_i‖ ≤ eps)

    Cost, for ``n`` rows of ``d`` columns: ``P`` is never held whole.  Its rows are formed
    ``ORTHOGONAL_BLOCK_ELEMENTS // n`` at a time (memory O(n·d + block), time O(n²·d),
    the same sums as the whole matrix).  With ``d = 1`` ``P`` has rank one,
    ``|P_ij| = |v_i|·|v_j|``, and both sums are exact in O(n)::

        Σ_{i≠j} |P_ij| = Σ_i |v_i| (S − |v_i|),   (sign(P)·V)_i = sign(v_i) (S − |v_i|),
        S = Σ_j |v_j|

    (for ``d ≥ 2`` no such identity holds for the absolute values: ``‖V Vᵀ‖`` through the
    d×d ``VᵀV`` is exact for the Frobenius norm only, which is not Keras's penalty).

    With one row (or column) there are no pairs: Keras divides 0 by 0 and returns
    NaN; this service returns 0 (and a zero gradient).

    >>> float(Orthogonal(1.0).penalty(np.array([[1.0, 0.0], [1.0, 1.0]])))
    0.7071067811865475
    >>> float(Orthogonal(1.0).penalty(np.array([[2.0], [-3.0], [0.0]])))  # one pair of three
    0.3333333333333333
    """

    factor: float = 0.01
    mode: str = "rows"

    kind: ClassVar[str] = "orthogonal"
    keras_class: ClassVar[str] = "OrthogonalRegularizer"
    defaults: ClassVar[dict[str, Any]] = {"factor": 0.01, "mode": "rows"}
    formula: ClassVar[str] = (
        "factor * mean over pairs i<j of |cos(angle(w_i, w_j))|, rows or columns of a rank-2 tensor"
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "factor", non_negative("factor", self.factor))
        if self.mode not in ("rows", "columns"):
            raise SpecError(
                f"mode must be 'rows' or 'columns', got {shown(self.mode)}", field="mode"
            )

    def _oriented(self, x: np.ndarray) -> FloatArray:
        if x.ndim != 2:
            raise ShapeError(
                f"the orthogonal regularizer takes a rank-2 tensor, got rank {x.ndim} "
                f"(shape {list(x.shape)}); reshape it to (rows, columns) first",
                field="tensor",
            )
        w = as_work(x)
        return w if self.mode == "rows" else w.T

    def _normalised(self, w: FloatArray) -> tuple[FloatArray, FloatArray, np.ndarray]:
        norms = np.sqrt(np.einsum("ij,ij->i", w, w))
        clamped = norms <= ORTHOGONAL_EPSILON
        scale = 1 / np.where(clamped, w.dtype.type(ORTHOGONAL_EPSILON), norms)
        return w * scale[:, None], scale, clamped

    def penalty(self, x: np.ndarray) -> np.floating[Any]:
        w = self._oriented(x)
        n = w.shape[0]
        if n < 2:
            return to_dtype(w.dtype.type(0), x.dtype)
        v, _, _ = self._normalised(w)
        if v.shape[1] == 1:
            a = np.abs(v[:, 0]).astype(np.float64)
            off_diagonal = w.dtype.type(a @ (a.sum() - a))
        else:
            off_diagonal = w.dtype.type(0)
            for rows, p in _gram_blocks(v):
                p = np.abs(p, out=p)
                p[np.arange(len(p)), rows] = 0
                off_diagonal += p.sum()
        pairs = n * (n - 1) / 2
        value = factor_in(self.factor, x.dtype) * w.dtype.type(0.5) * off_diagonal / w.dtype.type(pairs)
        return to_dtype(value, x.dtype)

    def gradient(self, x: np.ndarray) -> FloatArray:
        w = self._oriented(x)
        n = w.shape[0]
        if n < 2:
            g = np.zeros_like(w)
        else:
            v, scale, clamped = self._normalised(w)
            c = factor_in(self.factor, x.dtype) / w.dtype.type(n * (n - 1) / 2)
            if v.shape[1] == 1:
                a = np.abs(v).astype(np.float64)
                g_v = c * (np.sign(v) * (a.sum() - a)).astype(w.dtype)
            else:
                g_v = np.empty_like(v)
                for rows, p in _gram_blocks(v):
                    sign = np.sign(p, out=p)
                    sign[np.arange(len(sign)), rows] = 0
                    g_v[rows] = c * (sign @ v)
            radial = np.einsum("ij,ij->i", g_v, v)
            g = scale[:, None] * np.where(clamped[:, None], g_v, g_v - radial[:, None] * v)
        return to_dtype(g if self.mode == "rows" else g.T, x.dtype)

    def params(self) -> dict[str, Any]:
        return {"factor": self.factor, "mode": self.mode}


#: Elements of ``V Vᵀ`` the orthogonal regularizer forms at once (32 MiB of float64).
ORTHOGONAL_BLOCK_ELEMENTS = 1 << 22


def _gram_blocks(v: FloatArray) -> Iterator[tuple[np.ndarray, FloatArray]]:
    """``(rows, V[rows] Vᵀ)`` for consecutive row ranges covering ``V``, each product at
    most ``ORTHOGONAL_BLOCK_ELEMENTS`` (one row at least); one block when ``V Vᵀ`` fits."""
    n = v.shape[0]
    step = max(1, ORTHOGONAL_BLOCK_ELEMENTS // n)
    for start in range(0, n, step):
        rows = np.arange(start, min(start + step, n))
        yield rows, v[rows] @ v.T


#: One registry: wire tag -> class.
REGISTRY: dict[str, type[Regularizer]] = {cls.kind: cls for cls in (L1, L2, L1L2, Orthogonal)}

#: Keras identifier strings and what they build (Keras 3 defaults; ``l1_l2`` is tf.keras
#: 2.x's).  Keras 3 also takes its class names as identifiers (``"L2"`` is ``L2(0.01)``).
IDENTIFIERS: dict[str, Regularizer] = {
    "l1": L1(),
    "l2": L2(),
    "l1l2": L1L2(),
    "l1_l2": L1L2(l1=0.01, l2=0.01),
    "orthogonal_regularizer": Orthogonal(),
    "L1": L1(),
    "L2": L2(),
    "L1L2": L1L2(),
    "OrthogonalRegularizer": Orthogonal(),
}

# Keras class names (and their snake-case forms) -> wire tag.
_KERAS_CLASSES: dict[str, str] = {
    "L1": "l1",
    "l1": "l1",
    "L2": "l2",
    "l2": "l2",
    "L1L2": "l1l2",
    "l1l2": "l1l2",
    "l1_l2": "l1l2",
    "OrthogonalRegularizer": "orthogonal",
    "orthogonal_regularizer": "orthogonal",
}
_KERAS_ENVELOPE_KEYS = {"class_name", "config", "module", "registered_name"}


#: What Keras's constructors make of a ``None`` factor: ``L1(None)``/``L2(None)`` take the
#: default 0.01, ``L1L2(None, None)`` is 0 (``OrthogonalRegularizer`` refuses it).
_NONE_MEANS: dict[str, dict[str, float]] = {
    "l1": {"l1": 0.01},
    "l2": {"l2": 0.01},
    "l1l2": {"l1": 0.0, "l2": 0.0},
}


def _build(kind: str, params: Mapping[str, Any], where: str) -> Regularizer:
    cls = REGISTRY[kind]
    unknown = sorted(set(params) - set(cls.defaults))
    if unknown:
        raise SpecError(
            f"{where}: unknown parameter {shown(unknown[0])} for {kind}; "
            f"expected {', '.join(cls.defaults)}",
            field=unknown[0],
        )
    none_means = _NONE_MEANS.get(kind, {})
    return cls(**{k: none_means[k] if v is None and k in none_means else v for k, v in params.items()})


def get(spec: str | Mapping[str, Any] | Regularizer) -> Regularizer:
    """Build a regularizer from an identifier, a tagged dict or a Keras serialized dict."""
    if isinstance(spec, Regularizer):
        return spec
    if isinstance(spec, str):
        if spec in IDENTIFIERS:
            return IDENTIFIERS[spec]
        raise SpecError(
            f"unknown regularizer {shown(spec)}; expected one of {', '.join(IDENTIFIERS)}",
            field="regularizer",
        )
    if not isinstance(spec, Mapping):
        raise SpecError(
            f"a regularizer is a string or an object, got {type(spec).__name__}",
            field="regularizer",
        )
    if "type" in spec:
        kind = spec["type"]
        if not isinstance(kind, str) or kind not in REGISTRY:
            raise SpecError(
                f"unknown regularizer type {shown(kind)}; expected one of {', '.join(REGISTRY)}",
                field="type",
            )
        return _build(kind, {k: v for k, v in spec.items() if k != "type"}, kind)
    if "class_name" in spec:
        extra = sorted(set(spec) - _KERAS_ENVELOPE_KEYS)
        if extra:
            raise SpecError(
                f"unknown key {shown(extra[0])} in a Keras regularizer; "
                "expected class_name, config, module, registered_name",
                field=extra[0],
            )
        name = spec["class_name"]
        if not isinstance(name, str) or name not in _KERAS_CLASSES:
            raise SpecError(
                f"unknown Keras regularizer class {shown(name)}; expected one of "
                "L1, L2, L1L2, OrthogonalRegularizer (or their snake_case names)",
                field="class_name",
            )
        config = spec.get("config") or {}
        if not isinstance(config, Mapping):
            raise SpecError("config must be an object", field="config")
        return _build(_KERAS_CLASSES[name], config, str(name))
    raise SpecError(
        "a regularizer object needs 'type' (e.g. {\"type\": \"l1\", \"l1\": 0.01}) "
        "or 'class_name' (Keras serialized form)",
        field="regularizer",
    )


@dataclass(frozen=True)
class PenaltiesResult:
    """``penalties[name]`` of each weight, their ``total`` and ``gradients[name]``."""

    penalties: dict[str, np.floating[Any]]
    total: np.floating[Any]
    gradients: dict[str, FloatArray] | None


def penalties(
    weights: Mapping[str, tuple[Regularizer, np.ndarray]], *, return_gradients: bool = True
) -> PenaltiesResult:
    """The penalties of named weights (a model's ``kernel_regularizer``/``bias_regularizer``
    terms), their total and each gradient.

    Each penalty is in its tensor's dtype; the total is summed in the order given, in
    the widest dtype present (as Keras adds up ``model.losses``).  A value that is not
    finite in its dtype raises :class:`~service.core.errors.NonFiniteError`.

    >>> r = penalties({"dense/kernel": (L1(0.5), np.ones((2, 2))), "dense/bias": (L2(0.5), np.ones(2))})
    >>> {k: float(v) for k, v in r.penalties.items()}, float(r.total)
    ({'dense/kernel': 2.0, 'dense/bias': 1.0}, 3.0)
    """
    values = {
        name: finish({name: reg.penalty(x)}, x.dtype, prefix="penalties.")[name]
        for name, (reg, x) in weights.items()
    }
    dtype = result_dtype(*(x for _, x in weights.values()))
    summed = finish({"total": total(values, np.zeros((), dtype))}, dtype)["total"]
    gradients = None
    if return_gradients:
        gradients = {
            name: finish({name: reg.gradient(x)}, x.dtype, prefix="gradients.")[name]
            for name, (reg, x) in weights.items()
        }
    return PenaltiesResult(penalties=values, total=summed, gradients=gradients)


def describe() -> list[dict[str, Any]]:
    """What the service supports, for ``GET /v1/regularizers``."""
    aliases = {kind: [i for i, r in IDENTIFIERS.items() if r.kind == kind] for kind in REGISTRY}
    return [
        {
            "type": cls.kind,
            "keras_class": cls.keras_class,
            "identifiers": aliases[cls.kind],
            "parameters": dict(cls.defaults),
            "formula": cls.formula,
        }
        for cls in REGISTRY.values()
    ]
