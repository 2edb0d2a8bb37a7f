"""Generate the Keras reference vectors in tests/reference/vectors/*.json.

Every expected number in those files comes from real Keras 3 on the TensorFlow
backend: values from Keras layers, regularizers, activations and losses, gradients
from ``tf.GradientTape``.  NumPy only builds the inputs (seeded) and writes the
results; no expected value is computed with a NumPy formula.

Run it outside the project's venv (Keras/TensorFlow are never dependencies of the
service or of its tests)::

    python -m venv /work/kerasenv
    /work/kerasenv/bin/pip install keras==3.15.1 tensorflow-cpu==2.21.0
    cd <repo root>
    TF_CPP_MIN_LOG_LEVEL=3 KERAS_BACKEND=tensorflow \\
        /work/kerasenv/bin/python tests/reference/generate.py

It rewrites regularizers.json, activations.json, losses.json, dense.json and
network.json (about 10 s).  Each file records the keras, tensorflow and
numpy versions that produced it.  Inputs are seeded with ``crc32`` of the case id
(or of a fixed name), so adding or reordering cases does not change the others.

Besides writing the vectors, the script asserts the Keras facts the service relies
on (see ``check_keras_facts``) and, for every FP32 network case with batch activity
normalization, that one SGD(learning_rate=1) ``train_on_batch`` step moves every
parameter by the recorded ``total`` gradient, up to the float32 rounding of the
update (so ``total`` is what ``fit`` applies, logits shortcut and all).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import zlib
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras  # noqa: E402

if keras.backend.backend() != "tensorflow":
    sys.exit("set KERAS_BACKEND=tensorflow")
if keras.__version__ != "3.15.1" or tf.__version__ != "2.21.0":
    print(
        f"warning: pinned keras==3.15.1 tensorflow-cpu==2.21.0, running keras=={keras.__version__} "
        f"tensorflow=={tf.__version__}",
        file=sys.stderr,
    )

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
tf.get_logger().setLevel("ERROR")

OUT = Path(__file__).resolve().parent / "vectors"
DATATYPES = {"float16": "FP16", "float32": "FP32", "float64": "FP64"}
NP_DTYPES = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}


# ----------------------------------------------------------------------------- helpers


def rng_for(case_id: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(case_id.encode()))


def wire(x) -> dict:
    """A tensor (NumPy or TF) in the API wire form, every float written exactly."""
    a = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    return {
        "shape": list(a.shape),
        "datatype": DATATYPES[str(a.dtype)],
        "data": [float(v) for v in a.reshape(-1)],
    }


def scalar(x) -> float:
    a = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    assert a.shape == (), a.shape
    return float(a)


def grads(tape, target, variables):
    """Gradients of ``target`` wrt each variable; None where it does not reach."""
    return tape.gradient(target, variables, unconnected_gradients=tf.UnconnectedGradients.NONE)


def keras_regularizer(spec):
    """The Keras regularizer object for an API regularizer spec."""
    if spec is None:
        return None
    if isinstance(spec, str):
        return keras.regularizers.get(spec)  # Keras's own identifiers
    spec = dict(spec)
    if "class_name" in spec:
        return keras.regularizers.get(json.loads(json.dumps(spec)))  # Keras deserialization
    kind = spec.pop("type")
    cls = {
        "l1": keras.regularizers.L1,
        "l2": keras.regularizers.L2,
        "l1l2": keras.regularizers.L1L2,
        "orthogonal": keras.regularizers.OrthogonalRegularizer,
    }[kind]
    return cls(**spec)


#: Activation layer classes the API accepts as names (keras.activations.get refuses them).
ACTIVATION_LAYERS = {
    "LeakyReLU": keras.layers.LeakyReLU,
    "ReLU": keras.layers.ReLU,
    "ELU": keras.layers.ELU,
    "Softmax": keras.layers.Softmax,
}


def keras_activation(spec, dtype=None):
    """The Keras activation callable for an API activation spec (a layer of ``dtype`` for a
    class name)."""
    if isinstance(spec, str) and spec in ACTIVATION_LAYERS:
        spec = {"name": spec}
    if spec is None or isinstance(spec, str):
        return keras.activations.get(spec)
    # a JSON list of axes is the tuple Keras takes (ops.softmax refuses a Python list)
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items() if k != "name"}
    if spec["name"] in ACTIVATION_LAYERS:
        return ACTIVATION_LAYERS[spec["name"]](**params, dtype=dtype)
    fn = keras.activations.get(spec["name"])
    return functools.partial(fn, **params) if params else fn


#: Keras's loss classes by the name of the function they wrap (every closed-form loss).
LOSS_CLASSES = {
    cls().fn.__name__: cls
    for cls in (
        keras.losses.MeanSquaredError, keras.losses.MeanAbsoluteError,
        keras.losses.MeanAbsolutePercentageError, keras.losses.MeanSquaredLogarithmicError,
        keras.losses.CosineSimilarity, keras.losses.Huber, keras.losses.LogCosh, keras.losses.Hinge,
        keras.losses.SquaredHinge, keras.losses.CategoricalHinge, keras.losses.KLDivergence,
        keras.losses.Poisson, keras.losses.BinaryCrossentropy, keras.losses.BinaryFocalCrossentropy,
        keras.losses.CategoricalCrossentropy, keras.losses.CategoricalFocalCrossentropy,
        keras.losses.SparseCategoricalCrossentropy, keras.losses.CategoricalGeneralizedCrossEntropy,
        keras.losses.Dice, keras.losses.Tversky, keras.losses.Circle,
    )
}
#: keras.losses.get does not know this class (it is missing from Keras's ALL_OBJECTS).
EXTRA_LOSS_NAMES = {"CategoricalGeneralizedCrossEntropy": "categorical_generalized_cross_entropy"}


def keras_loss(spec, dtype):
    """A Keras loss object (default reduction sum_over_batch_size) for an API loss spec.

    The name is resolved by ``keras.losses.get`` (function names, aliases such as ``kld``,
    class names), then the class wrapping that function is built with the parameters.
    ``dtype`` is passed so a float64 case is computed in float64 (a Keras Loss casts
    its inputs to ``floatx`` = float32 unless told otherwise).
    """
    if isinstance(spec, str):
        spec = {"name": spec}
    params = {k: v for k, v in spec.items() if k != "name"}
    name = spec["name"]
    if name in LOSS_CLASSES or name in EXTRA_LOSS_NAMES:
        fn_name = EXTRA_LOSS_NAMES.get(name, name)
    else:
        obj = keras.losses.get(name)
        fn_name = obj.fn.__name__ if isinstance(obj, keras.losses.Loss) else obj.__name__
    return LOSS_CLASSES[fn_name](**params, dtype=dtype)


def grid(n, extra=(), scale=2.0, rng=None, dtype=np.float32):
    """``n`` inputs: kinks and far values first, then seeded normals."""
    base = [-30.0, -6.0, -3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0, 6.0, 30.0, *extra]
    vals = np.array(base[:n], dtype=np.float64)
    rest = rng.normal(0.0, scale, n - vals.size)
    return np.concatenate([vals, rest]).astype(dtype)


def write(family: str, cases: list[dict]) -> None:
    ids = [c["id"] for c in cases]
    assert len(ids) == len(set(ids)), f"duplicate ids in {family}"
    header = {
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        "script": "tests/reference/generate.py",
    }
    lines = ['{"generator": ' + json.dumps(header) + ',', ' "cases": [']
    for i, case in enumerate(cases):
        text = json.dumps(case, separators=(",", ":"), allow_nan=False)
        lines.append("  " + text + ("," if i < len(cases) - 1 else ""))
    lines.append(" ]}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{family}.json").write_text("\n".join(lines) + "\n")
    print(f"{family}.json: {len(cases)} cases")


# ----------------------------------------------------------------------------- regularizers


def regularizer_case(case_id, x, spec):
    reg = keras_regularizer(spec)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        penalty = reg(xt)
    gradient = tape.gradient(penalty, xt, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    assert np.isfinite(penalty.numpy()) and np.all(np.isfinite(gradient.numpy())), case_id
    return {
        "id": case_id,
        "request": {"tensor": wire(x), "regularizer": spec},
        "expected": {"penalty": scalar(penalty), "gradient": wire(gradient)},
    }


def regularizer_cases():
    cases = []

    def add(case_id, shape_or_x, spec, dtype=np.float32, scale=1.0):
        if isinstance(shape_or_x, tuple):
            x = (rng_for(case_id).normal(0.0, scale, shape_or_x)).astype(dtype)
        else:
            x = np.asarray(shape_or_x, dtype=dtype)
        cases.append(regularizer_case(case_id, x, spec))

    # SPEC §7 seed: L1(0.1) on ones((2,2,4))*3 -> 4.8
    add("seed_l1_0.1_ones_2x2x4_times3", np.ones((2, 2, 4)) * 3, {"type": "l1", "l1": 0.1})
    with_zeros = rng_for("zeros").normal(0, 1, (4, 5))
    with_zeros[[0, 1, 3], [2, 0, 4]] = 0.0  # sign(0) = 0 in the L1 gradient
    add("l1_tagged_with_zeros", with_zeros, {"type": "l1", "l1": 0.05})
    add("l1_tagged_rank3", (2, 3, 4), {"type": "l1", "l1": 0.3})
    add("l1_tagged_rank1", (7,), {"type": "l1", "l1": 0.001})
    add("l1_tagged_default_factor", (3, 3), {"type": "l1"})
    add("l2_tagged", (5, 3), {"type": "l2", "l2": 0.1})
    add("l2_tagged_rank3_large_values", (2, 3, 4), {"type": "l2", "l2": 0.02}, scale=300.0)
    add("l2_tagged_rank4", (2, 2, 3, 2), {"type": "l2", "l2": 0.7})
    add("l1l2_tagged_both", (4, 3), {"type": "l1l2", "l1": 0.01, "l2": 0.02})
    add("l1l2_tagged_l1_zero", (4, 3), {"type": "l1l2", "l1": 0.0, "l2": 0.1})
    add("l1l2_tagged_l2_zero", (4, 3), {"type": "l1l2", "l1": 0.1, "l2": 0.0})
    add("l1l2_tagged_both_zero", (4, 3), {"type": "l1l2", "l1": 0.0, "l2": 0.0})
    add("l1l2_tagged_rank3_zeros_in_x", with_zeros.reshape(2, 2, 5), {"type": "l1l2", "l1": 0.2, "l2": 0.3})
    # Keras identifier strings
    add("identifier_l1", (3, 4), "l1")
    add("identifier_l2", (3, 4), "l2")
    add("identifier_l1l2", (3, 4), "l1l2")  # Keras 3: L1L2(0, 0)
    add("identifier_orthogonal_regularizer", (4, 3), "orthogonal_regularizer")
    # orthogonal
    add("orthogonal_rows", (4, 3), {"type": "orthogonal", "factor": 0.1, "mode": "rows"})
    add("orthogonal_rows_wide", (3, 6), {"type": "orthogonal", "factor": 0.5, "mode": "rows"})
    add("orthogonal_rows_two_rows", (2, 5), {"type": "orthogonal", "factor": 1.0, "mode": "rows"})
    add("orthogonal_columns", (3, 5), {"type": "orthogonal", "factor": 0.1, "mode": "columns"})
    add("orthogonal_columns_tall", (6, 3), {"type": "orthogonal", "factor": 0.2, "mode": "columns"})
    add("orthogonal_columns_default_factor", (5, 4), {"type": "orthogonal", "mode": "columns"})
    zr = rng_for("zero_row").normal(0, 1, (4, 3))
    zr[2] = 0.0
    add("orthogonal_rows_zero_row", zr, {"type": "orthogonal", "factor": 0.3, "mode": "rows"})
    zc = rng_for("zero_col").normal(0, 1, (3, 4))
    zc[:, 1] = 0.0
    add("orthogonal_columns_zero_column", zc, {"type": "orthogonal", "factor": 0.3, "mode": "columns"})
    tiny = rng_for("tiny_row").normal(0, 1, (3, 4))
    tiny[1] = [1e-9, -2e-9, 3e-9, 0.0]  # norm < eps = 1e-7: scaled by 1/eps, not normalised
    add("orthogonal_rows_tiny_row_clamped", tiny, {"type": "orthogonal", "factor": 0.1, "mode": "rows"})
    add("orthogonal_rows_identity", np.eye(3), {"type": "orthogonal", "factor": 0.1, "mode": "rows"})
    add("orthogonal_rows_nearly_parallel", [[1, 2, 3], [2, 4, 6.5], [-1, -2, -3]], {"type": "orthogonal", "factor": 0.1, "mode": "rows"})
    # Keras serialized forms, exactly as keras.regularizers.serialize writes them ...
    for case_id, obj, shape in [
        ("serialized_L1", keras.regularizers.L1(0.2), (3, 4)),
        ("serialized_L2", keras.regularizers.L2(0.03), (3, 4)),
        ("serialized_L1L2", keras.regularizers.L1L2(0.01, 0.01), (3, 4)),
        ("serialized_OrthogonalRegularizer", keras.regularizers.OrthogonalRegularizer(0.2, "columns"), (4, 3)),
    ]:
        add(case_id, shape, keras.regularizers.serialize(obj))
    # ... and the bare {"class_name", "config"} with the snake-case class names Keras accepts
    add("serialized_snake_l1", (3, 4), {"class_name": "l1", "config": {"l1": 0.2}})
    add("serialized_snake_l2", (3, 4), {"class_name": "l2", "config": {"l2": 0.03}})
    add("serialized_snake_l1l2", (3, 4), {"class_name": "l1l2", "config": {"l1": 0.01, "l2": 0.05}})
    add("serialized_snake_orthogonal_regularizer", (4, 3), {"class_name": "orthogonal_regularizer", "config": {"factor": 0.2, "mode": "rows"}})
    # FP64: factors exactly representable in float32 (Keras rounds every factor to float32,
    # the service keeps the exact factor; with these the two agree).  Keras's
    # OrthogonalRegularizer fails on float64 input (float32 factor * float64 tensor), so
    # there is no FP64 orthogonal case.
    add("fp64_l1", (3, 4), {"type": "l1", "l1": 0.125}, dtype=np.float64)
    add("fp64_l2", (2, 3, 2), {"type": "l2", "l2": 0.25}, dtype=np.float64)
    add("fp64_l1l2", (4, 3), {"type": "l1l2", "l1": 0.5, "l2": 0.125}, dtype=np.float64)
    add("fp64_l1_seed", np.ones((2, 2, 4)) * 3, {"type": "l1", "l1": 0.5}, dtype=np.float64)
    add("fp64_serialized_L2", (3, 3), {"class_name": "L2", "config": {"l2": 0.5}}, dtype=np.float64)
    # null factors, read as Keras's constructors read None (L1/L2: their default 0.01; L1L2: 0)
    add("null_L1_config", (3, 4), {"class_name": "L1", "config": {"l1": None}})
    add("null_L2_config", (3, 4), {"class_name": "L2", "config": {"l2": None}})
    add("null_L1L2_config_l1", (3, 4), {"class_name": "L1L2", "config": {"l1": None, "l2": 0.1}})
    add("null_L1L2_config_both", (3, 4), {"class_name": "L1L2", "config": {"l1": None, "l2": None}})
    add("null_l1l2_tagged_l2", (3, 4), {"type": "l1l2", "l1": 0.2, "l2": None})
    assert cases[0]["expected"]["penalty"] == float(np.float32(4.8)), cases[0]["expected"]["penalty"]
    return cases


# ----------------------------------------------------------------------------- activations

# kinks given twice in x (the grid itself has 0, ±0.5, ±1, ±3, ±6, ±30)
EXTRA_KINKS = {
    "hard_sigmoid": (-3.0, 3.0),
    "hard_silu": (-3.0, 3.0),
    "hard_swish": (-3.0, 3.0),
    "hard_tanh": (-1.0, 1.0),
    "sparse_plus": (-1.0, 1.0),
    "sparse_sigmoid": (-1.0, 1.0),
}


def activation_case(case_id, spec, x):
    rng = rng_for(case_id + "/upstream")
    fn = keras_activation(spec, str(x.dtype))
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = fn(xt)
        upstream = rng.normal(0.0, 1.0, tuple(y.shape)).astype(x.dtype)  # glu: y is half as wide
        target = tf.reduce_sum(tf.constant(upstream) * y)
    vjp = tape.gradient(target, xt)
    assert np.all(np.isfinite(y.numpy())) and np.all(np.isfinite(vjp.numpy())), case_id
    return {
        "id": case_id,
        "activation": spec,
        "x": wire(x),
        "upstream": wire(upstream),
        "expected": {"y": wire(y), "vjp": wire(vjp)},
    }


def activation_cases():
    specs = [
        ("linear", {"name": "linear"}, ()),
        ("relu", {"name": "relu"}, ()),
        ("relu_negative_slope", {"name": "relu", "negative_slope": 0.1}, ()),
        ("relu_max_value_6", {"name": "relu", "max_value": 6.0}, ()),
        ("relu_max_value_4.5", {"name": "relu", "max_value": 4.5}, (4.5,)),
        ("relu_threshold_5", {"name": "relu", "threshold": 5.0}, (2.0, 5.0, 7.0)),
        ("relu_threshold_negative_slope", {"name": "relu", "negative_slope": 0.25, "threshold": 1.5}, (1.5,)),
        ("relu_all_params", {"name": "relu", "negative_slope": 0.2, "max_value": 4.0, "threshold": 1.5}, (1.5, 4.0)),
        ("relu_negative_slope_max_value", {"name": "relu", "negative_slope": 0.3, "max_value": 2.0}, (2.0,)),
        ("leaky_relu", {"name": "leaky_relu"}, ()),
        ("leaky_relu_slope_0.3", {"name": "leaky_relu", "negative_slope": 0.3}, ()),
        ("relu6", {"name": "relu6"}, ()),
        ("elu", {"name": "elu"}, ()),
        ("elu_alpha_0.5", {"name": "elu", "alpha": 0.5}, ()),
        ("selu", {"name": "selu"}, ()),
        ("celu", {"name": "celu"}, ()),
        ("celu_alpha_2", {"name": "celu", "alpha": 2.0}, ()),
        ("gelu", {"name": "gelu"}, ()),
        ("gelu_approximate_false", {"name": "gelu", "approximate": False}, ()),
        ("gelu_approximate_true", {"name": "gelu", "approximate": True}, ()),
        ("sigmoid", {"name": "sigmoid"}, ()),
        ("hard_sigmoid", {"name": "hard_sigmoid"}, ()),
        ("hard_silu", {"name": "hard_silu"}, ()),
        ("hard_swish", {"name": "hard_swish"}, ()),
        ("tanh", {"name": "tanh"}, ()),
        ("hard_tanh", {"name": "hard_tanh"}, ()),
        ("softplus", {"name": "softplus"}, ()),
        ("softsign", {"name": "softsign"}, ()),
        ("silu", {"name": "silu"}, ()),
        ("swish", {"name": "swish"}, ()),
        ("mish", {"name": "mish"}, ()),
        ("exponential", {"name": "exponential"}, ()),
        ("log_sigmoid", {"name": "log_sigmoid"}, ()),
        ("tanh_shrink", {"name": "tanh_shrink"}, ()),
        ("soft_shrink", {"name": "soft_shrink"}, ()),
        ("soft_shrink_threshold_1", {"name": "soft_shrink", "threshold": 1.0}, ()),
        ("hard_shrink", {"name": "hard_shrink"}, ()),
        ("hard_shrink_threshold_1", {"name": "hard_shrink", "threshold": 1.0}, ()),
        ("squareplus", {"name": "squareplus"}, ()),
        ("squareplus_b_1", {"name": "squareplus", "b": 1.0}, ()),
        ("sparse_plus", {"name": "sparse_plus"}, ()),
        ("sparse_sigmoid", {"name": "sparse_sigmoid"}, ()),
    ]
    cases = []
    for case_id, spec, extra in specs:
        kinks = EXTRA_KINKS.get(spec["name"], ())
        x = grid(32, extra=(*kinks, *extra), rng=rng_for(case_id)).reshape(4, 8)
        cases.append(activation_case(case_id, spec, x))
    # a rank-3 input for an elementwise activation
    x = grid(30, rng=rng_for("relu_rank3")).reshape(2, 3, 5)
    cases.append(activation_case("relu_rank3", {"name": "relu"}, x))
    # softmax / log_softmax over the last axis and over another axis
    for name in ("softmax", "log_softmax"):
        x2 = grid(24, rng=rng_for(name)).reshape(4, 6)
        x3 = grid(30, rng=rng_for(name + "3")).reshape(2, 3, 5)
        cases.append(activation_case(name, {"name": name}, x2))
        cases.append(activation_case(f"{name}_axis_-1_rank3", {"name": name, "axis": -1}, x3))
        cases.append(activation_case(f"{name}_axis_0", {"name": name, "axis": 0}, x2))
        cases.append(activation_case(f"{name}_axis_1_rank3", {"name": name, "axis": 1}, x3))
    # FP64
    for case_id, spec in [
        ("fp64_relu", {"name": "relu"}),
        ("fp64_leaky_relu", {"name": "leaky_relu", "negative_slope": 0.125}),
        ("fp64_tanh", {"name": "tanh"}),
        ("fp64_sigmoid", {"name": "sigmoid"}),
        ("fp64_gelu", {"name": "gelu", "approximate": False}),
        ("fp64_gelu_approximate_true", {"name": "gelu", "approximate": True}),
        ("fp64_selu", {"name": "selu"}),
        ("fp64_celu_alpha_2", {"name": "celu", "alpha": 2.0}),
        ("fp64_silu", {"name": "silu"}),
        ("fp64_mish", {"name": "mish"}),
        ("fp64_squareplus", {"name": "squareplus"}),
        ("fp64_hard_silu", {"name": "hard_silu"}),
        ("fp64_sparse_plus", {"name": "sparse_plus"}),
        ("fp64_log_sigmoid", {"name": "log_sigmoid"}),
        ("fp64_elu", {"name": "elu"}),
        ("fp64_softplus", {"name": "softplus"}),
        ("fp64_softmax", {"name": "softmax"}),
        ("fp64_log_softmax_axis_0", {"name": "log_softmax", "axis": 0}),
    ]:
        x = grid(24, rng=rng_for(case_id), dtype=np.float64).reshape(4, 6)
        cases.append(activation_case(case_id, spec, x))
    cases += activation_cases_3_15()
    return cases


#: Values that float32 rounding of a parameter 0.7 separates (0.7 and 0.69999998807907).
NEAR_07 = (0.7, float(np.float32(0.7)), -0.7, 0.70000001, 1.4, -1.4)


def activation_cases_3_15():
    """glu, sparsemax, threshold; Keras's parameter domains (negative slopes and thresholds);
    layer class names; float64 parameters Keras rounds to float32 (and those it does not);
    gelu in float64 on a dense grid and every activation in float16 (the README's figures)."""
    cases = []

    def add(case_id, spec, x):
        cases.append(activation_case(case_id, spec, x))

    def g(case_id, n=32, extra=(), dtype=np.float32, shape=(4, 8)):
        return grid(n, extra=extra, rng=rng_for(case_id), dtype=dtype).reshape(shape)

    add("glu", {"name": "glu"}, g("glu"))
    add("glu_axis_0", {"name": "glu", "axis": 0}, g("glu_axis_0"))
    add("glu_axis_1_rank3", {"name": "glu", "axis": 1}, g("glu_axis_1_rank3", 24, shape=(2, 4, 3)))
    add("sparsemax", {"name": "sparsemax"}, g("sparsemax"))
    add("sparsemax_small_values", {"name": "sparsemax"}, (rng_for("sparsemax_small").normal(0, 0.4, (4, 8))).astype(np.float32))
    add("sparsemax_axis_0", {"name": "sparsemax", "axis": 0}, g("sparsemax_axis_0"))
    add("threshold", {"name": "threshold", "threshold": 0.5, "default_value": -1.0}, g("threshold"))
    add("threshold_negative", {"name": "threshold", "threshold": -1.0, "default_value": 2.5}, g("threshold_negative"))
    # Keras's domains: negative slopes, thresholds and max_value, negative alphas
    add("relu_negative_slope_-0.3", {"name": "relu", "negative_slope": -0.3}, g("relu_ns"))
    add("relu_threshold_-1", {"name": "relu", "threshold": -1.0}, g("relu_thr_neg"))
    add("relu_max_value_-1", {"name": "relu", "max_value": -1.0}, g("relu_max_neg"))
    add("relu_all_negative", {"name": "relu", "negative_slope": -0.5, "max_value": 2.0, "threshold": -0.5},
        g("relu_all_negative", extra=(-0.5, 2.0)))
    add("leaky_relu_slope_-0.5", {"name": "leaky_relu", "negative_slope": -0.5}, g("leaky_neg"))
    add("elu_alpha_-1", {"name": "elu", "alpha": -1.0}, g("elu_neg"))
    add("celu_alpha_-1.5", {"name": "celu", "alpha": -1.5}, g("celu_neg", extra=(-10.0,)))
    add("soft_shrink_threshold_-1", {"name": "soft_shrink", "threshold": -1.0}, g("soft_shrink_neg"))
    add("hard_shrink_threshold_-1", {"name": "hard_shrink", "threshold": -1.0}, g("hard_shrink_neg"))
    # layer class names (keras.layers.*: LeakyReLU's default slope is 0.3; alpha is Keras 2's name)
    add("layer_LeakyReLU", {"name": "LeakyReLU"}, g("layer_LeakyReLU"))
    add("layer_LeakyReLU_alpha_0.1", {"name": "LeakyReLU", "alpha": 0.1}, g("layer_LeakyReLU_alpha"))
    add("layer_ReLU_max_value_threshold", {"name": "ReLU", "max_value": 4.0, "threshold": 0.5}, g("layer_ReLU", extra=(0.5, 4.0)))
    add("layer_ELU_alpha_0.5", {"name": "ELU", "alpha": 0.5}, g("layer_ELU"))
    add("layer_Softmax", {"name": "Softmax"}, g("layer_Softmax"))
    # float64 parameters: rounded to float32 by Keras (leaky slope, relu threshold/max_value) ...
    for case_id, spec in [
        ("fp64_relu_threshold_0.7", {"name": "relu", "threshold": 0.7}),
        ("fp64_relu_max_value_0.7", {"name": "relu", "max_value": 0.7}),
        ("fp64_relu_negative_slope_0.7", {"name": "relu", "negative_slope": 0.7}),
        ("fp64_leaky_relu_default", {"name": "leaky_relu"}),
        ("fp64_leaky_relu_0.7", {"name": "leaky_relu", "negative_slope": 0.7}),
        ("fp64_layer_LeakyReLU", {"name": "LeakyReLU"}),
        # ... and used exactly (relu's slope beside a threshold, and every other parameter)
        ("fp64_relu_negative_slope_0.7_threshold_0.3", {"name": "relu", "negative_slope": 0.7, "threshold": 0.3}),
        ("fp64_elu_alpha_0.7", {"name": "elu", "alpha": 0.7}),
        ("fp64_celu_alpha_0.7", {"name": "celu", "alpha": 0.7}),
        ("fp64_soft_shrink_0.7", {"name": "soft_shrink", "threshold": 0.7}),
        ("fp64_hard_shrink_0.7", {"name": "hard_shrink", "threshold": 0.7}),
        ("fp64_squareplus_b_0.7", {"name": "squareplus", "b": 0.7}),
        ("fp64_threshold_0.7", {"name": "threshold", "threshold": 0.7, "default_value": 0.7}),
        ("fp64_glu", {"name": "glu"}),
        ("fp64_sparsemax", {"name": "sparsemax"}),
    ]:
        add(case_id, spec, g(case_id, 24, extra=NEAR_07, dtype=np.float64, shape=(4, 6)))
    # gelu in float64 on [-8, 8] (the README's figure for Keras's float32 constants)
    dense_grid = np.linspace(-8.0, 8.0, 401).reshape(1, 401)
    add("fp64_gelu_dense_grid", {"name": "gelu"}, dense_grid)
    add("fp64_gelu_approximate_dense_grid", {"name": "gelu", "approximate": True}, dense_grid)
    # float16: every activation on one grid (Keras's half-precision kernels)
    fp16 = [
        {"name": n} for n in (
            "linear", "relu", "leaky_relu", "relu6", "elu", "selu", "celu", "gelu", "sigmoid",
            "hard_sigmoid", "hard_silu", "tanh", "hard_tanh", "softplus", "softsign", "silu", "mish",
            "log_sigmoid", "tanh_shrink", "soft_shrink", "hard_shrink", "squareplus", "sparse_plus",
            "sparse_sigmoid", "softmax", "log_softmax", "glu", "sparsemax")
    ] + [{"name": "gelu", "approximate": True}, {"name": "exponential"}]
    for spec in fp16:
        case_id = "fp16_" + "_".join(str(v) for v in spec.values())
        x = g(case_id)
        x = np.clip(x, -8, 8) if spec["name"] == "exponential" else x
        add(case_id, spec, x.astype(np.float16))
    return cases


# ----------------------------------------------------------------------------- losses


def loss_case(case_id, spec, y_true, y_pred, sample_weight=None):
    dtype = str(y_pred.dtype)
    loss = keras_loss(spec, dtype)
    yp = tf.constant(y_pred)
    sw = None if sample_weight is None else tf.constant(sample_weight)
    with tf.GradientTape() as tape:
        tape.watch(yp)
        value = loss(tf.constant(y_true), yp, sample_weight=sw)
    gradient = tape.gradient(value, yp)  # of the sum, for a tensor value (reduction "none")
    assert value.dtype == yp.dtype, (case_id, value.dtype)
    assert np.all(np.isfinite(value.numpy())) and np.all(np.isfinite(gradient.numpy())), case_id
    case = {
        "id": case_id,
        "loss": spec,
        "y_true": wire(y_true),
        "y_pred": wire(y_pred),
        "expected": {"value": wire(value) if value.shape.rank else scalar(value), "gradient": wire(gradient)},
    }
    if sample_weight is not None:
        case["sample_weight"] = wire(sample_weight)
    return case


def loss_cases():
    cases = []

    def add(case_id, spec, y_true, y_pred):
        cases.append(loss_case(case_id, spec, y_true, y_pred))

    def normal(case_id, shape, scale=1.0, dtype=np.float32):
        r = rng_for(case_id)
        return r.normal(0, scale, shape).astype(dtype), r.normal(0, scale, shape).astype(dtype)

    def probs(case_id, shape, dtype=np.float32):
        r = rng_for(case_id)
        return r.uniform(0.02, 0.98, shape).astype(dtype)

    def onehot(case_id, shape, dtype=np.float32):
        r = rng_for(case_id + "/labels")
        idx = r.integers(0, shape[-1], shape[:-1])
        return np.eye(shape[-1])[idx].astype(dtype)

    def simplex(case_id, shape, dtype=np.float32):
        r = rng_for(case_id + "/simplex")
        p = r.uniform(0.05, 1.0, shape)
        return (p / p.sum(axis=-1, keepdims=True)).astype(dtype)

    for name in ("mean_squared_error", "mean_absolute_error", "mse", "mae"):
        t, p = normal(name, (4, 3))
        p[0, 1] = t[0, 1]  # a zero error (|e| has derivative 0 there, as TF)
        p[2, 2] = t[2, 2]
        add(name, {"name": name}, t, p)
        t, p = normal(name + "_rank3", (2, 3, 4))
        add(name + "_rank3", {"name": name}, t, p)
    t, p = normal("huber", (4, 3), scale=1.5)
    p[1, 0] = t[1, 0] + 1.0  # |error| == delta exactly
    p[3, 2] = t[3, 2]
    add("huber", {"name": "huber"}, t, p)
    add("huber_delta_1", {"name": "huber", "delta": 1.0}, *normal("huber_delta_1", (5, 2), scale=1.5))
    t, p = normal("huber_delta_2.5_rank3", (2, 3, 4), scale=3.0)
    p[0, 0, 0] = t[0, 0, 0] - 2.5
    add("huber_delta_2.5_rank3", {"name": "huber", "delta": 2.5}, t, p)
    add("huber_delta_0.25", {"name": "huber", "delta": 0.25}, *normal("huber_delta_0.25", (3, 4)))

    # binary crossentropy
    bt = (rng_for("bce/labels").uniform(size=(4, 3)) > 0.5).astype(np.float32)
    add("binary_crossentropy", {"name": "binary_crossentropy"}, bt, probs("bce", (4, 3)))
    add("binary_crossentropy_from_logits_false", {"name": "binary_crossentropy", "from_logits": False},
        rng_for("bce_soft").uniform(0, 1, (3, 4)).astype(np.float32), probs("bce_soft2", (3, 4)))
    bt3 = (rng_for("bce3/labels").uniform(size=(2, 3, 4)) > 0.5).astype(np.float32)
    add("binary_crossentropy_rank3", {"name": "binary_crossentropy"}, bt3, probs("bce3", (2, 3, 4)))
    clip_t = np.array([[0, 1, 0, 1, 1, 0], [1, 0, 0.5, 1, 0, 0.25]], np.float32)
    clip_p = np.array([[0.0, 1.0, 1.0, 0.0, 1e-9, 1 - 1e-9], [1e-7, 1 - 1e-7, 0.5, 1e-6, 0.999999, 2e-8]], np.float32)
    add("binary_crossentropy_beyond_clip", {"name": "binary_crossentropy"}, clip_t, clip_p)
    logits = rng_for("bce_logits").normal(0, 3, (4, 3)).astype(np.float32)
    logits[0, :] = [30.0, -30.0, 0.0]
    add("binary_crossentropy_from_logits", {"name": "binary_crossentropy", "from_logits": True}, bt, logits)
    add("binary_crossentropy_from_logits_rank3", {"name": "binary_crossentropy", "from_logits": True},
        bt3, rng_for("bce_logits3").normal(0, 2, (2, 3, 4)).astype(np.float32))

    # categorical crossentropy
    add("categorical_crossentropy", {"name": "categorical_crossentropy"}, onehot("cce", (4, 5)), simplex("cce", (4, 5)))
    add("categorical_crossentropy_soft_labels", {"name": "categorical_crossentropy", "from_logits": False},
        simplex("cce_soft_t", (3, 4)), simplex("cce_soft_p", (3, 4)))
    add("categorical_crossentropy_rank3", {"name": "categorical_crossentropy"},
        onehot("cce3", (2, 3, 4)), simplex("cce3", (2, 3, 4)))
    unnorm = rng_for("cce_unnormalised").uniform(0.05, 2.0, (3, 4)).astype(np.float32)
    add("categorical_crossentropy_rows_not_summing_to_1", {"name": "categorical_crossentropy"},
        onehot("cce_unnormalised", (3, 4)), unnorm)
    cce_clip_p = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [1e-9, 0.5, 0.5 - 1e-9, 0.0]], np.float32)
    cce_clip_t = np.array([[1, 0, 0, 0], [1, 0, 0, 0], [0.5, 0.25, 0.25, 0]], np.float32)
    add("categorical_crossentropy_beyond_clip", {"name": "categorical_crossentropy"}, cce_clip_t, cce_clip_p)
    cl = rng_for("cce_logits").normal(0, 3, (4, 5)).astype(np.float32)
    cl[0] = [30.0, -30.0, 0.0, 1.0, -1.0]
    add("categorical_crossentropy_from_logits", {"name": "categorical_crossentropy", "from_logits": True},
        onehot("cce_logits", (4, 5)), cl)
    add("categorical_crossentropy_from_logits_rank3", {"name": "categorical_crossentropy", "from_logits": True},
        simplex("cce_logits3", (2, 3, 4)), rng_for("cce_logits3").normal(0, 2, (2, 3, 4)).astype(np.float32))

    # FP64 (Keras Loss objects built with dtype="float64"; the default casts to float32)
    add("fp64_mean_squared_error", {"name": "mean_squared_error"}, *normal("fp64_mse", (4, 3), dtype=np.float64))
    add("fp64_huber_delta_0.5", {"name": "huber", "delta": 0.5}, *normal("fp64_huber", (2, 3, 2), dtype=np.float64))
    add("fp64_binary_crossentropy", {"name": "binary_crossentropy"},
        (rng_for("fp64_bce/labels").uniform(size=(3, 3)) > 0.5).astype(np.float64), probs("fp64_bce", (3, 3), np.float64))
    add("fp64_categorical_crossentropy_from_logits", {"name": "categorical_crossentropy", "from_logits": True},
        onehot("fp64_cce", (3, 4), np.float64), rng_for("fp64_cce").normal(0, 2, (3, 4)))
    cases += loss_cases_3_15()
    return cases


