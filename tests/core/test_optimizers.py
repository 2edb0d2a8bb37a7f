"""Keras optimizers step by step against Keras 3.15.1 (vectors/optimizer_steps.json), the
closed forms they reduce to, and the spec forms they accept.

Tolerances: FP64 rtol 1e-10 at every step; FP32 rtol 1e-6·(step+1) (a tolerance that grows
with the steps), atol 1e-7 for values that pass near 0.  As measured, every FP32 case is
bitwise identical to Keras at all 20 steps (``test_fp32_steps_are_bitwise_keras``).
"""

from __future__ import annotations

import numpy as np
import pytest

from service.core import optimizers, schedules, updates
from service.core.errors import ShapeError, SpecError
from service.core.optimizers import OptimizerState, step
from tests.reference.training_vectors import cases, load
from tests.reference.vectors import arrays

STEP_CASES = cases("optimizer_steps")


def tol(dtype: np.dtype, k: int) -> dict[str, float]:
    return {"rtol": 1e-10, "atol": 1e-13} if dtype == np.float64 else {"rtol": 1e-6 * (k + 1), "atol": 1e-7}


@pytest.mark.parametrize("case", STEP_CASES, ids=[c["id"] for c in STEP_CASES])
def test_matches_keras_step_by_step(case: dict) -> None:
    opt = optimizers.get(case["optimizer"])
    params = arrays(case["parameters"])
    state = None
    expected = case["expected"]
    for k, grads in enumerate(arrays(case["gradients"])):
        assert float(opt.lr_at(k)) == expected["learning_rate"][k]
        params, state = step(opt, params, grads, state)
        for name, want in arrays(expected["parameters"][k]).items():
            assert params[name].dtype == want.dtype
            np.testing.assert_allclose(params[name], want, **tol(want.dtype, k), err_msg=f"step {k + 1} {name}")
    assert state is not None and state.iterations == expected["iterations"]
    for name, slots in arrays(expected["slots"]).items():
        assert sorted(state.slots[name]) == sorted(slots)
        for slot, want in slots.items():
            np.testing.assert_allclose(state.slots[name][slot], want, **tol(want.dtype, len(case["gradients"])))


def test_keras_serialized_form_is_the_same_optimizer() -> None:
    """Every case's ``keras.optimizers.serialize`` output (schedules nested as Keras writes
    them) builds the optimizer the tagged form builds; Keras writes its float32-rounded rate
    and has no exclusion list in its config."""
    for case in STEP_CASES:
        from_keras = optimizers.get(case["keras_config"])
        tagged = optimizers.get(case["optimizer"])
        lr = tagged.learning_rate
        assert from_keras.learning_rate == (float(np.float32(lr)) if isinstance(lr, float) else lr), case["id"]
        assert from_keras.get_config() | {"learning_rate": None, "exclude_from_weight_decay": None} == \
            tagged.get_config() | {"learning_rate": None, "exclude_from_weight_decay": None}, case["id"]


def test_seed_reference_sgd_weight_decay() -> None:
    """SPEC §7: SGD(0.1, weight_decay=0.01), w=[1,-2,3], g=[.5,.5,-1] → [0.949, -2.048, 3.097]."""
    opt = optimizers.get({"name": "sgd", "learning_rate": 0.1, "weight_decay": 0.01})
    w, _ = step(opt, {"w": np.array([1.0, -2.0, 3.0])}, {"w": np.array([0.5, 0.5, -1.0])}, None)
    lr, wd = float(np.float32(0.1)), float(np.float32(0.01))  # Keras casts both through float32
    np.testing.assert_allclose(w["w"], np.array([1.0, -2.0, 3.0]) * (1 - wd * lr) - lr * np.array([0.5, 0.5, -1.0]),
                               rtol=1e-15)
    np.testing.assert_allclose(w["w"], [0.949, -2.048, 3.097], rtol=1e-8)


def test_identifiers_ignore_case_and_take_keras_defaults() -> None:
    adam = optimizers.get("Adam")
    assert adam.name == "adam" and adam.learning_rate == 0.001 and adam.weight_decay is None
    assert dict(adam.params) == {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False}
    assert optimizers.get("adamw").weight_decay == 0.004
    assert optimizers.get("ADAGRAD").params["initial_accumulator_value"] == 0.1


