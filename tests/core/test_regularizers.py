"""Regularizers: closed forms, central-difference gradients, specs and their errors."""

from __future__ import annotations

import numpy as np
import pytest

from service.core import regularizers as R
from service.core.errors import ShapeError, SpecError
from service.core.numeric import sum_abs, sum_squares
from tests.gradcheck import assert_gradient, away_from_kinks, numeric_gradient

RNG = np.random.default_rng(20261121)

ALL = [
    R.L1(0.1),
    R.L2(0.1),
    R.L1L2(0.05, 0.2),
    R.L1L2(0.0, 0.3),
    R.Orthogonal(0.5, "rows"),
    R.Orthogonal(0.5, "columns"),
]


# --- closed forms ---------------------------------------------------------------------------


def test_seed_l1_on_threes_is_4_8() -> None:
    x = np.ones((2, 2, 4), np.float32) * 3
    value = R.get({"type": "l1", "l1": 0.1}).penalty(x)
    assert value.dtype == np.float32
    assert value == np.float32(4.8)


def test_factor_multiplies_the_finished_sum() -> None:
    x = np.array([1.0, -2.0, 0.5], np.float32)
    assert R.L1(0.1).penalty(x) == np.float32(0.1) * np.float32(3.5)
    assert R.L2(0.1).penalty(x) == np.float32(0.1) * np.float32(5.25)


def test_l1l2_is_the_sum_and_skips_zero_factors() -> None:
    x = np.array([[1.0, -2.0], [3.0, 0.0]])
    assert R.L1L2(0.1, 0.2).penalty(x) == pytest.approx(0.1 * 6 + 0.2 * 14, rel=1e-15)
    assert R.L1L2(0.0, 0.0).penalty(x) == 0.0
    big = np.array([1e30], np.float32)  # squares overflow float32, but l2 = 0 skips them
    assert R.L1L2(0.5, 0.0).penalty(big) == np.float32(5e29)


def test_gradient_conventions() -> None:
    x = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_array_equal(R.L1(0.5).gradient(x), [-0.5, 0.0, 0.5])  # sign(0) = 0
    np.testing.assert_array_equal(R.L2(0.5).gradient(x), [-2.0, 0.0, 3.0])  # 2·l2·x


def test_float64_keeps_the_exact_factor_float32_rounds_it_like_keras() -> None:
    x = np.ones(10)
    assert R.L1(0.1).penalty(x) == 0.1 * 10  # exact float64 factor
    assert R.L1(0.1).penalty(x.astype(np.float32)) == np.float32(0.1) * np.float32(10)


def test_dtype_is_preserved() -> None:
    for dt in (np.float16, np.float32, np.float64):
        x = RNG.normal(size=(3, 4)).astype(dt)
        for reg in ALL:
            assert reg.penalty(x).dtype == dt
            assert reg.gradient(x).dtype == dt


def test_orthogonal_closed_form() -> None:
    # rows (1,0), (1,1), (0,2): |cos| pairs are 1/√2, 0, 1/√2 -> mean √2/3
    w = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    assert R.Orthogonal(0.3).penalty(w) == pytest.approx(0.3 * np.sqrt(2) / 3, rel=1e-14)
    # columns of the transpose give the same value
    assert R.Orthogonal(0.3, "columns").penalty(w.T) == pytest.approx(0.3 * np.sqrt(2) / 3)


def test_orthogonal_of_orthonormal_rows_is_zero() -> None:
    q, _ = np.linalg.qr(RNG.normal(size=(5, 5)))
    assert R.Orthogonal(1.0).penalty(q) == pytest.approx(0.0, abs=1e-14)


def test_orthogonal_with_one_row_is_zero_not_nan() -> None:
    w = RNG.normal(size=(1, 4))
    assert R.Orthogonal(1.0, "rows").penalty(w) == 0.0
    np.testing.assert_array_equal(R.Orthogonal(1.0, "rows").gradient(w), np.zeros_like(w))
    assert R.Orthogonal(1.0, "columns").penalty(w.T) == 0.0


def test_orthogonal_zero_rows_count_as_orthogonal_and_get_no_gradient() -> None:
    w = np.array([[1.0, 2.0], [0.0, 0.0], [2.0, 1.0]])
    # pairs: (r0,r1)=0, (r0,r2)=4/5, (r1,r2)=0 -> mean 4/15
    assert R.Orthogonal(1.0).penalty(w) == pytest.approx(4 / 15)
    g = R.Orthogonal(1.0).gradient(w)
    np.testing.assert_array_equal(g[1], [0.0, 0.0])
    assert np.all(np.isfinite(g))


def test_orthogonal_rejects_other_ranks() -> None:
    with pytest.raises(ShapeError, match=r"rank-2 tensor, got rank 3 \(shape \[2, 2, 4\]\)"):
        R.Orthogonal().penalty(np.ones((2, 2, 4)))
    with pytest.raises(ShapeError, match="got rank 1"):
        R.Orthogonal().gradient(np.ones(3))