def loss_cases_3_15():
    """Every other closed-form loss of keras.losses 3.15, each option, each reduction,
    sample_weight; FP32 and FP64."""
    cases = []

    def add(case_id, spec, y_true, y_pred, sample_weight=None):
        cases.append(loss_case(case_id, spec, y_true, y_pred, sample_weight))

    def r(case_id):
        return rng_for(case_id)

    def both(case_id, spec, make, sample_weight=None):
        """One FP32 case and one FP64 case from ``make(rng, dtype) -> (y_true, y_pred)``."""
        for prefix, dtype in (("", np.float32), ("fp64_", np.float64)):
            t, p = make(r(prefix + case_id), dtype)
            sw = None if sample_weight is None else np.asarray(sample_weight, dtype)
            add(prefix + case_id, spec, t, p, sw)

    normal = lambda rng, dt, shape=(4, 3): (rng.normal(0, 1, shape).astype(dt), rng.normal(0, 1, shape).astype(dt))  # noqa: E731

    def onehot(rng, dt, shape=(4, 5)):
        return np.eye(shape[-1])[rng.integers(0, shape[-1], shape[:-1])].astype(dt)

    def simplex(rng, dt, shape=(4, 5)):
        p = rng.uniform(0.05, 1.0, shape)
        return (p / p.sum(axis=-1, keepdims=True)).astype(dt)

    def binary(rng, dt, shape=(4, 3)):
        return (rng.uniform(size=shape) > 0.5).astype(dt)

    def mape_inputs(rng, dt):
        t, p = normal(rng, dt)
        t[0, 0] = 0.0  # |t| < epsilon: divided by 1e-7
        p[1, 1] = t[1, 1]
        return t, p

    both("mean_absolute_percentage_error", {"name": "mean_absolute_percentage_error"}, mape_inputs)
    both("mape_alias", {"name": "mape"}, lambda rng, dt: normal(rng, dt, (3, 4)))

    def msle_inputs(rng, dt):
        t, p = rng.uniform(0, 3, (4, 3)).astype(dt), rng.uniform(0, 3, (4, 3)).astype(dt)
        p[0, 0], t[1, 1] = -0.5, -0.5  # below epsilon: max(., 1e-7)
        return t, p

    both("mean_squared_logarithmic_error", {"name": "mean_squared_logarithmic_error"}, msle_inputs)
    both("msle_alias_rank3", {"name": "MSLE"}, lambda rng, dt: (rng.uniform(0, 2, (2, 3, 4)).astype(dt), rng.uniform(0, 2, (2, 3, 4)).astype(dt)))

    def cosine_inputs(rng, dt):
        t, p = normal(rng, dt, (4, 3))
        p[2] = 0.0  # zero norm: the 1/epsilon cap
        return t, p

    both("cosine_similarity", {"name": "cosine_similarity"}, cosine_inputs)
    both("cosine_similarity_axis_0", {"name": "cosine_similarity", "axis": 0}, lambda rng, dt: normal(rng, dt, (4, 3)))

    def logcosh_inputs(rng, dt):
        t, p = normal(rng, dt, (4, 3))
        p[0, 0] = t[0, 0] + 30.0
        p[0, 1] = t[0, 1] - 30.0
        return t, p

    both("log_cosh", {"name": "log_cosh"}, logcosh_inputs)

    def hinge_inputs(rng, dt):
        t, p = binary(rng, dt), rng.normal(0, 1.5, (4, 3)).astype(dt)
        t[0, 0], p[0, 0] = 1.0, 1.0  # 1 - t·p = 0: the tie
        return t, p

    def signed_inputs(rng, dt):
        return (binary(rng, dt) * 2 - 1).astype(dt), rng.normal(0, 1.5, (4, 3)).astype(dt)

    both("hinge", {"name": "hinge"}, hinge_inputs)
    both("hinge_signed_labels", {"name": "hinge"}, signed_inputs)
    both("squared_hinge", {"name": "squared_hinge"}, hinge_inputs)
    both("squared_hinge_signed_labels", {"name": "SquaredHinge"}, signed_inputs)

    def cat_hinge_inputs(rng, dt):
        t, p = onehot(rng, dt), rng.normal(0, 1, (4, 5)).astype(dt)
        p[1, :] = 0.5  # tied maxima
        return t, p

    both("categorical_hinge", {"name": "categorical_hinge"}, cat_hinge_inputs)

    def kld_inputs(rng, dt):
        t, p = simplex(rng, dt), simplex(rng, dt)
        t[0, 0], p[1, 1] = 0.0, 0.0  # clipped to epsilon
        return t, p

    both("kl_divergence", {"name": "kl_divergence"}, kld_inputs)
    both("kld_alias", {"name": "kld"}, lambda rng, dt: (simplex(rng, dt), simplex(rng, dt)))
    both("poisson", {"name": "poisson"}, lambda rng, dt: (rng.poisson(2.0, (4, 3)).astype(dt), rng.uniform(0.1, 4, (4, 3)).astype(dt)))

    def probs(rng, dt, shape=(4, 3)):
        p = rng.uniform(0.02, 0.98, shape)
        p.flat[0], p.flat[1] = 0.0, 1.0  # beyond the clip
        return p.astype(dt)

    def logits(rng, dt, shape=(4, 3)):
        z = rng.normal(0, 3, shape)
        z.flat[0], z.flat[1] = 30.0, -30.0
        return z.astype(dt)

    bfce = "binary_focal_crossentropy"
    both(bfce, {"name": bfce}, lambda rng, dt: (binary(rng, dt), probs(rng, dt)))
    both(bfce + "_from_logits", {"name": bfce, "from_logits": True}, lambda rng, dt: (binary(rng, dt), logits(rng, dt)))
    both(bfce + "_balanced", {"name": bfce, "apply_class_balancing": True, "alpha": 0.4, "gamma": 1.5},
         lambda rng, dt: (binary(rng, dt), probs(rng, dt)))
    both(bfce + "_label_smoothing_axis_0", {"name": bfce, "label_smoothing": 0.2, "axis": 0, "gamma": 0.0},
         lambda rng, dt: (binary(rng, dt), probs(rng, dt)))
    cfce = "categorical_focal_crossentropy"
    both(cfce, {"name": cfce}, lambda rng, dt: (onehot(rng, dt), simplex(rng, dt)))
    both(cfce + "_from_logits", {"name": cfce, "from_logits": True, "alpha": 0.5, "gamma": 3.0},
         lambda rng, dt: (onehot(rng, dt), logits(rng, dt, (4, 5))))
    both(cfce + "_label_smoothing", {"name": cfce, "label_smoothing": 0.1},
         lambda rng, dt: (onehot(rng, dt), probs(rng, dt, (4, 5))))
    both(cfce + "_axis_0", {"name": cfce, "axis": 0},
         lambda rng, dt: (onehot(rng, dt, (5, 4)).T.copy(), simplex(rng, dt, (5, 4)).T.copy()))
    both(bfce + "_from_logits_label_smoothing", {"name": bfce, "from_logits": True, "label_smoothing": 0.1, "alpha": 0.7,
                                                 "apply_class_balancing": True},
         lambda rng, dt: (binary(rng, dt), logits(rng, dt)))
    both("categorical_crossentropy_axis_0", {"name": "categorical_crossentropy", "axis": 0},
         lambda rng, dt: (onehot(rng, dt, (5, 4)).T.copy(), simplex(rng, dt, (5, 4)).T.copy()))
    both("binary_crossentropy_axis_0_from_logits", {"name": "binary_crossentropy", "axis": 0, "from_logits": True},
         lambda rng, dt: (binary(rng, dt), logits(rng, dt)))

    scce = "sparse_categorical_crossentropy"

    def labels(rng, dt, shape=(4,), k=5):
        return rng.integers(0, k, shape).astype(dt)

    both(scce, {"name": scce}, lambda rng, dt: (labels(rng, dt), probs(rng, dt, (4, 5))))
    both(scce + "_from_logits", {"name": scce, "from_logits": True}, lambda rng, dt: (labels(rng, dt), logits(rng, dt, (4, 5))))
    both(scce + "_labels_n_by_1", {"name": scce}, lambda rng, dt: (labels(rng, dt, (4, 1)), simplex(rng, dt)))
    both(scce + "_rank3", {"name": scce, "from_logits": True}, lambda rng, dt: (labels(rng, dt, (2, 3), 4), logits(rng, dt, (2, 3, 4))))

    def ignored(rng, dt):
        t = labels(rng, dt, (6,), 4)
        t[[1, 4]] = 2.0
        return t, simplex(rng, dt, (6, 4))

    both(scce + "_ignore_class", {"name": scce, "ignore_class": 2}, ignored)
    both(scce + "_ignore_class_sum", {"name": scce, "ignore_class": 2, "reduction": "sum", "from_logits": True}, ignored)
    cgce = "categorical_generalized_cross_entropy"
    both(cgce, {"name": cgce}, lambda rng, dt: (labels(rng, dt), simplex(rng, dt)))
    both(cgce + "_q_0.2", {"name": cgce, "q": 0.2}, lambda rng, dt: (labels(rng, dt), simplex(rng, dt)))

    def masks(rng, dt, shape=(2, 4, 3)):
        return binary(rng, dt, shape), rng.uniform(0, 1, shape).astype(dt)

    both("dice", {"name": "dice"}, masks)
    both("dice_axis_1_2", {"name": "dice", "axis": [1, 2]}, masks)
    both("dice_axis_1", {"name": "dice", "axis": 1}, masks)
    both("tversky", {"name": "tversky"}, masks)
    both("tversky_alpha_beta_axis_1", {"name": "tversky", "alpha": 0.3, "beta": 0.7, "axis": 1}, masks)

    def embeddings(rng, dt, labels=(0, 1, 0, 2, 1, 2), normalise=True):
        e = rng.normal(0, 1, (len(labels), 3))
        if normalise:
            e = e / np.linalg.norm(e, axis=-1, keepdims=True)
        return np.asarray(labels, dt), e.astype(dt)

    both("circle", {"name": "circle"}, embeddings)
    both("circle_gamma_5_keep_diagonal", {"name": "circle", "gamma": 5.0, "margin": 0.25, "remove_diagonal": False},
         lambda rng, dt: embeddings(rng, dt, normalise=False))
    both("circle_singleton_label_masked", {"name": "Circle", "gamma": 10.0},
         lambda rng, dt: embeddings(rng, dt, labels=(0, 1, 0, 1, 2, 3)))

    # reductions and sample_weight
    sw4 = [1.0, 0.0, 2.5, 0.5]
    for reduction in ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none"):
        both(f"mean_squared_error_reduction_{reduction}_sample_weight", {"name": "mean_squared_error", "reduction": reduction},
             normal, sample_weight=sw4)
    both("mean_squared_error_reduction_none", {"name": "mean_squared_error", "reduction": "none"}, normal)
    both("huber_sample_weight_n_by_1", {"name": "huber", "delta": 0.5}, normal, sample_weight=[[1.0], [2.0], [0.5], [0.0]])
    both("categorical_crossentropy_reduction_none_sample_weight", {"name": "categorical_crossentropy", "reduction": "none"},
         lambda rng, dt: (onehot(rng, dt), simplex(rng, dt)), sample_weight=sw4)
    both("binary_crossentropy_rank3_sample_weight_per_step", {"name": "binary_crossentropy", "from_logits": True},
         lambda rng, dt: (binary(rng, dt, (2, 3, 4)), logits(rng, dt, (2, 3, 4))), sample_weight=[[1.0, 0.5, 2.0], [0.0, 1.0, 1.0]])
    both(scce + "_ignore_class_sample_weight", {"name": scce, "ignore_class": 2}, ignored,
         sample_weight=[1.0, 2.0, 0.5, 1.0, 3.0, 1.0])
    both("dice_sample_weight_axis_1_2", {"name": "dice", "axis": [1, 2], "reduction": "sum"}, masks, sample_weight=[0.5, 2.0])
    both("poisson_reduction_mean_with_sample_weight_zero_weights", {"name": "poisson", "reduction": "mean_with_sample_weight"},
         lambda rng, dt: (rng.poisson(2.0, (4, 3)).astype(dt), rng.uniform(0.1, 4, (4, 3)).astype(dt)),
         sample_weight=[0.0, 0.0, 0.0, 0.0])
    # class names
    both("class_name_KLDivergence", {"name": "KLDivergence"}, lambda rng, dt: (simplex(rng, dt), simplex(rng, dt)))
    both("class_name_LogCosh", {"name": "LogCosh"}, normal)
    both("class_name_CategoricalGeneralizedCrossEntropy", {"name": "CategoricalGeneralizedCrossEntropy", "q": 0.7},
         lambda rng, dt: (labels(rng, dt), simplex(rng, dt)))
    return cases


