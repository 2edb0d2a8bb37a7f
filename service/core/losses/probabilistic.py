"""Probabilistic losses: crossentropies (plain, focal, sparse, generalized), KL divergence
and Poisson; each value beside its vjp.  ``q = clip(·, ε, 1 − ε)``; TF's clip passes the
gradient at a tie, so an element exactly at a bound has its full gradient.

* ``binary_crossentropy``  ``mean(−t·log q − (1 − t)·log(1 − q))``; logits:
  ``mean(max(z, 0) − z·t + log1p(exp(−|z|)))``
* ``binary_focal_crossentropy``  ``mean(w·(1 − p_t)^γ·bce)``, ``p_t = t·p + (1 − t)(1 − p)``,
  ``w = t·α + (1 − t)(1 − α)`` if ``apply_class_balancing`` else 1.  With ``from_logits``,
  ``p = sigmoid(z)`` and ``bce`` is the logits form (Keras's sigmoid output carries its
  logits into the crossentropy).
* ``categorical_crossentropy``  ``−Σ t·log q``, ``q = clip(p/Σp)``; logits
  ``Σ t·(logsumexp(z) − z)`` with gradient ``softmax(z)·Σt − t`` (the derivative of the value)
* ``categorical_focal_crossentropy``  ``Σ α·(1 − q)^γ·(−t·log q)``, ``q = clip(p/Σp)``,
  ``p = softmax(z)`` with ``from_logits``
* ``sparse_categorical_crossentropy``  ``log Σq − log q_y`` (``q = clip(p)``, as TF's
  ``sparse_softmax_cross_entropy`` of ``log q``); logits ``logsumexp(z) − z_y``;
  ``ignore_class`` drops those samples (value 0, and the mean is over the others)
* ``categorical_generalized_cross_entropy``  ``(1 − p_y^q)/q``
* ``kl_divergence``  ``Σ t'·log(t'/p')``, ``t' = clip(t, ε, 1)``, ``p' = clip(p, ε, 1)``
* ``poisson``  ``mean(p − t·log(p + ε))``

Label smoothing: binary ``t·(1 − ls) + ls/2``; categorical ``t·(1 − ls) + ls/K``.

    >>> t = np.array([[0.0, 1.0]]); p = np.array([[0.25, 0.75]])
    >>> round(float(cce(t, p, {"from_logits": False, "label_smoothing": 0.0})[0]), 6)
    0.287682
"""

from __future__ import annotations

import numpy as np

from service.core.errors import NonFiniteError, ShapeError
from service.core.losses.base import (
    EPSILON,
    P,
    c,
    clip_probs,
    mean_last,
    sigmoid,
    sigmoid_prime,
    softmax,
    softmax_vjp,
    spread,
)
from service.core.numeric import FloatArray

# --------------------------------------------------------------------------- binary


def _smoothed_binary(t: FloatArray, params: P) -> FloatArray:
    ls = params["label_smoothing"]
    return t * c(t, 1.0 - ls) + c(t, 0.5 * ls) if ls else t


def _bce_elem(t: FloatArray, p: FloatArray, logits: bool) -> FloatArray:
    if logits:
        return np.maximum(p, 0) - p * t + np.log1p(np.exp(-np.abs(p)))
    q, _ = clip_probs(p)
    return -(t * np.log(q) + (1 - t) * np.log(1 - q))


def _bce_elem_d(t: FloatArray, p: FloatArray, logits: bool) -> FloatArray:
    if logits:
        return sigmoid(p) - t
    q, passes = clip_probs(p)
    return passes * ((1 - t) / (1 - q) - t / q)


