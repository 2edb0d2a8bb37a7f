"""Shared pieces of the activation formulas: signatures and numerically stable helpers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from service.core.numeric import FloatArray


def const(z: FloatArray, v: float) -> Any:
    """A Python number as a scalar of ``z``'s dtype (as TF converts constants)."""
    return z.dtype.type(v)


def stable_sigmoid(z: FloatArray) -> FloatArray:
    """``1/(1 + exp(−z))`` via ``e = exp(−|z|)``: never overflows."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_prime(z: FloatArray) -> FloatArray:
    """``σ(z)(1 − σ(z)) = e/(1 + e)²`` with ``e = exp(−|z|)``: accurate where ``σ ≈ 1``."""
    e = np.exp(-np.abs(z))
    return e / ((1 + e) * (1 + e))


def sech2(z: FloatArray) -> FloatArray:
    """``1 − tanh(z)² = 4e/(1 + e)²`` with ``e = exp(−2|z|)``: accurate where ``tanh ≈ ±1``."""
    e = np.exp(-2 * np.abs(z))
    return 4 * e / ((1 + e) * (1 + e))


def stable_softplus(z: FloatArray) -> FloatArray:
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def indicator(cond: np.ndarray, z: FloatArray) -> FloatArray:
    return cond.astype(z.dtype)


P = Mapping[str, Any]
Forward = Callable[[FloatArray, P], FloatArray]
Derivative = Callable[[FloatArray, FloatArray, P], FloatArray]
Vjp = Callable[[FloatArray, FloatArray, FloatArray, P], FloatArray]