# ----------------------------------------------------------------------------- dense


def make_dense(kernel, bias, activation=None, kernel_regularizer=None, bias_regularizer=None,
               activity_regularizer=None, name=None):
    layer = keras.layers.Dense(
        kernel.shape[1],
        activation=keras_activation(activation, str(kernel.dtype)),
        use_bias=bias is not None,
        kernel_regularizer=keras_regularizer(kernel_regularizer),
        bias_regularizer=keras_regularizer(bias_regularizer),
        activity_regularizer=keras_regularizer(activity_regularizer),
        dtype=str(kernel.dtype),
        name=name,
    )
    layer.build((None, kernel.shape[0]))
    layer.set_weights([kernel] if bias is None else [kernel, bias])
    return layer


def params_of(layer):
    return {"kernel": layer.kernel, **({"bias": layer.bias} if layer.bias is not None else {})}


def dense_case(case_id, inputs, kernel, bias, activation=None, kr=None, br=None, ar=None, norm="batch"):
    x = tf.constant(inputs)
    given = {"activity_regularizer": ar, "kernel_regularizer": kr, "bias_regularizer": br}
    given = {k: v for k, v in given.items() if v is not None}

    # 1. every regularizer on one Keras layer: Keras's own unlabelled layer.losses
    layer = make_dense(kernel, bias, activation, kr, br, ar)
    params = params_of(layer)
    with tf.GradientTape(persistent=True) as tape:
        outputs = layer(x)
        keras_losses = list(layer.losses)  # order: activity, kernel, bias
        weight_losses = keras_losses[1:] if ar is not None else keras_losses
        if norm == "batch":
            total = tf.add_n(keras_losses) if keras_losses else tf.zeros((), outputs.dtype)
        else:  # undivided activity penalty: the regularizer called on the output
            parts = ([keras_regularizer(ar)(outputs)] if ar is not None else []) + weight_losses
            total = tf.add_n(parts) if parts else tf.zeros((), outputs.dtype)
    # (no regularizer at all: total is a constant 0 and so is its gradient)
    total_grads = {p: tf.zeros_like(v.value) if g is None else g
                   for (p, v), g in zip(params.items(), grads(tape, total, list(params.values())), strict=True)}
    assert len(keras_losses) == len(given)

    # 2. one regularizer at a time, to label each term and its gradients
    losses, gradients = {}, {p: {} for p in params}
    for term, spec in given.items():
        one = make_dense(kernel, bias, activation, **{term: spec})
        one_params = params_of(one)
        with tf.GradientTape() as tape:
            out = one(x)
            if term == "activity_regularizer" and norm == "none":
                value = keras_regularizer(spec)(out)
            else:
                (value,) = one.losses
        losses[term] = scalar(value)
        for p, g in zip(one_params, grads(tape, value, list(one_params.values())), strict=True):
            if g is not None:
                gradients[p][term] = wire(g)
    losses["total"] = scalar(total)
    for p in params:
        gradients[p]["total"] = wire(total_grads[p])

    # cross-checks: labelled terms against Keras's unlabelled list and the total
    order = [t for t in ("activity_regularizer", "kernel_regularizer", "bias_regularizer") if t in given]
    for term, kl in zip(order, keras_losses, strict=True):
        expected = losses[term] if (term != "activity_regularizer" or norm == "batch") else losses[term] / inputs.shape[0]
        np.testing.assert_allclose(scalar(kl), expected, rtol=1e-6, err_msg=f"{case_id} {term}")
    np.testing.assert_allclose(sum(losses[t] for t in order), losses["total"], rtol=1e-6, atol=1e-12)

    return {
        "id": case_id,
        "request": {
            "inputs": wire(inputs),
            "kernel": wire(kernel),
            "bias": None if bias is None else wire(bias),
            "activation": activation,
            "kernel_regularizer": kr,
            "bias_regularizer": br,
            "activity_regularizer": ar,
            "activity_normalization": norm,
        },
        "expected": {"outputs": wire(outputs), "losses": losses, "gradients": gradients},
        "keras_layer_losses": [scalar(v) for v in keras_losses],
    }