# --- gradients by central differences (float64) ----------------------------------------------


@pytest.mark.parametrize("reg", ALL, ids=lambda r: f"{r.kind}-{r.params()}")
@pytest.mark.parametrize("shape", [(4, 3), (3, 5), (2, 2)])
def test_gradient_matches_central_differences(reg: R.Regularizer, shape: tuple[int, int]) -> None:
    x = away_from_kinks(RNG.normal(size=shape), margin=1e-2)
    assert_gradient(reg.penalty, reg.gradient(x), x, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("reg", ALL[:4], ids=lambda r: f"{r.kind}-{r.params()}")
def test_gradient_matches_central_differences_rank3(reg: R.Regularizer) -> None:
    x = away_from_kinks(RNG.normal(size=(2, 3, 4)), margin=1e-2)
    assert_gradient(reg.penalty, reg.gradient(x), x, rtol=1e-6, atol=1e-9)


def test_orthogonal_gradient_with_a_tiny_row_is_the_clamped_derivative() -> None:
    # A row with norm below eps is scaled by the constant 1/eps: its derivative is linear.
    w = RNG.normal(size=(3, 4))
    w[1] *= 1e-9
    reg = R.Orthogonal(1.0)
    g = reg.gradient(w)
    tiny_step = numeric_gradient(reg.penalty, w, step=1e-13)
    normal_step = numeric_gradient(reg.penalty, w, step=1e-6)
    np.testing.assert_allclose(g[1], tiny_step[1], rtol=1e-5)
    np.testing.assert_allclose(g[[0, 2]], normal_step[[0, 2]], rtol=1e-6, atol=1e-9)


# --- specs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "config"),
    [
        ("l1", {"type": "l1", "l1": 0.01}),
        ("l2", {"type": "l2", "l2": 0.01}),
        ("l1l2", {"type": "l1l2", "l1": 0.0, "l2": 0.0}),
        ("l1_l2", {"type": "l1l2", "l1": 0.01, "l2": 0.01}),
        ("orthogonal_regularizer", {"type": "orthogonal", "factor": 0.01, "mode": "rows"}),
        ("L2", {"type": "l2", "l2": 0.01}),
        ("OrthogonalRegularizer", {"type": "orthogonal", "factor": 0.01, "mode": "rows"}),
        ({"type": "l1"}, {"type": "l1", "l1": 0.01}),
        ({"type": "l1l2", "l2": 0.5}, {"type": "l1l2", "l1": 0.0, "l2": 0.5}),
        ({"type": "orthogonal", "mode": "columns"}, {"type": "orthogonal", "factor": 0.01, "mode": "columns"}),
        ({"class_name": "L2", "config": {"l2": 0.25}}, {"type": "l2", "l2": 0.25}),
        (
            {"module": "keras.regularizers", "class_name": "L1L2", "config": {"l1": 0.1, "l2": 0.2}, "registered_name": None},
            {"type": "l1l2", "l1": 0.1, "l2": 0.2},
        ),
        ({"class_name": "l1_l2", "config": {"l1": 0.1}}, {"type": "l1l2", "l1": 0.1, "l2": 0.0}),
        (
            {"class_name": "OrthogonalRegularizer", "config": {"factor": 0.2, "mode": "columns"}},
            {"type": "orthogonal", "factor": 0.2, "mode": "columns"},
        ),
        ({"class_name": "orthogonal_regularizer", "config": {}}, {"type": "orthogonal", "factor": 0.01, "mode": "rows"}),
    ],
)
def test_spec_forms_and_round_trip(spec: object, config: dict[str, object]) -> None:
    reg = R.get(spec)  # type: ignore[arg-type]
    assert reg.get_config() == config
    assert R.get(reg.get_config()) == reg
    assert R.get(reg.keras_config()) == reg


