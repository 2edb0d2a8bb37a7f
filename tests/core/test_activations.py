"""Activations: closed forms, TF's kink conventions, central-difference vjps, specs, stability."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from service.core import activations as A
from service.core import special
from service.core.errors import ShapeError, SpecError
from tests.gradcheck import assert_gradient, away_from_kinks

RNG = np.random.default_rng(20261122)


def act(spec: Any) -> A.Activation:
    return A.get(spec)


#: A spec for each name (threshold has no defaults).
def spec_of(name: str) -> Any:
    return {"name": "threshold", "threshold": 0.25, "default_value": -1.5} if name == "threshold" else name


# --- closed forms ---------------------------------------------------------------------------


def test_relu_threshold_jumps_as_keras() -> None:
    x = np.array([0.0, 2.0, 5.0, 7.0], np.float32)
    y = act({"name": "relu", "threshold": 5.0})(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [0.0, 0.0, 0.0, 7.0])


def test_relu_keras_docstring_examples() -> None:
    x = np.array([-10.0, -5.0, 0.0, 5.0, 10.0], np.float32)
    np.testing.assert_array_equal(act("relu")(x), [0, 0, 0, 5, 10])
    np.testing.assert_array_equal(act({"name": "relu", "negative_slope": 0.5})(x), [-5, -2.5, 0, 5, 10])
    np.testing.assert_array_equal(act({"name": "relu", "max_value": 5.0})(x), [0, 0, 0, 5, 5])
    np.testing.assert_array_equal(act({"name": "relu", "threshold": 5.0})(x), [0, 0, 0, 0, 10])


@pytest.mark.parametrize("alpha", [0.0, 0.01, 0.2, 0.3, 1.0, 2.5])
def test_seed_identity_leaky_relu_is_relu_minus_abs(alpha: float) -> None:
    x = RNG.normal(0, 3, 200)
    x[:3] = [0.0, -1.0, 1.0]
    leaky = act({"name": "leaky_relu", "negative_slope": alpha})(x)
    relu = act("relu")(x)
    a32 = float(np.float32(alpha))  # TF's float32 slope attribute, for float64 data too
    np.testing.assert_allclose(leaky, (1 + a32) * relu - a32 * np.abs(x), rtol=1e-14, atol=1e-14)


def test_leaky_relu_activation_default_slope_is_0_2() -> None:
    assert act("leaky_relu").params == {"negative_slope": 0.2}
    np.testing.assert_allclose(act("leaky_relu")(np.array([-1.0])), [-0.2])


def test_selu_constants() -> None:
    assert A.SELU_SCALE * A.SELU_ALPHA == pytest.approx(A.SELU_SCALE_ALPHA, rel=1e-15)
    s = act("selu")
    assert s(np.array([1.0]))[0] == 1.0507009873554805
    assert s(np.array([-60.0]))[0] == pytest.approx(-1.7580993408473768, rel=1e-15)
    assert s(np.array([-1.0]))[0] == pytest.approx(1.7580993408473768 * (math.exp(-1) - 1), rel=1e-15)


def test_smooth_closed_forms_float64() -> None:
    x = np.array([-2.0, -0.5, 0.0, 0.7, 3.0])
    sig = 1 / (1 + np.exp(-x))
    cases: dict[str, np.ndarray] = {
        "sigmoid": sig,
        "tanh": np.tanh(x),
        "softplus": np.log1p(np.exp(x)),
        "softsign": x / (np.abs(x) + 1),
        "silu": x * sig,
        "mish": x * np.tanh(np.log1p(np.exp(x))),
        "exponential": np.exp(x),
        "log_sigmoid": np.log(sig),
        "tanh_shrink": x - np.tanh(x),
        "elu": np.where(x > 0, x, np.exp(x) - 1),
        "celu": np.where(x > 0, x, np.expm1(x)),
        "squareplus": (x + np.sqrt(x * x + 4)) / 2,
        "gelu": np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x]),
        "linear": x,
    }
    for name, expected in cases.items():
        np.testing.assert_allclose(act(name)(x), expected, rtol=1e-14, atol=1e-16, err_msg=name)


def test_piecewise_closed_forms() -> None:
    x = np.array([-4.0, -3.0, -1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 3.0, 6.0, 7.0])
    relu6 = np.minimum(np.maximum(x, 0), 6)
    np.testing.assert_array_equal(act("relu6")(x), relu6)
    np.testing.assert_array_equal(act("hard_sigmoid")(x), np.minimum(np.maximum(x + 3, 0), 6) / 6)
    np.testing.assert_array_equal(act("hard_silu")(x), x * act("hard_sigmoid")(x))
    np.testing.assert_array_equal(act("hard_tanh")(x), np.clip(x, -1, 1))
    np.testing.assert_array_equal(
        act("sparse_sigmoid")(x), [0, 0, 0, 0.25, 0.5, 0.625, 0.75, 1, 1, 1, 1]
    )
    np.testing.assert_array_equal(
        act("sparse_plus")(x), [0, 0, 0, 0.0625, 0.25, 0.390625, 0.5625, 1, 3, 6, 7]
    )
    np.testing.assert_array_equal(
        act("soft_shrink")(x), [-3.5, -2.5, -0.5, 0, 0, 0, 0, 0.5, 2.5, 5.5, 6.5]
    )
    np.testing.assert_array_equal(
        act("hard_shrink")(x), [-4, -3, -1, 0, 0, 0, 0, 1, 3, 6, 7]
    )


def test_gelu_reference_values() -> None:
    # Φ(1) and the tanh approximation as TF 2.21 returns them (float32).
    assert act("gelu")(np.array([1.0]))[0] == pytest.approx(0.8413447460685429, rel=1e-15)
    y = act({"name": "gelu", "approximate": True})(np.array([-1.0, 0.0, 1.0], np.float32))
    np.testing.assert_allclose(y, [-0.15880799293518066, 0.0, 0.8411920070648193], rtol=1e-6)


def test_erf_and_erfc_match_math_in_float64() -> None:
    x = np.concatenate([np.linspace(-27, 27, 20001), np.geomspace(1e-300, 0.6, 300)])
    x = np.concatenate([x, -x])
    erf_ref = np.array([math.erf(v) for v in x])
    erfc_ref = np.array([math.erfc(v) for v in x])
    np.testing.assert_allclose(special.erf(x), erf_ref, rtol=1e-13, atol=0)
    ok = erfc_ref > 1e-300
    np.testing.assert_allclose(special.erfc(x)[ok], erfc_ref[ok], rtol=1e-13, atol=0)
    x32 = x.astype(np.float32)
    ref32 = np.array([math.erfc(float(v)) for v in x32])
    ok = ref32 > 1e-36
    assert special.erfc(x32).dtype == np.float32
    np.testing.assert_allclose(special.erfc(x32)[ok], ref32[ok], rtol=1e-6, atol=0)


@pytest.mark.parametrize("axis", [-1, 0, 1, None, [0, 2]])
def test_softmax_sums_to_one_and_log_softmax_is_its_log(axis: Any) -> None:
    z = RNG.normal(0, 5, (3, 4, 5))
    y = act({"name": "softmax", "axis": axis})(z)
    ax = tuple(axis) if isinstance(axis, list) else axis
    np.testing.assert_allclose(np.sum(y, axis=ax), 1.0, rtol=1e-14)
    log_y = act({"name": "log_softmax", "axis": axis})(z)
    np.testing.assert_allclose(np.exp(log_y), y, rtol=1e-13)


def test_exponential_overflow_is_inf_not_an_exception() -> None:
    with np.errstate(all="raise"):
        y = act("exponential")(np.array([1.0, 100.0], np.float32))
    assert y[0] == pytest.approx(math.e, rel=1e-6) and np.isinf(y[1])


# --- derivatives at kinks: TF 2.21 tf.GradientTape values -----------------------------------

# (spec, z, y, dy/dz) as measured with tf.GradientTape on keras.activations (float32).
KINKS: list[tuple[Any, list[float], list[float], list[float]]] = [
    ("relu", [-1, 0, 1], [0, 0, 1], [0, 0, 1]),
    ("leaky_relu", [-1, 0, 1], [-0.2, 0, 1], [0.2, 0.2, 1]),
    ({"name": "leaky_relu", "negative_slope": 2.0}, [-1, 0, 1], [-2, 0, 1], [2, 2, 1]),
    ("relu6", [-1, 0, 3, 6, 7], [0, 0, 3, 6, 6], [0, 0, 1, 0, 0]),
    ("elu", [-1, 0, 1], [math.exp(-1) - 1, 0, 1], [math.exp(-1), 1, 1]),
    ({"name": "elu", "alpha": 2.0}, [-1, 0, 1], [2 * (math.exp(-1) - 1), 0, 1], [2 * math.exp(-1), 2, 1]),
    ("selu", [0], [0], [A.SELU_SCALE]),
    ("celu", [-1, 0, 1], [math.exp(-1) - 1, 0, 1], [math.exp(-1), 1, 1]),  # TF says 2 at 0
    ({"name": "celu", "alpha": 2.0}, [0], [0], [1]),
    ("hard_sigmoid", [-4, -3, 0, 3, 4], [0, 0, 0.5, 1, 1], [0, 0, 1 / 6, 0, 0]),
    ("hard_silu", [-4, -3, 0, 3, 4], [0, 0, 0, 3, 4], [0, 0, 0.5, 1, 1]),
    ("hard_tanh", [-2, -1, 0, 1, 2], [-1, -1, 0, 1, 1], [0, 1, 1, 1, 0]),
    ("soft_shrink", [-1, -0.5, 0, 0.5, 1], [-0.5, 0, 0, 0, 0.5], [1, 0, 0, 0, 1]),
    ("hard_shrink", [-1, -0.5, 0, 0.5, 1], [-1, 0, 0, 0, 1], [1, 0, 0, 0, 1]),
    ("sparse_plus", [-2, -1, 0, 1, 2], [0, 0, 0.25, 1, 2], [0, 0, 0.5, 1, 1]),
    ("sparse_sigmoid", [-2, -1, 0, 1, 2], [0, 0, 0.5, 1, 1], [0, 0, 0.5, 0, 0]),
    ({"name": "relu", "threshold": 5.0}, [0, 2, 5, 7], [0, 0, 0, 7], [0, 0, 0, 1]),
    (
        {"name": "relu", "threshold": 5.0, "negative_slope": 0.1},
        [0, 2, 5, 7],
        [-0.5, -0.3, 0, 7],
        [0.1, 0.1, 0, 1],
    ),
    ({"name": "relu", "max_value": 5.0}, [-1, 0, 3, 5, 7], [0, 0, 3, 5, 5], [0, 0, 1, 1, 0]),
    ({"name": "relu", "max_value": 6.0}, [-1, 0, 3, 6, 7], [0, 0, 3, 6, 6], [0, 0, 1, 0, 0]),
    (
        {"name": "relu", "max_value": 6.0, "threshold": 1.0},
        [-1, 0, 1, 3, 6, 7],
        [0, 0, 0, 3, 6, 6],
        [0, 0, 0, 1, 1, 0],
    ),
    (
        {"name": "relu", "negative_slope": 0.1, "max_value": 5.0},
        [-1, 0, 3, 5, 7],
        [-0.1, 0, 3, 5, 5],
        [0.1, 0, 1, 1, 0],
    ),
    ({"name": "relu", "negative_slope": 0.1}, [-1, 0, 3], [-0.1, 0, 3], [0.1, 0.1, 1]),
    ({"name": "relu", "max_value": 0.0}, [-1, 0, 3], [0, 0, 0], [0, 0, 0]),
    ("squareplus", [0], [1], [0.5]),
    ({"name": "squareplus", "b": 0.0}, [-1, 0, 1], [0, 0, 1], [0, 0.5, 1]),  # TF: NaN at 0
    ("softsign", [0], [0], [1]),
    ("gelu", [0], [0], [0.5]),
    ({"name": "gelu", "approximate": True}, [0], [0], [0.5]),
    ("mish", [0], [0], [0.6]),
]


@pytest.mark.parametrize(("spec", "z", "y", "d"), KINKS, ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_and_derivatives_at_kinks_follow_tf(
    spec: Any, z: list[float], y: list[float], d: list[float], dtype: type
) -> None:
    a = act(spec)
    zz = np.array(z, dtype)
    out = a(zz)
    np.testing.assert_allclose(out, np.array(y, dtype), rtol=1e-6, atol=1e-7)
    grad = a.vjp(zz, out, np.ones_like(zz))
    assert grad.dtype == dtype
    np.testing.assert_allclose(grad, np.array(d, dtype), rtol=1e-6, atol=1e-7)


# --- central differences -------------------------------------------------------------------

# Every activation, with the points where its derivative jumps.
GRAD_CASES: list[tuple[Any, tuple[float, ...]]] = [
    ("linear", ()),
    ("relu", (0.0,)),
    ({"name": "relu", "negative_slope": 0.1, "max_value": 2.0, "threshold": 0.5}, (0.5, 2.0)),
    ({"name": "relu", "negative_slope": 0.3, "max_value": 6.0}, (0.0, 6.0)),
    ({"name": "relu", "max_value": 6.0}, (0.0, 6.0)),
    ("leaky_relu", (0.0,)),
    ("relu6", (0.0, 6.0)),
    ("elu", (0.0,)),
    ({"name": "elu", "alpha": 0.5}, (0.0,)),
    ("selu", (0.0,)),
    ("celu", ()),  # smooth at 0: the central difference there must give 1
    ({"name": "celu", "alpha": 2.0}, ()),
    ("gelu", ()),
    ({"name": "gelu", "approximate": True}, ()),
    ("sigmoid", ()),
    ("hard_sigmoid", (-3.0, 3.0)),
    ("hard_silu", (-3.0, 3.0)),
    ("tanh", ()),
    ("hard_tanh", (-1.0, 1.0)),
    ("softplus", ()),
    ("softsign", ()),
    ("silu", ()),
    ("mish", ()),
    ("exponential", ()),
    ("log_sigmoid", ()),
    ("tanh_shrink", ()),
    ("soft_shrink", (-0.5, 0.5)),
    ({"name": "hard_shrink", "threshold": 1.0}, (-1.0, 1.0)),
    ("squareplus", ()),
    ({"name": "squareplus", "b": 0.5}, ()),
    ("sparse_plus", (-1.0, 1.0)),
    ("sparse_sigmoid", (-1.0, 1.0)),
    ("softmax", ()),
    ({"name": "softmax", "axis": 0}, ()),
    ({"name": "softmax", "axis": [0, 2]}, ()),
    ({"name": "softmax", "axis": None}, ()),
    ("log_softmax", ()),
    ({"name": "log_softmax", "axis": 1}, ()),
    ("glu", ()),
    ({"name": "glu", "axis": 0}, ()),
    ("sparsemax", ()),
    ({"name": "sparsemax", "axis": 1}, ()),
    ({"name": "threshold", "threshold": 0.3, "default_value": -2.0}, (0.3,)),
    ({"name": "relu", "negative_slope": -0.4, "threshold": -0.5, "max_value": 1.5}, (-0.5, 0.0, 1.5)),
    ({"name": "leaky_relu", "negative_slope": -0.3}, (0.0,)),
    ({"name": "celu", "alpha": -1.5}, ()),
    ({"name": "soft_shrink", "threshold": -0.5}, (-0.5, 0.5)),
]


def test_every_activation_has_a_gradient_case() -> None:
    covered = {act(spec).name for spec, _ in GRAD_CASES}
    assert covered == set(A.NAMES)


@pytest.mark.parametrize(("spec", "kinks"), GRAD_CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 4)])
def test_vjp_matches_central_differences(
    spec: Any, kinks: tuple[float, ...], shape: tuple[int, ...]
) -> None:
    a = act(spec)
    if "axis" in a.params and a.params["axis"] not in (-1, None) and len(shape) < 3:
        shape = (2, 3, 4)
    if a.name == "glu" and shape[a.params["axis"]] % 2:
        shape = (8,)
    z = away_from_kinks(RNG.normal(0, 2.5, shape), kinks)
    g = RNG.normal(size=a.output_shape(shape))

    def f(x: np.ndarray) -> float:
        return float(np.sum(g * a(x)))

    assert_gradient(f, a.vjp(z, a(z), g), z, rtol=1e-5, atol=1e-7)


def test_vjp_without_y_recomputes_it() -> None:
    z = RNG.normal(size=(3, 4))
    g = RNG.normal(size=(3, 4))
    for name in A.NAMES:
        a = act(spec_of(name))
        gg = g[:, :2] if name == "glu" else g
        np.testing.assert_array_equal(a.vjp(z, None, gg), a.vjp(z, a(z), gg), err_msg=name)


def test_softmax_vjp_is_the_jacobian_product() -> None:
    z = RNG.normal(size=5)
    g = RNG.normal(size=5)
    y = act("softmax")(z)
    jacobian = np.diag(y) - np.outer(y, y)
    np.testing.assert_allclose(act("softmax").vjp(z, y, g), jacobian.T @ g, rtol=1e-13)
    ly = act("log_softmax")(z)
    jacobian = np.eye(5) - y[None, :]
    np.testing.assert_allclose(act("log_softmax").vjp(z, ly, g), jacobian.T @ g, rtol=1e-13)


# --- specs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*A.NAMES, "swish", "hard_swish"])
def test_get_config_round_trips(name: str) -> None:
    a = act(spec_of(name))
    cfg = a.get_config()
    assert cfg["name"] == a.name and a.name in A.NAMES
    assert act(cfg) == a
    assert hash(act(cfg)) == hash(a)
    assert act(a) is a
    assert {**cfg} == {"name": a.name, **a.params}


def test_aliases_and_none() -> None:
    assert act("swish").name == "silu"
    assert act("hard_swish").name == "hard_silu"
    assert act({"name": "swish"}).name == "silu"
    assert act(None).name == "linear"
    assert act("linear").params == {}


def test_parameters_keep_their_values_and_defaults() -> None:
    a = act({"name": "relu", "max_value": 6, "negative_slope": 0.1})
    assert a.params == {"negative_slope": 0.1, "max_value": 6.0, "threshold": 0.0}
    assert act({"name": "softmax", "axis": [0, 1]}).params == {"axis": (0, 1)}
    assert act({"name": "gelu", "approximate": True}) != act("gelu")
    with pytest.raises(TypeError):
        a.params["threshold"] = 1.0  # type: ignore[index]


def test_describe_lists_every_activation_with_defaults() -> None:
    d = {e["name"]: e for e in A.describe()}
    assert tuple(d) == A.NAMES
    assert d["relu"]["parameters"] == {"negative_slope": 0.0, "max_value": None, "threshold": 0.0}
    assert d["leaky_relu"]["parameters"] == {"negative_slope": 0.2}
    assert d["silu"]["aliases"] == ["swish"]
    assert d["hard_silu"]["aliases"] == ["hard_swish"]
    assert d["squareplus"]["parameters"] == {"b": 4.0}
    assert d["softmax"]["parameters"] == {"axis": -1}
    assert all(isinstance(e["formula"], str) and e["formula"] for e in d.values())


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ("relu7", "activation", ["relu7", "leaky_relu", "swish"]),
        ({"name": "Relu"}, "name", ["Relu", "relu"]),
        ({"name": "relu", "slope": 0.1}, "slope", ["slope", "negative_slope", "max_value"]),
        ({"name": "selu", "alpha": 1.0}, "alpha", ["alpha", "none"]),
        ({"name": "LeakyReLU", "negative_slope": -0.1}, "negative_slope", ["negative_slope", ">= 0"]),
        ({"name": "leaky_relu", "negative_slope": float("nan")}, "negative_slope", ["finite"]),
        ({"name": "elu", "alpha": float("inf")}, "alpha", ["alpha", "finite"]),
        ({"name": "elu", "alpha": "1"}, "alpha", ["alpha", "number"]),
        ({"name": "elu", "alpha": True}, "alpha", ["alpha", "number"]),
        ({"name": "ReLU", "max_value": -1.0}, "max_value", ["max_value", ">= 0"]),
        ({"name": "ReLU", "threshold": -1.0}, "threshold", ["threshold", ">= 0"]),
        ({"name": "celu", "alpha": 0.0}, "alpha", ["alpha", "not be 0"]),
        ({"name": "squareplus", "b": -4.0}, "b", ["b", ">= 0"]),
        ({"name": "soft_shrink", "threshold": "x"}, "threshold", ["threshold"]),
        ({"name": "threshold", "threshold": 1.0}, "default_value", ["default_value", "no default"]),
        ({"name": "LeakyReLU", "alpha": 0.1, "negative_slope": 0.2}, "alpha", ["alpha", "not both"]),
        ({"name": "PReLU"}, "name", ["PReLU", "leaky_relu"]),
        ({"name": "glu", "axis": [1]}, "axis", ["axis", "integer"]),
        ({"name": "gelu", "approximate": 1}, "approximate", ["approximate", "true or false"]),
        ({"name": "softmax", "axis": 1.5}, "axis", ["axis", "integer"]),
        ({"name": "softmax", "axis": [0, 0]}, "axis", ["axis", "distinct"]),
        ({"name": "softmax", "axis": True}, "axis", ["axis"]),
        ({"negative_slope": 0.1}, "name", ["name"]),
    ],
)
def test_spec_errors_name_the_problem(spec: Any, field: str, words: list[str]) -> None:
    with pytest.raises(SpecError) as info:
        act(spec)
    assert info.value.field == field
    for word in words:
        assert word in info.value.message


def test_spec_of_the_wrong_type() -> None:
    with pytest.raises(SpecError, match="int"):
        act(42)  # type: ignore[arg-type]


def test_shape_and_dtype_errors() -> None:
    with pytest.raises(ShapeError, match=r"\[2, 3\].*\[2, 2\]"):
        act("relu").vjp(np.zeros((2, 2)), None, np.zeros((2, 3)))
    with pytest.raises(ShapeError, match="axis 2") as info:
        act({"name": "softmax", "axis": 2})(np.zeros((2, 2)))
    assert info.value.field == "axis"
    with pytest.raises(SpecError, match="dtype"):
        act("relu")(np.array([1, 2, 3]))


# --- dtypes and stability ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_output_keeps_shape_and_dtype(dtype: type) -> None:
    z = RNG.normal(size=(2, 3, 4)).astype(dtype)
    g = RNG.normal(size=(2, 3, 4)).astype(dtype)
    for name in A.NAMES:
        a = act(spec_of(name))
        y = a(z)
        assert y.shape == a.output_shape(z.shape) and y.dtype == dtype, name
        d = a.vjp(z, y, g[..., :2] if name == "glu" else g)
        assert d.shape == z.shape and d.dtype == dtype, name
        ref = a(z.astype(np.float64)).astype(dtype)
        np.testing.assert_allclose(y, ref, rtol=2e-3 if dtype == np.float16 else 1e-5, atol=1e-6)


def test_empty_and_scalar_inputs() -> None:
    for name in A.NAMES:
        a = act(spec_of(name))
        empty = np.zeros((0, 4), np.float32)
        assert a(empty).shape == a.output_shape((0, 4))
        assert a.vjp(empty, None, np.zeros(a.output_shape((0, 4)), np.float32)).shape == (0, 4)
    assert act("relu")(np.array(-2.0)) == 0.0


def _extreme(dtype: type, big: float) -> np.ndarray:
    z = np.concatenate(
        [
            np.linspace(-big, big, 2001),
            [-big, big, 0.0, -0.0, 1e-30, -1e-30, 88.0, -88.0, 89.0, -89.0, 700.0, -700.0],
            RNG.normal(0, 10, 100),
        ]
    )
    return z.clip(-big, big).astype(dtype)


@pytest.mark.parametrize(
    ("dtype", "big"), [(np.float32, 1e4), (np.float16, 6e4), (np.float64, 1e4), (np.float64, 1e150)]
)
@pytest.mark.parametrize(
    "spec",
    # exponential and celu with a negative alpha (exp(|z|/|alpha|) for z < 0) really overflow
    [s for s, _ in GRAD_CASES
     if act(s).name != "exponential" and not (act(s).name == "celu" and act(s).params["alpha"] < 0)],
    ids=str,
)
def test_no_floating_point_errors_and_finite_results(spec: Any, dtype: type, big: float) -> None:
    a = act(spec)
    z = _extreme(dtype, big)
    if a.name in ("softmax", "log_softmax", "glu", "sparsemax"):
        z = z[: z.size // 4 * 4].reshape(-1, 2, 2)
        if a.name == "log_softmax" and dtype == np.float16:
            z = (z / 2).astype(dtype)  # z − max(z) below −65504 would really overflow float16
    g = np.ones(a.output_shape(z.shape), z.dtype)
    with np.errstate(all="raise"):
        y = a(z)
        d = a.vjp(z, y, g)
    if a.name == "selu" and dtype == np.float16:
        y, d = y[np.abs(z) < 6e4], d[np.abs(z) < 6e4]  # selu(6e4) = 6.3e4 fits; larger is real overflow
    assert np.all(np.isfinite(y)), a.name
    assert np.all(np.isfinite(d)), a.name


# --- Keras layer class names, parameter domains, the three 3.15 additions -------------------


def test_layer_class_names_mean_the_layer_with_its_defaults() -> None:
    assert act("LeakyReLU").get_config() == {"name": "leaky_relu", "negative_slope": 0.3}
    assert act({"name": "LeakyReLU", "alpha": 0.01}).params == {"negative_slope": 0.01}
    assert act({"name": "LeakyReLU", "negative_slope": 0.1}).params == {"negative_slope": 0.1}
    assert act("ReLU") == act("relu") and act("ELU") == act("elu") and act("Softmax") == act("softmax")
    assert act({"name": "ReLU", "max_value": 6.0}).params["max_value"] == 6.0
    assert {"LeakyReLU", "ReLU", "ELU", "Softmax"} <= set(A.ALIASES)


def test_glu_halves_the_axis() -> None:
    z = RNG.normal(size=(3, 6))
    a, b = z[:, :3], z[:, 3:]
    np.testing.assert_allclose(act("glu")(z), a / (1 + np.exp(-b)), rtol=1e-14)
    with pytest.raises(ShapeError, match="even"):
        act("glu")(np.zeros((2, 3)))


def test_sparsemax_is_keras_formula() -> None:
    # Keras: tau = (sum over the support of the cumulative sums - 1) / k: [1, 0.9, 0] -> k = 2,
    # tau = (1 + 1.9 - 1)/2 = 0.95 (the published sparsemax would give 0.45)
    np.testing.assert_allclose(act("sparsemax")(np.array([1.0, 0.9, 0.0])), [0.05, 0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(act("sparsemax")(np.array([3.0, 0.0])), [1.0, 0.0])


def test_threshold_keeps_values_above_and_sets_the_rest() -> None:
    a = act({"name": "threshold", "threshold": 0.5, "default_value": -1.0})
    np.testing.assert_array_equal(a(np.array([0.4, 0.5, 0.6])), [-1.0, -1.0, 0.6])
    np.testing.assert_array_equal(a.vjp(np.array([0.4, 0.5, 0.6]), None, np.ones(3)), [0.0, 0.0, 1.0])


def test_float64_parameters_keras_rounds_to_float32() -> None:
    x = np.array([0.7, 2.0, -0.7])
    # relu's threshold (0.7 -> 0.69999999) keeps x = 0.7, as Keras; max_value clips at 0.69999999
    np.testing.assert_array_equal(act({"name": "relu", "threshold": 0.7})(x), [0.7, 2.0, 0.0])
    f32 = float(np.float32(0.7))
    np.testing.assert_array_equal(act({"name": "relu", "max_value": 0.7})(x), [f32, f32, 0.0])
    np.testing.assert_array_equal(act({"name": "leaky_relu", "negative_slope": 0.7})(x), [0.7, 2.0, -0.7 * f32])
    # the others are exact: elu's alpha
    assert act({"name": "elu", "alpha": 0.7})(np.array([-0.7]))[0] == 0.7 * (np.exp(-0.7) - 1)