def dense_cases():
    cases = []

    def add(case_id, in_shape, units, activation=None, kr=None, br=None, ar=None, norm="batch",
            use_bias=True, dtype=np.float32, inputs=None, scale=0.5):
        r = rng_for(case_id)
        x = r.normal(0, 1, in_shape).astype(dtype) if inputs is None else np.asarray(inputs, dtype)
        kernel = r.normal(0, scale, (x.shape[-1], units)).astype(dtype)
        bias = r.normal(0, 0.3, (units,)).astype(dtype) if use_bias else None
        cases.append(dense_case(case_id, x, kernel, bias, activation, kr, br, ar, norm))

    L1 = {"type": "l1", "l1": 0.1}
    L2 = {"type": "l2", "l2": 0.1}
    # SPEC §7 seed
    seed_x = np.ones((2, 2, 4)) * 3
    add("seed_dense3_l1_l2_l1_ones_2x2x4_times3", None, 3, None, L1, L2, L1, inputs=seed_x)
    add("seed_dense3_l1_l2_l1_ones_2x2x4_times3_none", None, 3, None, L1, L2, L1, norm="none", inputs=seed_x)
    add("rank2_relu_all_three", (5, 4), 3, "relu", {"type": "l2", "l2": 0.01}, {"type": "l1", "l1": 0.02}, {"type": "l2", "l2": 0.05})
    add("rank2_relu_all_three_none", (5, 4), 3, "relu", {"type": "l2", "l2": 0.01}, {"type": "l1", "l1": 0.02}, {"type": "l2", "l2": 0.05}, norm="none")
    add("rank2_linear_null_activation_kernel_only", (3, 4), 2, None, {"type": "l1", "l1": 0.01})
    add("rank2_linear_bias_only", (3, 4), 2, "linear", br={"type": "l2", "l2": 0.2})
    add("rank2_sigmoid_activity_l2", (4, 3), 5, "sigmoid", ar={"type": "l2", "l2": 0.1})
    add("rank2_tanh_activity_l1l2_none", (4, 3), 2, "tanh", ar={"type": "l1l2", "l1": 0.01, "l2": 0.02}, norm="none")
    # (L1 alone on a softmax output is constant, Σ|softmax| = rows: its gradient is rounding noise)
    add("rank2_softmax_activity_l1l2", (4, 5), 4, "softmax", ar={"type": "l1l2", "l1": 0.1, "l2": 0.1})
    add("rank2_softmax_activity_l2_all_three", (3, 4), 3, "softmax", L2, L1, {"type": "l2", "l2": 0.3})
    add("rank2_leaky_relu_no_bias_kernel_activity", (6, 3), 4, "leaky_relu", {"type": "l2", "l2": 0.02}, ar={"type": "l1", "l1": 0.05}, use_bias=False)
    add("rank2_leaky_relu_slope_0.1", (4, 3), 3, {"name": "leaky_relu", "negative_slope": 0.1}, ar={"type": "l2", "l2": 0.1})
    add("rank2_relu_params", (4, 3), 3, {"name": "relu", "negative_slope": 0.1, "max_value": 1.0}, ar={"type": "l1", "l1": 0.1})
    add("rank2_elu_orthogonal_columns_kernel", (4, 5), 3, "elu", {"type": "orthogonal", "factor": 0.1, "mode": "columns"}, {"type": "l1", "l1": 0.01})
    add("rank2_no_regularizers", (3, 4), 2, "relu")
    add("rank2_no_regularizers_no_bias", (3, 4), 2, None, use_bias=False)
    add("rank3_relu_all_three", (2, 3, 4), 3, "relu", L1, L2, L1)
    add("rank3_relu_no_bias_activity_l1_none", (2, 3, 4), 3, "relu", ar=L1, norm="none", use_bias=False)
    add("rank3_tanh_orthogonal_rows_kernel_l1l2_bias", (3, 2, 4), 3, "tanh", {"type": "orthogonal", "factor": 0.2, "mode": "rows"}, {"type": "l1l2", "l1": 0.01, "l2": 0.01})
    add("rank3_sigmoid_activity_l1", (2, 2, 3), 4, "sigmoid", ar=L1)
    add("rank3_softmax_activity_l2_none", (2, 3, 4), 3, "softmax", ar=L2, norm="none")
    add("rank3_leaky_relu_all_three", (2, 3, 3), 2, "leaky_relu", L2, L2, L2)
    add("rank4_linear_activity_l1", (2, 2, 2, 3), 2, None, ar=L1)
    add("identifiers_and_serialized_specs", (3, 4), 3, "relu", "l2", {"class_name": "L1", "config": {"l1": 0.02}}, "l1")
    add("fp64_rank2_tanh_all_three", (4, 3), 3, "tanh", {"type": "l2", "l2": 0.125}, {"type": "l1", "l1": 0.25}, {"type": "l1l2", "l1": 0.5, "l2": 0.25}, dtype=np.float64)
    add("fp64_rank3_relu_all_three_none", (2, 2, 3), 2, "relu", {"type": "l1", "l1": 0.125}, {"type": "l2", "l2": 0.5}, {"type": "l2", "l2": 0.25}, norm="none", dtype=np.float64)

    seed = cases[0]
    k = np.array(seed["request"]["kernel"]["data"], np.float32)
    assert np.all(k != 0)
    assert len(seed["keras_layer_losses"]) == 3
    return cases