def test_tagged_config_round_trips() -> None:
    spec = {"name": "rmsprop", "learning_rate": {"name": "cosine_decay", "initial_learning_rate": 0.1,
                                                 "decay_steps": 5}, "centered": True, "clipvalue": 1.0,
            "weight_decay": 0.01, "exclude_from_weight_decay": ["bias"]}
    opt = optimizers.get(spec)
    assert optimizers.get(opt.get_config()) == opt


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ("adamm", "optimizer"),
        ({"name": "sgd", "momentum": 1.5}, "optimizer.momentum"),
        ({"name": "sgd", "learning_rate": -1}, "optimizer.learning_rate"),
        ({"name": "sgd", "clipnorm": 1, "clipvalue": 1}, "optimizer.clipnorm"),
        ({"name": "adam", "use_ema": True}, "optimizer.use_ema"),
        ({"name": "adam", "gradient_accumulation_steps": 2}, "optimizer.gradient_accumulation_steps"),
        ({"name": "adam", "exclude_from_weight_decay": ["("]}, "exclude_from_weight_decay"),
        ({"name": "adam", "learning_rate": {"name": "exponential_decay", "initial_learning_rate": 0.1,
                                           "decay_steps": 0, "decay_rate": 0.5}},
         "optimizer.learning_rate.decay_steps"),
        ({"class_name": "Nope", "config": {}}, "optimizer.class_name"),
        ({"name": "adam", "betta_1": 0.9}, "optimizer.betta_1"),
    ],
)
def test_bad_specs_name_the_field(spec: object, field: str) -> None:
    with pytest.raises(SpecError) as err:
        optimizers.get(spec)
    assert err.value.field == field


def test_state_is_checked_and_inputs_untouched() -> None:
    opt = optimizers.get({"name": "adam"})
    w = {"k": np.ones((2, 2), np.float32)}
    g = {"k": np.full((2, 2), 0.5, np.float32)}
    new, _ = step(opt, w, g, None)
    assert np.all(w["k"] == 1) and not np.all(new["k"] == 1)
    with pytest.raises(SpecError, match="no slot 'velocity'"):
        step(opt, w, g, OptimizerState(1, {"k": {"momentum": np.zeros((2, 2))}}))
    with pytest.raises(ShapeError):
        step(opt, w, g, OptimizerState(1, {"k": {"momentum": np.zeros(2), "velocity": np.zeros(2)}}))
    with pytest.raises(ShapeError):
        step(opt, w, {"k": np.zeros(3, np.float32)}, None)
    with pytest.raises(SpecError):
        step(opt, w, {"j": np.zeros(3, np.float32)}, None)


def test_sgd_l2_equals_decoupled_decay_2lambda() -> None:
    """SPEC §6: plain SGD with L2(λ) ≡ SGD with weight_decay 2λ at the same learning rate."""
    rng = np.random.default_rng(0)
    w0, g_data = rng.normal(size=5), rng.normal(size=5)
    lam, lr = 0.03125, 0.1  # 2λ exact in float32, as Keras casts it
    l2 = optimizers.get({"name": "sgd", "learning_rate": lr})
    wd = optimizers.get({"name": "sgd", "learning_rate": lr, "weight_decay": 2 * lam})
    a, _ = step(l2, {"w": w0}, {"w": g_data + 2 * lam * w0}, None)
    b, _ = step(wd, {"w": w0}, {"w": g_data}, None)
    np.testing.assert_allclose(a["w"], b["w"], rtol=1e-14)


def test_schedules_describe_and_serialize() -> None:
    s = schedules.get({"name": "exponential_decay", "initial_learning_rate": 0.1, "decay_steps": 10,
                       "decay_rate": 0.5})
    assert schedules.get(s.keras_config()) == s
    assert float(s(10)) == float(np.float32(0.05))
    assert {d["name"] for d in schedules.describe()} >= {"cosine_decay", "piecewise_constant_decay"}
    assert {d["name"] for d in optimizers.describe()} == set(optimizers.KINDS)


@pytest.mark.parametrize("family", ["optimizer_steps", "fit_runs"])
def test_vectors_come_from_pinned_keras(family: str) -> None:
    generator = load(family)["generator"]
    assert generator["keras"] == "3.15.1" and generator["tensorflow"] == "2.21.0"
    assert generator["script"] == "tests/reference/generate_training.py"
    assert cases(family), family


