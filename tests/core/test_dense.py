"""Dense layer: the seed breakdown, batch division, shapes, and every term's gradient."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from service.core.dense import dense
from service.core.errors import NonFiniteError, ShapeError, SpecError
from tests.gradcheck import assert_gradient

RNG = np.random.default_rng(7)
L1_01 = {"type": "l1", "l1": 0.1}
L2_01 = {"type": "l2", "l2": 0.1}


def seed_layer() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.ones((2, 2, 4), np.float32) * 3
    kernel = RNG.normal(size=(4, 3)).astype(np.float32)
    bias = RNG.normal(size=3).astype(np.float32)
    return x, kernel, bias


def test_seed_breakdown_of_spec_section_7() -> None:
    x, kernel, bias = seed_layer()
    r = dense(x, kernel, bias, None, L1_01, L2_01, L1_01)
    out = x @ kernel + bias
    np.testing.assert_allclose(r.outputs, out, rtol=1e-6)
    assert list(r.losses) == ["activity_regularizer", "kernel_regularizer", "bias_regularizer", "total"]
    assert r.losses["kernel_regularizer"] == pytest.approx(0.1 * np.abs(kernel).sum(), rel=1e-6)
    assert r.losses["bias_regularizer"] == pytest.approx(0.1 * (bias**2).sum(), rel=1e-6)
    # divided by the batch size 2 (the first axis only), not by 4
    assert r.losses["activity_regularizer"] == pytest.approx(0.1 * np.abs(out).sum() / 2, rel=1e-6)
    assert r.losses["total"] == pytest.approx(
        sum(float(r.losses[k]) for k in ("activity_regularizer", "kernel_regularizer", "bias_regularizer")),
        rel=1e-6,
    )
    assert all(v.dtype == np.float32 for v in r.losses.values())


def test_activity_normalization_none_does_not_divide() -> None:
    x, kernel, bias = seed_layer()
    batch = dense(x, kernel, bias, activity_regularizer=L1_01, activity_normalization="batch")
    none = dense(x, kernel, bias, activity_regularizer=L1_01, activity_normalization="none")
    assert none.losses["activity_regularizer"] == pytest.approx(2 * batch.losses["activity_regularizer"], rel=1e-6)
    assert batch.gradients is not None and none.gradients is not None
    np.testing.assert_allclose(
        none.gradients["kernel"]["activity_regularizer"],
        2 * batch.gradients["kernel"]["activity_regularizer"],
        rtol=1e-6,
    )


def test_weight_penalties_do_not_depend_on_the_batch() -> None:
    _, kernel, bias = seed_layer()
    small = dense(np.ones((1, 4), np.float32), kernel, bias, None, L1_01, L2_01)
    large = dense(np.ones((64, 4), np.float32), kernel, bias, None, L1_01, L2_01)
    assert small.losses == large.losses


def test_empty_batch_gives_zero_activity_penalty() -> None:
    r = dense(np.zeros((0, 4)), np.ones((4, 2)), activity_regularizer="l1")
    assert r.outputs.shape == (0, 2)
    assert r.losses["activity_regularizer"] == 0.0
    assert r.gradients is not None
    np.testing.assert_array_equal(r.gradients["kernel"]["activity_regularizer"], np.zeros((4, 2)))


def test_keys_present_only_for_what_was_given() -> None:
    x, kernel, _ = seed_layer()
    r = dense(x, kernel, kernel_regularizer="l2")
    assert list(r.losses) == ["kernel_regularizer", "total"]
    assert r.gradients is not None
    assert set(r.gradients) == {"kernel", "inputs"}  # no bias
    assert list(r.gradients["kernel"]) == ["kernel_regularizer", "total"]
    assert list(r.gradients["inputs"]) == ["total"]
    np.testing.assert_array_equal(r.gradients["inputs"]["total"], np.zeros_like(x))
    bare = dense(x, kernel, return_gradients=False)
    assert list(bare.losses) == ["total"] and bare.losses["total"] == 0
    assert bare.gradients is None


def test_dtype_promotion_and_float16() -> None:
    x = RNG.normal(size=(3, 4))
    k = RNG.normal(size=(4, 2)).astype(np.float32)
    assert dense(x, k, kernel_regularizer="l1").outputs.dtype == np.float64
    r16 = dense(x.astype(np.float16), k.astype(np.float16), activity_regularizer="l2")
    assert r16.outputs.dtype == np.float16
    assert r16.losses["total"].dtype == np.float16


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"inputs": np.ones((2, 4)), "kernel": np.ones((5, 3))}, ShapeError,
         "kernel has 5 rows but inputs have 4 features (last axis)"),
        ({"inputs": np.ones(4), "kernel": np.ones((4, 3))}, ShapeError,
         "inputs must have rank >= 2 (batch, ..., features), got shape [4]"),
        ({"inputs": np.ones((2, 4)), "kernel": np.ones((4, 3, 1))}, ShapeError,
         "kernel must have rank 2 (in, units), got shape [4, 3, 1]"),
        ({"inputs": np.ones((2, 4)), "kernel": np.ones((4, 3)), "bias": np.ones(4)}, ShapeError,
         "bias has shape [4] but the kernel has 3 units; bias must have shape [3]"),
        ({"inputs": np.ones((2, 4)), "kernel": np.ones((4, 3)), "bias_regularizer": "l2"}, SpecError,
         "bias_regularizer is given but the layer has no bias"),
        ({"inputs": np.ones((2, 4)), "kernel": np.ones((4, 3)), "kernel_regularizer": "l3"}, SpecError,
         "kernel_regularizer: unknown regularizer 'l3'"),
        ({"inputs": np.ones((2, 4)), "kernel": np.ones((4, 3)), "activity_normalization": "sample"}, SpecError,
         "activity_normalization must be 'batch' or 'none', got 'sample'"),
    ],
)
def test_errors_name_the_field_and_the_numbers(kwargs: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error) as info:
        dense(**kwargs)
    assert message in str(info.value)


def test_orthogonal_activity_on_rank3_output_is_refused() -> None:
    with pytest.raises(ShapeError, match="got rank 3"):
        dense(np.ones((2, 2, 4)), np.ones((4, 3)), activity_regularizer="orthogonal_regularizer")


def test_overflowing_penalty_is_refused_not_returned() -> None:
    kernel = np.full((4, 3), 1e20, np.float32)
    with pytest.raises(NonFiniteError) as info:
        dense(np.ones((2, 4), np.float32), kernel, kernel_regularizer={"type": "l2", "l2": 1.0})
    assert info.value.field in ("outputs", "losses.kernel_regularizer")


# --- central differences, every term wrt every parameter ------------------------------------

ACTIVATIONS: list[Any] = [
    None, "relu", "tanh", "sigmoid", "softmax", {"name": "leaky_relu", "negative_slope": 0.1},
    "elu", "gelu", {"name": "log_softmax", "axis": 1},
]
REGS: list[Any] = ["l1", {"type": "l2", "l2": 0.3}, {"type": "l1l2", "l1": 0.1, "l2": 0.2}]


def _term(
    term: str, which: str, x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, **kw: Any
) -> Any:
    def f(v: np.ndarray) -> float:
        args = {"inputs": x, "kernel": kernel, "bias": bias, which: v}
        return float(dense(args["inputs"], args["kernel"], args["bias"], return_gradients=False, **kw).losses[term])

    return f


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=str)
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4)], ids=["rank2", "rank3"])
@pytest.mark.parametrize("normalization", ["batch", "none"])
def test_every_term_gradient_by_central_differences(
    activation: Any, shape: tuple[int, ...], normalization: str
) -> None:
    x = RNG.normal(size=shape)
    kernel = RNG.normal(size=(4, 3))
    bias = RNG.normal(size=3)
    kw = {
        "activation": activation,
        "kernel_regularizer": REGS[0],
        "bias_regularizer": REGS[1],
        "activity_regularizer": {"type": "l2", "l2": 0.05} if activation in (None, "relu") else REGS[2],
        "activity_normalization": normalization,
    }
    r = dense(x, kernel, bias, **kw)
    assert r.gradients is not None
    params = {"kernel": kernel, "bias": bias, "inputs": x}
    for param, terms in r.gradients.items():
        for term, grad in terms.items():
            loss_key = term  # "total" is a loss key too
            f = _term(loss_key, param, x, kernel, bias, **kw)
            assert_gradient(f, grad, params[param], rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("mode", ["rows", "columns"])
def test_orthogonal_kernel_term_gradient(mode: str) -> None:
    x, kernel = RNG.normal(size=(3, 4)), RNG.normal(size=(4, 3))
    reg = {"type": "orthogonal", "factor": 0.5, "mode": mode}
    r = dense(x, kernel, kernel_regularizer=reg)
    assert r.gradients is not None
    f = _term("kernel_regularizer", "kernel", x, kernel, None, kernel_regularizer=reg)  # type: ignore[arg-type]
    assert_gradient(f, r.gradients["kernel"]["kernel_regularizer"], kernel, rtol=1e-6, atol=1e-9)


def test_an_activation_axis_out_of_range_is_located_at_the_activation() -> None:
    with pytest.raises(ShapeError) as info:
        dense(np.ones((2, 4)), np.ones((4, 3)), activation={"name": "softmax", "axis": 2})
    assert info.value.field == "activation.axis"
    assert str(info.value).startswith("activation: softmax axis 2 is out of range for a tensor of rank 2")


@pytest.mark.parametrize(
    ("x_shape", "k_shape"),
    [((2, 0), (0, 3)), ((2, 4), (4, 0)), ((0, 4), (4, 3)), ((2, 0, 4), (4, 3)), ((0, 0), (0, 0))],
)
def test_zero_sized_dimensions_give_empty_results_not_errors(
    x_shape: tuple[int, ...], k_shape: tuple[int, int]
) -> None:
    x, kernel, bias = np.ones(x_shape), np.ones(k_shape), np.ones(k_shape[1])
    r = dense(x, kernel, bias, "softmax", "l1", "l2", "l2")
    assert r.outputs.shape == (*x_shape[:-1], k_shape[1])
    assert r.gradients is not None
    assert r.gradients["kernel"]["total"].shape == k_shape
    assert r.gradients["inputs"]["total"].shape == x_shape
    assert all(np.isfinite(v) for v in r.losses.values())