# ----------------------------------------------------------------------------- network


FIT_CHECKS: list[str] = []


def network_case(case_id, inputs, targets, layer_defs, loss="mean_squared_error", norm="batch",
                 sample_weight=None, bare_output=False):
    """One network case.  ``bare_output``: the data loss sees ``tf.identity`` of the output,
    which carries no logits (the loss of the probabilities, what the service computes for a
    softmax over another axis than the loss's); Keras's own ``fit`` value (the logits
    shortcut) is then recorded beside it as ``keras_fit``."""
    dtype = str(inputs.dtype)
    names = [d.get("name") or ("dense" if i == 0 else f"dense_{i}") for i, d in enumerate(layer_defs)]
    layers = [
        make_dense(d["kernel"], d["bias"], d.get("activation"), d.get("kernel_regularizer"),
                   d.get("bias_regularizer"), d.get("activity_regularizer"), name=name)
        for d, name in zip(layer_defs, names, strict=True)
    ]
    loss_obj = keras_loss(loss, dtype)
    params = {}
    for name, layer in zip(names, layers, strict=True):
        params.update({f"{name}/{p}": v for p, v in params_of(layer).items()})

    terms = {}
    with tf.GradientTape(persistent=True) as tape:
        h = tf.constant(inputs)
        for name, layer, d in zip(names, layers, layer_defs, strict=True):
            h = layer(h)
            own = list(layer.losses)  # activity (divided by batch), kernel, bias
            labels = [t for t in ("activity_regularizer", "kernel_regularizer", "bias_regularizer") if d.get(t) is not None]
            assert len(own) == len(labels), case_id
            for label, value in zip(labels, own, strict=True):
                if label == "activity_regularizer":
                    direct = keras_regularizer(d[label])(h)
                    np.testing.assert_allclose(scalar(value), scalar(direct) / inputs.shape[0], rtol=1e-6)
                    if norm == "none":
                        value = direct
                else:
                    weight = layer.kernel if label == "kernel_regularizer" else layer.bias
                    np.testing.assert_allclose(scalar(value), scalar(keras_regularizer(d[label])(weight)), rtol=1e-6)
                terms[f"{name}/{label}"] = value
        outputs = h
        sw = None if sample_weight is None else tf.constant(sample_weight)
        # the model output itself: logits shortcut as in fit (unless bare_output)
        data_loss = loss_obj(tf.constant(targets), tf.identity(outputs) if bare_output else outputs, sample_weight=sw)
        data_values = None
        if data_loss.shape.rank:  # reduction "none": the per-sample values; their sum is the term
            data_values, data_loss = data_loss, tf.reduce_sum(data_loss)
        total = tf.add_n([data_loss, *terms.values()])
    keras_fit = scalar(loss_obj(tf.constant(targets), outputs, sample_weight=sw)) if bare_output else None
    all_terms = {"data_loss": data_loss, **terms}

    losses = {k: scalar(v) for k, v in all_terms.items()}
    losses["total"] = scalar(total)
    gradients = {p: {} for p in params}
    for term, value in [*all_terms.items(), ("total", total)]:
        for p, g in zip(params, grads(tape, value, list(params.values())), strict=True):
            if g is not None:
                gradients[p][term] = wire(g)
    for p in params:
        assert "total" in gradients[p] and "data_loss" in gradients[p], (case_id, p)

    # What fit applies: one SGD(1.0) step moves each parameter by -total.  Not for "none"
    # (fit divides activity penalties) nor float64 (Keras fit then fails adding a float32
    # data loss to float64 penalties).
    # (glu: Keras's Dense infers its output shape without the halving, so a model cannot
    # hold it; the layers work when called eagerly, as above)
    uses_glu = any("glu" in json.dumps(d.get("activation")) for d in layer_defs)
    if norm == "batch" and dtype == "float32" and not bare_output and data_values is None and not uses_glu:
        FIT_CHECKS.append(case_id)
        model = keras.Sequential(layers)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss=loss_obj)
        before = {p: v.numpy().copy() for p, v in params.items()}
        logs = model.train_on_batch(inputs, targets, sample_weight=sample_weight, return_dict=True)
        for p, v in params.items():
            applied = before[p] - v.numpy()
            expected = np.array(gradients[p]["total"]["data"]).reshape(applied.shape)
            tol = 4 * np.finfo(applied.dtype).eps * max(1.0, np.abs(before[p]).max())
            np.testing.assert_allclose(applied, expected, rtol=1e-4, atol=tol, err_msg=f"{case_id} {p}")
        np.testing.assert_allclose(logs["loss"], losses["total"], rtol=1e-5, err_msg=case_id)

    request_layers = []
    for d in layer_defs:
        entry = {"name": d["name"]} if d.get("name") else {}
        entry.update({
            "kernel": wire(d["kernel"]),
            "bias": None if d["bias"] is None else wire(d["bias"]),
            "activation": d.get("activation"),
            "kernel_regularizer": d.get("kernel_regularizer"),
            "bias_regularizer": d.get("bias_regularizer"),
            "activity_regularizer": d.get("activity_regularizer"),
        })
        request_layers.append(entry)
    case = {
        "id": case_id,
        "request": {
            "inputs": wire(inputs),
            "targets": wire(targets),
            "layers": request_layers,
            "loss": loss,
            "activity_normalization": norm,
        },
        "expected": {"outputs": wire(outputs), "losses": losses, "gradients": gradients},
    }
    if sample_weight is not None:
        case["request"]["sample_weight"] = wire(sample_weight)
    if data_values is not None:
        case["expected"]["data_loss_values"] = wire(data_values)
    if keras_fit is not None:
        case["keras_fit"] = {"data_loss": keras_fit}
    return case