def test_fp32_steps_are_bitwise_keras() -> None:
    """Every FP32 case, every step, every parameter: the same float32 bits as Keras (the
    update rules follow Keras's operation order; βᵗ and cos are correctly rounded)."""
    differ = []
    for case in STEP_CASES:
        if not case["id"].endswith("FP32"):
            continue
        opt, params, state = optimizers.get(case["optimizer"]), arrays(case["parameters"]), None
        for k, grads in enumerate(arrays(case["gradients"])):
            params, state = step(opt, params, grads, state)
            differ += [(case["id"], k, n) for n, want in arrays(case["expected"]["parameters"][k]).items()
                       if not np.array_equal(params[n], want)]
    assert not differ, differ[:5]


@pytest.mark.parametrize("pattern", ["(a+)+$", "(a|aa)*b", "(x)\\1", "a*b*c*d*", "x" * 101, "(a*)*"])
def test_patterns_that_could_backtrack_for_ever_are_refused(pattern: str) -> None:
    with pytest.raises(SpecError) as err:
        optimizers.get({"name": "adamw", "exclude_from_weight_decay": [pattern]})
    assert err.value.field == "exclude_from_weight_decay"


def test_common_patterns_are_accepted_and_names_are_bounded() -> None:
    opt = optimizers.get({"name": "adamw", "exclude_from_weight_decay": ["bias", "layer_norm|gamma", ".*norm.*",
                                                                         "^dense_1/"]})
    assert not opt.decays("dense/bias") and not opt.decays("dense_1/kernel") and opt.decays("dense/kernel")
    with pytest.raises(SpecError, match="limit is 200"):
        opt.decays("a" * 201)
    assert optimizers.get("adamw").decays("a" * 10_000)  # no patterns: any name


def test_piecewise_constant_decay_closed_form_and_checks() -> None:
    s = schedules.get({"name": "piecewise_constant_decay", "boundaries": [2, 5], "values": [1.0, 0.5, 0.25]})
    assert [float(s(t)) for t in range(8)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]
    with pytest.raises(SpecError, match="must increase"):
        schedules.get({"name": "piecewise_constant_decay", "boundaries": [5, 2], "values": [1.0, 0.5, 0.25]})
    with pytest.raises(SpecError, match="one more value"):
        schedules.get({"name": "piecewise_constant_decay", "boundaries": [5], "values": [1.0]})


def test_tf_keras_2_serialized_optimizer() -> None:
    """tf.keras 2.x (≥ 2.11) writes jit_compile and is_legacy_optimizer; legacy configs add decay."""
    config = {"name": "Adam", "weight_decay": None, "clipnorm": None, "global_clipnorm": None, "clipvalue": None,
              "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None, "jit_compile": True,
              "is_legacy_optimizer": False, "learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999,
              "epsilon": 1e-07, "amsgrad": False}
    assert optimizers.get({"class_name": "Adam", "config": config}) == optimizers.get("adam")
    for decay in (0.0, 0, None):
        assert optimizers.get({"class_name": "SGD", "config": {"learning_rate": 0.01, "decay": decay}}) == \
            optimizers.get("sgd")
    with pytest.raises(SpecError, match=r"decay=0\.5 is not supported"):
        optimizers.get({"class_name": "SGD", "config": {"learning_rate": 0.01, "decay": 0.5}})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nadam_u_product_is_keras_sequential_product(dtype: type) -> None:
    """u_T = (…((1·β1)·(1 − ½·0.96¹))·β1 …)·(1 − ½·0.96ᵀ), each product rounded in the dtype."""
    c = dtype
    u, seq = c(1), [c(1)]
    for t in range(1, 300):
        u = u * c(0.9) * (c(1) - c(0.5) * c(np.power(np.float64(c(0.96)), t)))
        seq.append(u)
    for t in (0, 1, 2, 299, 37, 150):  # out of order: the incremental cache must not matter
        assert updates.nadam_u_product(t, 0.9, c) == seq[t]
    with pytest.raises(SpecError, match="beyond"):
        updates.nadam_u_product(updates.MAX_NADAM_ITERATIONS + 1, 0.9, c)
