"""Central-difference gradient checks in float64, shared by every test layer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def numeric_gradient(
    f: Callable[[np.ndarray], Any], x: np.ndarray, *, step: float = 1e-6
) -> np.ndarray:
    """``∂f/∂x`` by central differences, element by element, in float64.

    ``f`` takes an array shaped like ``x`` and returns a scalar.
    """
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        orig = flat[i]
        flat[i] = orig + step
        hi = float(f(x))
        flat[i] = orig - step
        lo = float(f(x))
        flat[i] = orig
        gflat[i] = (hi - lo) / (2 * step)
    return grad


def assert_gradient(
    f: Callable[[np.ndarray], Any],
    analytic: np.ndarray,
    x: np.ndarray,
    *,
    step: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-7,
) -> None:
    """Assert that ``analytic`` equals the central-difference gradient of ``f`` at ``x``."""
    numeric = numeric_gradient(f, x, step=step)
    assert analytic.shape == numeric.shape, (analytic.shape, numeric.shape)
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol)


def away_from_kinks(x: np.ndarray, kinks: tuple[float, ...] = (0.0,), margin: float = 1e-3) -> np.ndarray:
    """Nudge elements that sit within ``margin`` of a kink, so differences do not straddle it."""
    x = np.array(x, dtype=np.float64)
    for k in kinks:
        near = np.abs(x - k) < margin
        x[near] = k + np.where(x[near] >= k, margin, -margin) * 2
    return x