def network_cases():
    cases = []

    def add(case_id, in_shape, layers, loss="mean_squared_error", norm="batch", targets="normal",
            dtype=np.float32, kernel_scale=0.6, inputs=None, sample_weight=None, bare_output=False):
        r = rng_for(case_id)
        x = r.normal(0, 1, in_shape).astype(dtype) if inputs is None else np.asarray(inputs, dtype)
        defs, width = [], x.shape[-1]
        for spec in layers:
            spec = dict(spec)
            if "kernel" in spec:  # given exactly (the issue's examples), no bias
                spec["kernel"] = np.asarray(spec["kernel"], dtype)
                spec.setdefault("bias", None)
                units = spec["kernel"].shape[1]
            else:
                units = spec.pop("units")
                use_bias = spec.pop("use_bias", True)
                spec["kernel"] = r.normal(0, spec.pop("scale", kernel_scale), (width, units)).astype(dtype)
                spec["bias"] = r.normal(0, 0.3, (units,)).astype(dtype) if use_bias else None
            defs.append(spec)
            act = spec.get("activation")
            width = units // 2 if act == "glu" or (isinstance(act, dict) and act["name"] == "glu") else units
        out_shape = (*x.shape[:-1], width)
        if isinstance(targets, list):
            y = np.asarray(targets, np.float64)
        elif targets == "normal":
            y = r.normal(0, 1, out_shape)
        elif targets == "binary":
            y = (r.uniform(size=out_shape) > 0.5).astype(np.float64)
        elif targets == "onehot":
            y = np.eye(width)[r.integers(0, width, out_shape[:-1])]
        elif targets == "labels":
            y = r.integers(0, width, out_shape[:-1]).astype(np.float64)
        elif targets == "counts":
            y = r.poisson(1.5, out_shape).astype(np.float64)
        elif targets == "simplex":
            y = r.uniform(0.05, 1, out_shape)
            y = y / y.sum(axis=-1, keepdims=True)
        sw = None if sample_weight is None else np.asarray(sample_weight, dtype)
        cases.append(network_case(case_id, x, y.astype(dtype), defs, loss, norm, sw, bare_output))

    L1 = lambda f: {"type": "l1", "l1": f}  # noqa: E731
    L2 = lambda f: {"type": "l2", "l2": f}  # noqa: E731
    add("one_layer_linear_mse_kernel_l2", (4, 3), [{"units": 2, "kernel_regularizer": L2(0.01)}])
    add("one_layer_all_three_mse", (4, 3), [{"units": 2, "activation": "tanh", "kernel_regularizer": L1(0.01), "bias_regularizer": L2(0.01), "activity_regularizer": L1(0.01)}])
    add("one_layer_no_regularizers_mae", (5, 3), [{"units": 2, "activation": "relu"}], loss="mean_absolute_error")
    # seed 003: relu vs leaky_relu hidden layer with an L1 activity penalty, mse
    seed003 = lambda act: [  # noqa: E731
        {"units": 6, "activation": act, "activity_regularizer": L1(0.01)},
        {"units": 2},
    ]
    add("seed003_relu_hidden_activity_l1_mse", (8, 5), seed003("relu"))
    add("seed003_leaky_relu_hidden_activity_l1_mse", (8, 5), seed003("leaky_relu"))
    add("seed003_leaky_relu_slope_0.3_hidden_activity_l1_mse", (8, 5), seed003({"name": "leaky_relu", "negative_slope": 0.3}))
    add("seed003_relu_hidden_no_regularizer_mse", (8, 5), [{"units": 6, "activation": "relu"}, {"units": 2}])
    add("seed003_leaky_relu_hidden_no_regularizer_mse", (8, 5), [{"units": 6, "activation": "leaky_relu"}, {"units": 2}])
    add("two_layers_relu_mse_all_regularizers", (6, 4), [
        {"units": 5, "activation": "relu", "kernel_regularizer": L2(0.01), "bias_regularizer": L1(0.01), "activity_regularizer": L2(0.01)},
        {"units": 3, "kernel_regularizer": L1(0.02), "bias_regularizer": L2(0.02), "activity_regularizer": L1(0.01)},
    ])
    add("two_layers_relu_mse_all_regularizers_none", (6, 4), [
        {"units": 5, "activation": "relu", "kernel_regularizer": L2(0.01), "bias_regularizer": L1(0.01), "activity_regularizer": L2(0.01)},
        {"units": 3, "kernel_regularizer": L1(0.02), "bias_regularizer": L2(0.02), "activity_regularizer": L1(0.01)},
    ], norm="none")
    add("two_layers_elu_mae", (5, 3), [
        {"units": 4, "activation": "elu", "activity_regularizer": L1(0.02)},
        {"units": 2, "kernel_regularizer": L2(0.05)},
    ], loss="mean_absolute_error")
    add("two_layers_tanh_huber", (6, 3), [
        {"units": 4, "activation": "tanh", "activity_regularizer": L2(0.05)},
        {"units": 2, "kernel_regularizer": L1(0.01), "scale": 2.0},
    ], loss="huber")
    add("two_layers_relu_huber_delta_0.5_rank3", (2, 3, 4), [
        {"units": 5, "activation": "relu", "activity_regularizer": L1(0.01), "kernel_regularizer": L2(0.01)},
        {"units": 2, "activation": "linear", "scale": 1.5},
    ], loss={"name": "huber", "delta": 0.5})
    add("two_layers_relu_sigmoid_bce", (6, 4), [
        {"units": 5, "activation": "relu", "activity_regularizer": L1(0.01)},
        {"units": 3, "activation": "sigmoid", "kernel_regularizer": L2(0.01)},
    ], loss="binary_crossentropy", targets="binary")
    add("two_layers_sigmoid_bce_saturated_logits", (4, 3), [
        {"units": 4, "activation": "tanh"},
        {"units": 2, "activation": "sigmoid", "scale": 20.0},
    ], loss="binary_crossentropy", targets="binary")
    add("two_layers_linear_bce_from_logits", (6, 4), [
        {"units": 4, "activation": "relu", "activity_regularizer": L2(0.02)},
        {"units": 2, "activation": "linear"},
    ], loss={"name": "binary_crossentropy", "from_logits": True}, targets="binary")
    add("two_layers_hard_sigmoid_bce_clipped", (5, 3), [
        {"units": 4, "activation": "relu"},
        {"units": 3, "activation": "hard_sigmoid", "scale": 4.0},
    ], loss="binary_crossentropy", targets="binary")
    add("two_layers_relu_softmax_cce", (6, 4), [
        {"units": 5, "activation": "relu", "activity_regularizer": L2(0.01), "kernel_regularizer": {"type": "orthogonal", "factor": 0.05, "mode": "rows"}},
        {"units": 3, "activation": "softmax", "kernel_regularizer": L2(0.01), "bias_regularizer": L1(0.01)},
    ], loss="categorical_crossentropy", targets="onehot")
    add("two_layers_softmax_cce_saturated_logits_rank3", (2, 3, 4), [
        {"units": 4, "activation": "tanh"},
        {"units": 3, "activation": "softmax", "scale": 15.0},
    ], loss="categorical_crossentropy", targets="onehot")
    add("two_layers_linear_cce_from_logits", (5, 4), [
        {"units": 4, "activation": "leaky_relu", "activity_regularizer": L1(0.02)},
        {"units": 3},
    ], loss={"name": "categorical_crossentropy", "from_logits": True}, targets="onehot")
    add("two_layers_softmax_last_mse", (4, 3), [
        {"units": 4, "activation": "relu"},
        {"units": 3, "activation": "softmax", "activity_regularizer": L2(0.1)},
    ])
    add("three_layers_tanh_relu_sigmoid_bce", (6, 4), [
        {"units": 5, "activation": "tanh", "activity_regularizer": L1(0.01), "kernel_regularizer": L2(0.01)},
        {"units": 4, "activation": "relu", "activity_regularizer": L2(0.01), "bias_regularizer": L2(0.02)},
        {"units": 2, "activation": "sigmoid", "kernel_regularizer": {"type": "l1l2", "l1": 0.01, "l2": 0.01}},
    ], loss="binary_crossentropy", targets="binary")
    add("three_layers_relu_leaky_relu_softmax_cce_none", (6, 4), [
        {"units": 5, "activation": "relu", "activity_regularizer": L1(0.01)},
        {"units": 4, "activation": {"name": "leaky_relu", "negative_slope": 0.1}, "activity_regularizer": L2(0.01), "use_bias": False},
        {"units": 3, "activation": "softmax", "kernel_regularizer": L2(0.01)},
    ], loss="categorical_crossentropy", norm="none", targets="onehot")
    add("three_layers_no_bias_mse_rank3", (2, 2, 3), [
        {"units": 4, "activation": "gelu", "use_bias": False, "kernel_regularizer": "l2"},
        {"units": 4, "activation": "relu", "activity_regularizer": "l1"},
        {"units": 2, "use_bias": False, "activity_regularizer": L2(0.01)},
    ])
    add("named_layers_mse", (4, 3), [
        {"name": "hidden", "units": 3, "activation": "relu", "kernel_regularizer": L2(0.02), "activity_regularizer": L1(0.02)},
        {"name": "out", "units": 2, "bias_regularizer": L1(0.01)},
    ])
    add("fp64_two_layers_tanh_mse", (5, 3), [
        {"units": 4, "activation": "tanh", "kernel_regularizer": L2(0.125), "activity_regularizer": L1(0.25)},
        {"units": 2, "bias_regularizer": L1(0.5)},
    ], dtype=np.float64)
    add("fp64_two_layers_relu_softmax_cce", (5, 3), [
        {"units": 4, "activation": "relu", "activity_regularizer": L2(0.125)},
        {"units": 3, "activation": "softmax", "kernel_regularizer": L1(0.0625)},
    ], loss="categorical_crossentropy", targets="onehot", dtype=np.float64)
    network_cases_issue8(add, L1, L2, cases)
    return cases