def bce(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    return mean_last(_bce_elem(_smoothed_binary(t, params), p, params["from_logits"]))


def bce_vjp(t: FloatArray, p: FloatArray, g: FloatArray, params: P) -> FloatArray:
    return spread(g, _bce_elem_d(_smoothed_binary(t, params), p, params["from_logits"]))


def _focal_weight(base: FloatArray, gamma: float) -> tuple[FloatArray, FloatArray]:
    """``base^γ`` and its derivative ``γ·base^(γ−1)`` (0 for γ = 0; TF's pow rule otherwise)."""
    g = c(base, gamma)
    if gamma == 0:
        return np.ones_like(base), np.zeros_like(base)
    with np.errstate(divide="ignore"):
        return base**g, g * base ** (g - 1)


def _bfce_terms(t: FloatArray, p: FloatArray, params: P) -> tuple[FloatArray, ...]:
    t = _smoothed_binary(t, params)
    logits = params["from_logits"]
    prob = sigmoid(p) if logits else p
    dprob = sigmoid_prime(p) if logits else np.ones_like(p)
    p_t = t * prob + (1 - t) * (1 - prob)
    focal, dfocal = _focal_weight(1 - p_t, params["gamma"])
    alpha = c(p, params["alpha"])
    w = t * alpha + (1 - t) * (1 - alpha) if params["apply_class_balancing"] else np.ones_like(p)
    return t, prob, dprob, focal, dfocal, w, _bce_elem(t, p, logits), _bce_elem_d(t, p, logits)


def bfce(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    _, _, _, focal, _, w, b, _ = _bfce_terms(t, p, params)
    return mean_last(w * focal * b)


def bfce_vjp(t: FloatArray, p: FloatArray, g: FloatArray, params: P) -> FloatArray:
    ts, _, dprob, focal, dfocal, w, b, db = _bfce_terms(t, p, params)
    d_focal = -dfocal * (2 * ts - 1) * dprob  # ∂(1 − p_t)^γ/∂p
    return spread(g, w * (np.where(d_focal != 0, d_focal * b, c(p, 0)) + focal * db))


# --------------------------------------------------------------------------- categorical


def _smoothed_categorical(t: FloatArray, params: P) -> FloatArray:
    ls = params["label_smoothing"]
    return t * c(t, 1.0 - ls) + c(t, ls) / c(t, t.shape[-1]) if ls else t


def _row_sums(p: FloatArray, name: str) -> FloatArray:
    s = np.sum(p, axis=-1, keepdims=True)
    if np.any(s == 0):
        raise NonFiniteError(
            f"{name}: a row of y_pred sums to 0, so it cannot be normalised to "
            "probabilities (Keras returns NaN); pass probabilities, or logits with from_logits=true",
            field="y_pred",
        )
    return s


def _normalised_vjp(p: FloatArray, s: FloatArray, a: FloatArray, passes: FloatArray) -> FloatArray:
    """The vjp of ``r = p/Σp`` for ``a = ∂loss/∂r`` (0 where the clip holds)."""
    r_in = np.where(passes > 0, p / s, c(p, 0))  # r only where a ≠ 0 (it may be ±inf elsewhere)
    return (a - np.sum(a * r_in, axis=-1, keepdims=True)) / s


def _logsumexp_shift(z: FloatArray) -> tuple[FloatArray, FloatArray]:
    shifted = z - np.max(z, axis=-1, keepdims=True)
    return shifted, np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def cce(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    t = _smoothed_categorical(t, params)
    if params["from_logits"]:
        shifted, lse = _logsumexp_shift(p)
        return np.sum(t * (lse - shifted), axis=-1)
    q, _ = clip_probs(p / _row_sums(p, "categorical_crossentropy"))
    return -np.sum(t * np.log(q), axis=-1)


def cce_vjp(t: FloatArray, p: FloatArray, g: FloatArray, params: P) -> FloatArray:
    t = _smoothed_categorical(t, params)
    g = g[..., None]
    if params["from_logits"]:
        return g * (softmax(p) * np.sum(t, axis=-1, keepdims=True) - t)
    s = _row_sums(p, "categorical_crossentropy")
    q, passes = clip_probs(p / s)
    a = np.where(passes > 0, -t / q, c(p, 0))
    return g * _normalised_vjp(p, s, a, passes)


def _cfce_parts(t: FloatArray, p: FloatArray, params: P) -> tuple[FloatArray, ...]:
    t = _smoothed_categorical(t, params)
    prob = softmax(p) if params["from_logits"] else p
    s = _row_sums(prob, "categorical_focal_crossentropy")
    q, passes = clip_probs(prob / s)
    mod, dmod = _focal_weight(1 - q, params["gamma"])
    return t, prob, s, q, passes, mod, dmod


def cfce(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    t, _, _, q, _, mod, _ = _cfce_parts(t, p, params)
    return np.sum(mod * c(p, params["alpha"]) * (-t * np.log(q)), axis=-1)


def cfce_vjp(t: FloatArray, p: FloatArray, g: FloatArray, params: P) -> FloatArray:
    t, prob, s, q, passes, mod, dmod = _cfce_parts(t, p, params)
    alpha = c(p, params["alpha"])
    ce = -t * np.log(q)
    d_q = alpha * (np.where(dmod != 0, -dmod * ce, c(p, 0)) - mod * t / q)
    a = np.where(passes > 0, d_q, c(p, 0))
    d_prob = g[..., None] * _normalised_vjp(prob, s, a, passes)
    return softmax_vjp(prob, d_prob) if params["from_logits"] else d_prob


# --------------------------------------------------------------------------- sparse labels


def _labels(t: FloatArray, k: int, name: str) -> np.ndarray:
    if not np.all(t == np.floor(t)) or np.any(t < 0) or np.any(t >= k):
        bad = t[(t != np.floor(t)) | (t < 0) | (t >= k)].flat[0]
        raise ShapeError(
            f"{name}: y_true holds class indices, integers in [0, {k - 1}] for {k} classes "
            f"(the last axis of y_pred), got {float(bad)!r}",
            field="y_true",
        )
    return t.astype(np.intp)


def _ignored(t: FloatArray, params: P) -> np.ndarray | None:
    ic = params.get("ignore_class")
    return None if ic is None else t == ic


def scce_mask(t: FloatArray, p: FloatArray, params: P) -> np.ndarray | None:
    """Where a sample counts (``y_true ≠ ignore_class``), or None without ``ignore_class``."""
    ignored = _ignored(t, params)
    return None if ignored is None else ~ignored


def _scce_inputs(t: FloatArray, p: FloatArray, params: P) -> tuple[np.ndarray, FloatArray, np.ndarray | None]:
    ignored = _ignored(t, params)
    if ignored is not None:
        t = np.where(ignored, c(t, 0), t)
        p = np.where(ignored[..., None], c(p, 0), p)
    return _labels(t, p.shape[-1], "sparse_categorical_crossentropy"), p, ignored


def _take(x: FloatArray, y: np.ndarray) -> FloatArray:
    return np.take_along_axis(x, y[..., None], axis=-1)[..., 0]


def scce(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    y, p, ignored = _scce_inputs(t, p, params)
    z = p if params["from_logits"] else np.log(clip_probs(p)[0])
    shifted, lse = _logsumexp_shift(z)
    res = lse[..., 0] - _take(shifted, y)
    return res if ignored is None else np.where(ignored, c(p, 0), res)


def scce_vjp(t: FloatArray, p: FloatArray, g: FloatArray, params: P) -> FloatArray:
    y, pm, ignored = _scce_inputs(t, p, params)
    if ignored is not None:
        g = np.where(ignored, c(p, 0), g)
    onehot = np.zeros_like(pm)
    np.put_along_axis(onehot, y[..., None], c(p, 1), axis=-1)
    if params["from_logits"]:
        d = softmax(pm) - onehot
    else:
        q, passes = clip_probs(pm)
        d = passes * (1 / np.sum(q, axis=-1, keepdims=True) - onehot / q)
    d = g[..., None] * d
    return d if ignored is None else np.where(ignored[..., None], c(p, 0), d)


def cgce(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    py = _take(p, _labels(t, p.shape[-1], "categorical_generalized_cross_entropy"))
    if np.any(py < 0):
        raise NonFiniteError(
            "categorical_generalized_cross_entropy: y_pred at the true class must be >= 0 "
            "(a negative probability to the power q is NaN)",
            field="y_pred",
        )
    q = c(p, params["q"])
    return (1 - py**q) / q


def cgce_vjp(t: FloatArray, p: FloatArray, g: FloatArray, params: P) -> FloatArray:
    y = _labels(t, p.shape[-1], "categorical_generalized_cross_entropy")
    py = _take(p, y)
    if np.any(py <= 0):
        raise NonFiniteError(
            "categorical_generalized_cross_entropy: y_pred at the true class must be > 0 for "
            "the gradient (-p^(q-1) is infinite at 0)",
            field="y_pred",
        )
    q = c(p, params["q"])
    out = np.zeros_like(p)
    np.put_along_axis(out, y[..., None], (-g * py ** (q - 1))[..., None], axis=-1)
    return out


# --------------------------------------------------------------------------- kld, poisson


def kld(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    one = c(p, 1)
    tc = np.clip(t, c(p, EPSILON), one)
    pc = np.clip(p, c(p, EPSILON), one)
    return np.sum(tc * np.log(tc / pc), axis=-1)


def kld_vjp(t: FloatArray, p: FloatArray, g: FloatArray, params: P) -> FloatArray:
    one, eps = c(p, 1), c(p, EPSILON)
    tc = np.clip(t, eps, one)
    pc = np.clip(p, eps, one)
    return g[..., None] * -(tc / pc) * ((p >= eps) & (p <= one))


def _poisson_log(p: FloatArray) -> FloatArray:
    shifted = p + c(p, EPSILON)
    if np.any(shifted <= 0):
        raise NonFiniteError(
            f"poisson: y_pred must be > -{EPSILON} (a rate; log(y_pred + 1e-7) is not finite "
            f"below), got {float(p[shifted <= 0].flat[0])!r}",
            field="y_pred",
        )
    return shifted


def poisson(t: FloatArray, p: FloatArray, params: P) -> FloatArray:
    return mean_last(p - t * np.log(_poisson_log(p)))


def poisson_vjp(t: FloatArray, p: FloatArray, g: FloatArray, params: P) -> FloatArray:
    return spread(g, 1 - t / _poisson_log(p))
