"""The orthogonal regularizer's cheaper exact forms: row blocks of ``V Vᵀ`` and the
rank-one (one column) sums, against the whole-matrix formula, central differences and
Keras (``vectors/orthogonal_forms.json``, written by ``generate_orthogonal.py``)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from service.core import regularizers as R
from tests.gradcheck import assert_gradient
from tests.reference.vectors import VECTORS, tensor

RNG = np.random.default_rng(20261130)
KERAS = json.loads((VECTORS / "orthogonal_forms.json").read_text())["cases"]


def whole_matrix(x: np.ndarray, factor: float, mode: str = "rows") -> tuple[float, np.ndarray]:
    """The definition, with the whole n×n matrix, in float64 (penalty and gradient)."""
    w = np.asarray(x, np.float64) if mode == "rows" else np.asarray(x, np.float64).T
    norms = np.linalg.norm(w, axis=1)
    clamped = norms <= R.ORTHOGONAL_EPSILON
    scale = 1 / np.where(clamped, R.ORTHOGONAL_EPSILON, norms)
    v = w * scale[:, None]
    n = len(v)
    p = v @ v.T
    off = 1 - np.eye(n)
    c = factor / (n * (n - 1) / 2)
    penalty = c * 0.5 * np.sum(np.abs(p) * off)
    g_v = c * (np.sign(p) * off) @ v
    radial = np.sum(g_v * v, axis=1)
    g = scale[:, None] * np.where(clamped[:, None], g_v, g_v - radial[:, None] * v)
    return penalty, g if mode == "rows" else g.T


@pytest.mark.parametrize("case", KERAS, ids=[c["id"] for c in KERAS])
def test_matches_keras(case: dict[str, Any]) -> None:
    x = tensor(case["request"]["tensor"])
    reg = R.get(case["request"]["regularizer"])
    expected = tensor(case["expected"]["gradient"])
    assert float(reg.penalty(x)) == pytest.approx(case["expected"]["penalty"], rel=1e-5)
    np.testing.assert_allclose(reg.gradient(x), expected, rtol=1e-5, atol=1e-6 * gradient_scale(x, reg))


def gradient_scale(x: np.ndarray, reg: R.Orthogonal) -> float:
    """The size of a gradient element before cancellation: ``|G_v| ≤ 2·factor/n`` times
    ``1/‖w_i‖``.  With one column a normalised row's gradient is exactly 0, and Keras's
    float32 ``G_v − (G_v·v)v`` leaves rounding noise of about an ulp of that size."""
    w = x if reg.mode == "rows" else x.T
    norms = np.linalg.norm(w.astype(np.float64), axis=1)
    inverse = 1 / np.maximum(norms, R.ORTHOGONAL_EPSILON)
    return 2 * reg.factor / len(w) * float(inverse.max())


def test_the_keras_cases_take_the_cheap_paths() -> None:
    shapes = {c["id"]: c["request"]["tensor"]["shape"] for c in KERAS}
    assert shapes["blocked_rows"][0] ** 2 > R.ORTHOGONAL_BLOCK_ELEMENTS  # more than one block
    assert shapes["blocked_columns"][1] ** 2 > R.ORTHOGONAL_BLOCK_ELEMENTS
    assert shapes["rank_one_rows_long"][1] == 1


@pytest.mark.parametrize("mode", ["rows", "columns"])
@pytest.mark.parametrize("block", [1, 7, 10**9])
def test_row_blocks_equal_the_whole_matrix(mode: str, block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(R, "ORTHOGONAL_BLOCK_ELEMENTS", block * 13)
    x = RNG.normal(size=(13, 4) if mode == "rows" else (4, 13))
    x[(2, 5) if mode == "rows" else slice(None), 5 if mode == "columns" else slice(None)] *= 1e-9
    penalty, gradient = whole_matrix(x, 0.7, mode)
    reg = R.Orthogonal(0.7, mode)
    assert float(reg.penalty(x)) == pytest.approx(penalty, rel=1e-13)
    np.testing.assert_allclose(reg.gradient(x), gradient, rtol=1e-12, atol=1e-14 * np.abs(gradient).max())


def test_blocked_gradient_is_the_central_difference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(R, "ORTHOGONAL_BLOCK_ELEMENTS", 2 * 9)  # blocks of 2 rows
    x = RNG.normal(size=(9, 3))
    reg = R.Orthogonal(0.4)
    assert_gradient(reg.penalty, reg.gradient(x), x, rtol=1e-6, atol=1e-9)


def test_rank_one_equals_the_whole_matrix() -> None:
    x = RNG.normal(size=(50, 1))
    x[[3, 9]] = 0.0
    x[[4, 11]] = [[4e-8], [-6e-8]]  # clamped rows: v = w / eps
    for mode, data in (("rows", x), ("columns", x.T)):
        penalty, gradient = whole_matrix(data, 0.3, mode)
        reg = R.Orthogonal(0.3, mode)
        assert float(reg.penalty(data)) == pytest.approx(penalty, rel=1e-13)
        np.testing.assert_allclose(reg.gradient(data), gradient, rtol=1e-12, atol=1e-12)


def test_rank_one_gradient_is_the_central_difference() -> None:
    # Normalised rows are ±1 whatever their size (zero gradient); clamped rows scale as
    # w / eps and carry all of it.  A step far below eps stays on each row's side.
    x = np.array([[3.0], [-2.0], [5e-8], [-3e-8], [2e-8], [0.5]])
    reg = R.Orthogonal(0.6)
    g = reg.gradient(x)
    assert np.count_nonzero(g) == 3
    assert_gradient(reg.penalty, g, x, step=1e-11, rtol=1e-6, atol=1e-3)


def test_rank_one_is_linear_in_n_memory() -> None:
    """A million rows of one column: the O(n) form (the whole matrix would be 7.3 TiB)."""
    x = RNG.normal(size=(10**6, 1)).astype(np.float32)
    x[::2] = np.abs(x[::2])
    x[1::2] = -np.abs(x[1::2])  # half positive, half negative: |cos| = 1 for every pair
    reg = R.Orthogonal(1.0)
    assert float(reg.penalty(x)) == pytest.approx(1.0, rel=1e-6)
    # the exact gradient is 0; float32 leaves rounding noise (see gradient_scale)
    np.testing.assert_allclose(reg.gradient(x), 0.0, atol=1e-6 * gradient_scale(x, reg))


def test_rank_one_mixed_signs_closed_form() -> None:
    # rows 2, -3, 0: normalised 1, -1, 0; one pair of three has |cos| = 1
    x = np.array([[2.0], [-3.0], [0.0]])
    assert R.Orthogonal(1.0).penalty(x) == pytest.approx(1 / 3, rel=1e-15)