def network_cases_issue8(add, L1, L2, cases):
    """The four places issue 8 found, the new losses in a network, sample_weight, reduction."""
    bce_logits = {"name": "binary_crossentropy", "from_logits": True}
    cce_logits = {"name": "categorical_crossentropy", "from_logits": True}
    example4 = {"inputs": [[1.0, 2.0], [0.5, -1.0]], "targets": [[0.0, 1.0], [1.0, 0.0]]}
    # 1. from_logits=true on a sigmoid/softmax head: Keras ignores it and uses the head's logits
    add("issue8_sigmoid_head_bce_from_logits_true", None, [{"kernel": [[10.0]], "activation": "sigmoid"}],
        loss=bce_logits, inputs=[[2.0]], targets=[[0.0]])
    add("issue8_softmax_head_cce_from_logits_true", None, [{"kernel": [[100.0, 0.0], [0.0, 1.0]], "activation": "softmax"}],
        loss=cce_logits, **example4)
    add("two_layers_relu_sigmoid_bce_from_logits_true", (6, 4), [
        {"units": 5, "activation": "relu", "activity_regularizer": L1(0.01)},
        {"units": 3, "activation": "sigmoid", "scale": 3.0},
    ], loss=bce_logits, targets="binary")
    add("two_layers_relu_softmax_cce_from_logits_true", (6, 4), [
        {"units": 5, "activation": "relu"},
        {"units": 3, "activation": "softmax", "kernel_regularizer": L2(0.01), "scale": 3.0},
    ], loss=cce_logits, targets="onehot")
    add("two_layers_relu_softmax_scce_from_logits_true", (6, 4), [
        {"units": 5, "activation": "relu"},
        {"units": 3, "activation": "softmax", "scale": 3.0},
    ], loss={"name": "sparse_categorical_crossentropy", "from_logits": True}, targets="labels")
    # 4. softmax over the last axis written as a list: the same function as the int axis, so
    # the same shortcut.  Keras's softmax takes a tuple of axes but not (-1,) (its transpose
    # fails), so Keras computes these with the int axis and the request carries the list.
    def as_list(axis_int, axis_list):
        case = cases[-1]
        case["id"] = case["id"].replace(f"axis_{axis_int}", f"axis_list_{axis_list}".replace(" ", ""))
        case["request"]["layers"][-1]["activation"]["axis"] = axis_list
        case["keras_axis"] = axis_int

    for axis_int, axis_list in ((-1, [-1]), (1, [1])):
        add(f"issue8_softmax_axis_{axis_int}_cce", None,
            [{"kernel": [[100.0, 0.0], [0.0, 1.0]], "activation": {"name": "softmax", "axis": axis_int}}],
            loss="categorical_crossentropy", **example4)
        as_list(axis_int, axis_list)
    add("two_layers_softmax_axis_2_cce_rank3", (2, 3, 4), [
        {"units": 4, "activation": "tanh"},
        {"units": 3, "activation": {"name": "softmax", "axis": 2}, "scale": 4.0},
    ], loss="categorical_crossentropy", targets="onehot")
    as_list(2, [2])
    # 3. softmax over another axis with categorical crossentropy: the service computes the loss
    # of the probabilities (Keras on the bare output); keras_fit records Keras's shortcut value
    add("issue8_softmax_axis_0_cce", None,
        [{"kernel": [[100.0, 0.0], [0.0, 1.0]], "activation": {"name": "softmax", "axis": 0}}],
        loss="categorical_crossentropy", bare_output=True, **example4)
    add("two_layers_softmax_axis_0_cce", (5, 3), [
        {"units": 4, "activation": "relu", "activity_regularizer": L2(0.01)},
        # no bias: a softmax over the batch axis is invariant to it (its gradient is rounding noise)
        {"units": 3, "activation": {"name": "softmax", "axis": 0}, "use_bias": False},
    ], loss="categorical_crossentropy", targets="onehot", bare_output=True)
    # the new losses on their usual heads
    add("two_layers_relu_softmax_scce", (6, 4), [
        {"units": 5, "activation": "relu", "activity_regularizer": L1(0.01)},
        {"units": 3, "activation": "softmax", "scale": 3.0},
    ], loss="sparse_categorical_crossentropy", targets="labels")
    add("two_layers_relu_linear_scce_ignore_class", (6, 4), [
        {"units": 5, "activation": "relu"},
        {"units": 3},
    ], loss={"name": "sparse_categorical_crossentropy", "from_logits": True, "ignore_class": 1}, targets="labels")
    add("two_layers_tanh_sigmoid_binary_focal", (6, 4), [
        {"units": 5, "activation": "tanh"},
        {"units": 3, "activation": "sigmoid", "scale": 6.0},
    ], loss={"name": "binary_focal_crossentropy", "apply_class_balancing": True}, targets="binary")
    add("two_layers_relu_softmax_categorical_focal", (6, 4), [
        {"units": 5, "activation": "relu"},
        {"units": 3, "activation": "softmax"},
    ], loss="categorical_focal_crossentropy", targets="onehot")
    add("two_layers_relu_softmax_kld", (5, 4), [
        {"units": 5, "activation": "relu", "kernel_regularizer": L2(0.01)},
        {"units": 3, "activation": "softmax"},
    ], loss="kld", targets="simplex")
    add("two_layers_tanh_hinge", (6, 3), [
        {"units": 4, "activation": "tanh"},
        {"units": 2, "activation": "tanh", "scale": 1.5},
    ], loss="hinge", targets="binary")
    add("two_layers_relu_categorical_hinge", (6, 3), [
        {"units": 4, "activation": "relu"},
        {"units": 3},
    ], loss="categorical_hinge", targets="onehot")
    add("two_layers_softplus_poisson", (6, 3), [
        {"units": 4, "activation": "relu"},
        {"units": 2, "activation": "softplus"},
    ], loss="poisson", targets="counts")
    add("two_layers_elu_log_cosh_cosine", (5, 3), [
        {"units": 4, "activation": "elu"},
        {"units": 3},
    ], loss="cosine_similarity")
    add("two_layers_sigmoid_dice", (2, 3, 4), [
        {"units": 4, "activation": "relu"},
        {"units": 2, "activation": "sigmoid"},
    ], loss={"name": "dice", "axis": [1, 2]}, targets="binary")
    # sample_weight, reductions
    add("two_layers_relu_mse_sample_weight", (4, 3), [
        {"units": 4, "activation": "relu", "activity_regularizer": L1(0.01)},
        {"units": 2, "kernel_regularizer": L2(0.01)},
    ], sample_weight=[1.0, 0.0, 2.0, 0.5])
    add("two_layers_relu_softmax_cce_sample_weight", (4, 3), [
        {"units": 4, "activation": "relu"},
        {"units": 3, "activation": "softmax"},
    ], loss="categorical_crossentropy", targets="onehot", sample_weight=[0.5, 1.0, 1.5, 2.0])
    add("two_layers_relu_mae_reduction_sum", (4, 3), [
        {"units": 4, "activation": "relu"},
        {"units": 2},
    ], loss={"name": "mae", "reduction": "sum"})
    add("two_layers_relu_mse_reduction_none_sample_weight", (4, 3), [
        {"units": 4, "activation": "relu", "kernel_regularizer": L2(0.01)},
        {"units": 2},
    ], loss={"name": "mse", "reduction": "none"}, sample_weight=[1.0, 0.0, 2.0, 0.5])
    # activations new in this issue, in a network
    add("two_layers_glu_hidden_mse", (4, 3), [
        {"units": 6, "activation": "glu", "activity_regularizer": L2(0.01)},
        {"units": 2},
    ])
    add("two_layers_LeakyReLU_alpha_hidden_mse", (4, 3), [
        {"units": 4, "activation": {"name": "LeakyReLU", "alpha": 0.1}},
        {"units": 2},
    ])
    # 2. float64 parameters Keras rounds to float32
    add("fp64_relu_threshold_0.7_identity", None,
        [{"kernel": [[1.0, 0.0], [0.0, 1.0]], "activation": {"name": "relu", "threshold": 0.7}}],
        inputs=[[0.7, 2.0]], targets=[[0.0, 0.0]], dtype=np.float64)
    add("fp64_two_layers_leaky_relu_0.1_mse", (4, 3), [
        {"units": 4, "activation": {"name": "leaky_relu", "negative_slope": 0.1}},
        {"units": 2},
    ], dtype=np.float64)
    add("fp64_sigmoid_head_bce_from_logits_true", (4, 3), [
        {"units": 3, "activation": "tanh"},
        {"units": 2, "activation": "sigmoid", "scale": 3.0},
    ], loss=bce_logits, targets="binary", dtype=np.float64)