@pytest.mark.parametrize(
    ("spec", "message", "field"),
    [
        ("l3", "unknown regularizer 'l3'; expected one of l1, l2, l1l2, l1_l2, orthogonal_regularizer, "
         "L1, L2, L1L2, OrthogonalRegularizer", "regularizer"),
        ({"type": "l4"}, "unknown regularizer type 'l4'", "type"),
        ({"type": "l1", "l2": 0.1}, "unknown parameter 'l2' for l1; expected l1", "l2"),
        ({"type": "l1", "l1": -0.1}, "l1 must be finite and >= 0, got -0.1", "l1"),
        ({"type": "l2", "l2": float("nan")}, "l2 must be finite and >= 0, got nan", "l2"),
        ({"type": "l2", "l2": float("inf")}, "l2 must be finite and >= 0, got inf", "l2"),
        ({"type": "l2", "l2": "0.1"}, "l2 must be a number, got '0.1'", "l2"),
        ({"type": "l2", "l2": True}, "l2 must be a number, got True", "l2"),
        ({"type": "orthogonal", "mode": "diagonal"}, "mode must be 'rows' or 'columns', got 'diagonal'", "mode"),
        ({"class_name": "L3", "config": {}}, "unknown Keras regularizer class 'L3'", "class_name"),
        ({"class_name": "L1", "config": {"l1": 0.1}, "extra": 1}, "unknown key 'extra'", "extra"),
        ({"class_name": "L1", "config": [1]}, "config must be an object", "config"),
        ({"l1": 0.1}, "needs 'type'", "regularizer"),
        ({"type": {"l1": 0.1}}, "unknown regularizer type {'l1': 0.1}", "type"),
        ({"type": ["l1"]}, "unknown regularizer type ['l1']", "type"),
        ({"class_name": ["L1"], "config": {}}, "unknown Keras regularizer class ['L1']", "class_name"),
        ({"class_name": {"L1": 1}}, "unknown Keras regularizer class {'L1': 1}", "class_name"),
        ({"type": "l1", "l1": [0.1]}, "l1 must be a number, got [0.1]", "l1"),
        (3, "a string or an object, got int", "regularizer"),
    ],
)
def test_bad_specs_name_the_key_and_value(spec: object, message: str, field: str) -> None:
    with pytest.raises(SpecError, match=None) as info:
        R.get(spec)  # type: ignore[arg-type]
    assert message in info.value.message
    assert info.value.field == field


def test_describe_lists_every_kind_with_defaults() -> None:
    kinds = {d["type"]: d for d in R.describe()}
    assert set(kinds) == {"l1", "l2", "l1l2", "orthogonal"}
    assert kinds["orthogonal"]["parameters"] == {"factor": 0.01, "mode": "rows"}
    assert kinds["l1l2"]["identifiers"] == ["l1l2", "l1_l2", "L1L2"]


# --- blocked reductions --------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 1000, (1 << 14), (1 << 14) + 7, 3 * (1 << 14) - 1, 200_003])
def test_blocked_sums_agree_with_float64_reference(n: int) -> None:
    x = RNG.normal(size=n).astype(np.float32)
    ref1 = np.abs(x.astype(np.float64)).sum()
    ref2 = (x.astype(np.float64) ** 2).sum()
    a, b = sum_abs(x), sum_squares(x)
    assert a.dtype == np.float32 and b.dtype == np.float32
    assert float(a) == pytest.approx(ref1, rel=2e-7, abs=1e-30)
    assert float(b) == pytest.approx(ref2, rel=2e-7, abs=1e-30)


def test_l2_overflow_in_float32_is_inf_for_the_caller_to_refuse() -> None:
    x = np.full(4, 1e20, np.float32)
    with np.errstate(all="raise"):
        assert np.isinf(R.L2(1.0).penalty(x))
    assert R.L2(1.0).penalty(x.astype(np.float64)) == pytest.approx(4e40)


def test_blocked_sums_on_ten_million_elements_stay_accurate() -> None:
    x = RNG.normal(size=10_000_000).astype(np.float32)
    x64 = x.astype(np.float64)
    assert float(sum_abs(x)) == pytest.approx(np.abs(x64).sum(), rel=2e-7)
    assert float(sum_squares(x)) == pytest.approx((x64 * x64).sum(), rel=2e-7)
    assert float(sum_abs(x[::3])) == pytest.approx(np.abs(x64[::3]).sum(), rel=2e-7)


# --- many named weights ------------------------------------------------------------------


def test_penalties_of_named_weights_and_their_total() -> None:
    kernel = np.array([[1.0, -2.0], [0.5, 0.0]], np.float32)
    bias = np.array([3.0, -1.0], np.float64)
    r = R.penalties({"dense/kernel": (R.L1(0.1), kernel), "dense/bias": (R.L2(0.5), bias)})
    assert list(r.penalties) == ["dense/kernel", "dense/bias"]
    assert r.penalties["dense/kernel"] == np.float32(0.1) * np.float32(3.5)
    assert r.penalties["dense/kernel"].dtype == np.float32
    assert r.penalties["dense/bias"] == 0.5 * 10.0
    assert r.total.dtype == np.float64  # the widest dtype given
    assert r.total == np.float64(np.float32(0.1) * np.float32(3.5)) + 5.0
    assert r.gradients is not None
    np.testing.assert_array_equal(r.gradients["dense/bias"], [3.0, -1.0])
    assert R.penalties({"w": (R.L1(), kernel)}, return_gradients=False).gradients is None


def test_penalties_refuse_a_result_that_overflows_its_dtype() -> None:
    from service.core.errors import NonFiniteError

    with pytest.raises(NonFiniteError) as info:
        R.penalties({"w": (R.L2(1.0), np.full(4, 1e20, np.float32))})
    assert info.value.field == "penalties.w"
    with pytest.raises(NonFiniteError) as info:  # each finite in float32, their sum is not
        R.penalties({"a": (R.L2(1.0), np.full(2, 1e19, np.float32)), "b": (R.L2(1.0), np.full(2, 1e19, np.float32))})
    assert info.value.field == "total"