# ----------------------------------------------------------------------------- Keras facts


# ----------------------------------------------------------------------------- optimizers


def sgd_steps(w0, grad_fn, steps, **sgd):
    """``w`` after ``steps`` of ``keras.optimizers.SGD(**sgd)`` on the gradient ``grad_fn(w)``."""
    w = keras.Variable(np.asarray(w0, np.float32))
    opt = keras.optimizers.SGD(**sgd)
    for _ in range(steps):
        opt.apply_gradients([(grad_fn(w), w)])
    return wire(w.numpy())


def optimizer_cases():
    """SPEC §6/§7: Keras's ``weight_decay`` and how it relates to an L2 penalty.

    ``data`` is the gradient of a data loss ``0.5·Σ(w − t)²``; the L2 runs add the
    penalty's gradient ``2λw`` (Keras's ``L2(λ)``, computed by Keras) to it, the
    weight-decay runs use ``weight_decay = 2λ`` and the data gradient alone.
    """
    cases = [{
        "id": "spec7_sgd_weight_decay",
        "request": {"w": [1.0, -2.0, 3.0], "g": [0.5, 0.5, -1.0], "learning_rate": 0.1, "weight_decay": 0.01},
        "expected": {"w": sgd_steps([1.0, -2.0, 3.0], lambda w: tf.constant([0.5, 0.5, -1.0]), 1,
                                    learning_rate=0.1, weight_decay=0.01)},
    }]
    rng = rng_for("optimizers")
    w0 = rng.normal(size=6).astype(np.float32)
    target = tf.constant(rng.normal(size=6).astype(np.float32))
    lam = 0.05
    l2 = keras.regularizers.L2(lam)

    def data(w):
        return w - target

    def with_l2(w):
        with tf.GradientTape() as tape:
            penalty = l2(w)
        return data(w) + tape.gradient(penalty, w)

    for momentum, steps in ((0.0, 3), (0.9, 3)):
        cases.append({
            "id": f"l2_vs_weight_decay_momentum_{momentum}",
            "request": {"w": w0.tolist(), "target": target.numpy().tolist(), "l2": lam,
                        "learning_rate": 0.1, "momentum": momentum, "steps": steps},
            "expected": {
                "l2_penalty": sgd_steps(w0, with_l2, steps, learning_rate=0.1, momentum=momentum),
                "weight_decay": sgd_steps(w0, data, steps, learning_rate=0.1, momentum=momentum,
                                          weight_decay=2 * lam),
            },
        })
    return cases


def check_keras_facts():
    """Assert the Keras behaviours the vectors (and the service) depend on."""
    x = tf.constant(np.ones((2, 2, 4), np.float32) * 3)
    # activity penalties are divided by output.shape[0] only (2, not 4)
    layer = keras.layers.Dense(3, activity_regularizer=keras.regularizers.L1(0.1), kernel_initializer="ones")
    out = layer(x)
    (act,) = layer.losses
    np.testing.assert_allclose(act.numpy(), 0.1 * np.abs(out.numpy()).sum() / 2, rtol=1e-6)
    # sigmoid/softmax outputs carry their logits; the crossentropies use them (eager too)
    for activation, loss in (("sigmoid", keras.losses.BinaryCrossentropy()),
                             ("softmax", keras.losses.CategoricalCrossentropy())):
        z = tf.constant([[40.0, -40.0, 1.0]])
        y = keras.activations.get(activation)(z)
        assert hasattr(y, "_keras_logits")
        t = tf.constant([[0.0, 1.0, 0.0]])
        via_output = loss(t, y).numpy()
        via_logits = loss.__class__(from_logits=True)(t, z).numpy()
        plain = loss(t, tf.identity(y)).numpy()  # the bare tensor: clipped probabilities
        assert via_output == via_logits and plain < via_logits, (activation, via_output, via_logits, plain)
    # Keras rounds every regularization factor to float32, even for float64 data
    x64 = tf.constant(np.ones(2))
    for reg in (keras.regularizers.L1(0.1), keras.regularizers.L2(0.1), keras.regularizers.L1L2(0.1, 0.0)):
        assert reg(x64).numpy() == 2 * float(np.float32(0.1)), reg
    # orthogonal: 1-row input gives NaN; float64 input fails
    assert np.isnan(keras.regularizers.OrthogonalRegularizer()(tf.constant([[1.0, 2.0]])).numpy())
    try:
        keras.regularizers.OrthogonalRegularizer()(tf.constant(np.eye(2)))
    except tf.errors.InvalidArgumentError:
        pass
    else:
        raise AssertionError("OrthogonalRegularizer accepted float64")
    # issue 8: from_logits=True on a sigmoid output is ignored (the logits are used)
    z = tf.constant([[20.0]])
    y = keras.activations.sigmoid(z)
    with_flag = keras.losses.BinaryCrossentropy(from_logits=True)(tf.constant([[0.0]]), y).numpy()
    assert abs(with_flag - 20.0) < 1e-5, with_flag
    # float64 relu threshold/max_value and leaky slope go through float32; elu's alpha does not
    x64 = tf.constant(np.array([0.7, -1.0]))
    assert keras.activations.relu(x64, threshold=0.7).numpy()[0] == 0.7
    assert keras.activations.leaky_relu(x64, negative_slope=0.7).numpy()[1] == -float(np.float32(0.7))
    assert keras.activations.elu(x64, alpha=0.7).numpy()[1] == 0.7 * (np.exp(-1.0) - 1)
    # Keras's sparsemax: tau from the sum of the cumulative sums over the support
    np.testing.assert_allclose(keras.activations.sparsemax(tf.constant([[1.0, 0.9, 0.0]])).numpy(), [[0.05, 0, 0]], atol=1e-6)
    # None factors: L1/L2 take their default, L1L2 zero
    assert keras.regularizers.L1(None).l1 == np.float32(0.01) and keras.regularizers.L1L2(None, None).l1 == 0
    # activation class names are not activation identifiers for Keras
    try:
        keras.activations.get("LeakyReLU")
    except ValueError:
        pass
    else:
        raise AssertionError("keras.activations.get accepted a class name")
    # tf.keras's "l1_l2" identifier is gone in Keras 3
    try:
        keras.regularizers.get("l1_l2")
    except ValueError:
        pass
    else:
        raise AssertionError("Keras 3 accepted 'l1_l2'")


def main():
    check_keras_facts()
    write("regularizers", regularizer_cases())
    write("activations", activation_cases())
    write("losses", loss_cases())
    write("dense", dense_cases())
    write("network", network_cases())
    write("optimizers", optimizer_cases())
    print(f"network: {len(FIT_CHECKS)} cases checked against one train_on_batch step")


if __name__ == "__main__":
    main()
