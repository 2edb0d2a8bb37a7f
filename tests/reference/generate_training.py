"""Generate Keras reference vectors for optimizers and training runs.

Writes ``vectors/optimizer_steps.json``, ``vectors/fit_runs.json`` and ``vectors/fit_models.json``.  Every expected
number comes from real Keras 3.15.1 (TensorFlow backend): optimizer steps from
``optimizer.apply_gradients``, training runs from ``model.fit(shuffle=False)``.  NumPy
only builds the seeded inputs (``crc32`` of the case id).

    TF_CPP_MIN_LOG_LEVEL=3 KERAS_BACKEND=tensorflow \\
        /work/kerasenv/bin/python tests/reference/generate_training.py

``optimizer_steps.json`` cases: ``{"id", "optimizer": <tagged spec>, "keras_config":
<keras.optimizers.serialize>, "parameters": {name: tensor}, "gradients": [{name: tensor}
per step], "exclude_from_weight_decay", "expected": {"parameters": [{name: tensor} after
each step], "learning_rate": [per step], "slots": {name: {slot: tensor}} after the last
step, "iterations"}}``.  Parameters are named ``dense/kernel`` and ``dense/bias``; the
Keras variables are named ``kernel`` and ``bias``, so the exclusion patterns used
(``"bias"``) select the same variables in both.

``fit_runs.json`` cases (FP32, and FP64 with floatx float64 in a fresh interpreter): ``{"id", "request": <POST /v1/train body>,
"keras_model": json.loads(model.to_json()), "expected":
{"weights": {name: tensor}, "history_loss": [per epoch], "batch_logs": [[logs["loss"]
per batch] per epoch], "batch_sizes": [...]}}``: ``batch_logs`` are Keras's running means.

``fit_models.json`` cases (FP32): the same, for Keras models other than Dense chains (Conv2D
with BatchNormalization, Embedding with pooling, a Functional two-input model with Add and a
frozen layer); ``request`` is a ``POST /v1/train`` body with ``model`` + ``weights``, and
``expected.weights`` holds every weight after the run, BatchNormalization's moving
statistics included.  No Dropout: Keras's random stream cannot be reproduced.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

OUT = Path(__file__).resolve().parent / "vectors"
DT = {"float32": "FP32", "float64": "FP64"}


def wire(a: np.ndarray) -> dict:
    a = np.asarray(a)
    return {"shape": list(a.shape), "datatype": DT[str(a.dtype)], "data": [float(v) for v in a.reshape(-1)]}


def rng(case_id: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(case_id.encode()))


def generator_info() -> dict:
    return {"keras": keras.__version__, "tensorflow": tf.__version__, "numpy": np.__version__,
            "script": "tests/reference/generate_training.py"}


# --------------------------------------------------------------------------- optimizer steps

SCHED = {"name": "exponential_decay", "initial_learning_rate": 0.05, "decay_steps": 2, "decay_rate": 0.5}
SCHEDULES = {
    "exponential": (keras.optimizers.schedules.ExponentialDecay(0.05, 2, 0.5), SCHED),
    "exponential_staircase": (keras.optimizers.schedules.ExponentialDecay(0.05, 2, 0.5, staircase=True),
                              {**SCHED, "staircase": True}),
    "piecewise": (keras.optimizers.schedules.PiecewiseConstantDecay([1, 3], [0.1, 0.05, 0.01]),
                  {"name": "piecewise_constant_decay", "boundaries": [1, 3], "values": [0.1, 0.05, 0.01]}),
    "inverse_time": (keras.optimizers.schedules.InverseTimeDecay(0.1, 2, 0.7),
                     {"name": "inverse_time_decay", "initial_learning_rate": 0.1, "decay_steps": 2,
                      "decay_rate": 0.7}),
    "polynomial": (keras.optimizers.schedules.PolynomialDecay(0.1, 4, 0.01, power=2.0),
                   {"name": "polynomial_decay", "initial_learning_rate": 0.1, "decay_steps": 4,
                    "end_learning_rate": 0.01, "power": 2.0}),
    "polynomial_cycle": (keras.optimizers.schedules.PolynomialDecay(0.1, 2, 0.01, cycle=True),
                         {"name": "polynomial_decay", "initial_learning_rate": 0.1, "decay_steps": 2,
                          "end_learning_rate": 0.01, "cycle": True}),
    "cosine": (keras.optimizers.schedules.CosineDecay(0.1, 4, alpha=0.1),
               {"name": "cosine_decay", "initial_learning_rate": 0.1, "decay_steps": 4, "alpha": 0.1}),
    "cosine_warmup": (keras.optimizers.schedules.CosineDecay(0.0, 3, warmup_target=0.1, warmup_steps=2),
                      {"name": "cosine_decay", "initial_learning_rate": 0.0, "decay_steps": 3,
                       "warmup_target": 0.1, "warmup_steps": 2}),
    "cosine_restarts": (keras.optimizers.schedules.CosineDecayRestarts(0.1, 2, t_mul=2.0, m_mul=0.5, alpha=0.1),
                        {"name": "cosine_decay_restarts", "initial_learning_rate": 0.1, "first_decay_steps": 2,
                         "t_mul": 2.0, "m_mul": 0.5, "alpha": 0.1}),
    "cosine_restarts_t1": (keras.optimizers.schedules.CosineDecayRestarts(0.1, 2, t_mul=1.0),
                           {"name": "cosine_decay_restarts", "initial_learning_rate": 0.1, "first_decay_steps": 2,
                            "t_mul": 1.0}),
}

OPTIMIZERS = {
    "sgd": (keras.optimizers.SGD, {"learning_rate": 0.1}),
    "sgd_momentum": (keras.optimizers.SGD, {"learning_rate": 0.05, "momentum": 0.9}),
    "sgd_nesterov": (keras.optimizers.SGD, {"learning_rate": 0.05, "momentum": 0.8, "nesterov": True}),
    "rmsprop": (keras.optimizers.RMSprop, {"learning_rate": 0.01}),
    "rmsprop_momentum_centered": (keras.optimizers.RMSprop,
                                  {"learning_rate": 0.01, "rho": 0.8, "momentum": 0.5, "centered": True}),
    "adagrad": (keras.optimizers.Adagrad, {"learning_rate": 0.1}),
    "adam": (keras.optimizers.Adam, {"learning_rate": 0.01}),
    "adam_amsgrad": (keras.optimizers.Adam, {"learning_rate": 0.01, "amsgrad": True, "beta_2": 0.9}),
    "adamw": (keras.optimizers.AdamW, {"learning_rate": 0.01}),
    "adamax": (keras.optimizers.Adamax, {"learning_rate": 0.01}),
    "nadam": (keras.optimizers.Nadam, {"learning_rate": 0.01}),
    "lion": (keras.optimizers.Lion, {"learning_rate": 0.01}),
}
VARIANTS = {
    "plain": {},
    "wd": {"weight_decay": 0.05},
    "wd_exclude_bias": {"weight_decay": 0.05, "_exclude": ["bias"]},
    "clipnorm": {"clipnorm": 0.5},
    "clipvalue": {"clipvalue": 0.3},
    "global_clipnorm": {"global_clipnorm": 0.7},
}
STEPS = 20


def keras_name(cls: type) -> str:
    return cls.__name__.lower()


def optimizer_case(case_id: str, cls: type, args: dict, variant: dict, dtype: str,
                   schedule: tuple | None = None) -> dict:
    r = rng(case_id)
    args = dict(args)
    exclude = variant.get("_exclude")
    args.update({k: v for k, v in variant.items() if not k.startswith("_")})
    tagged = {"name": keras_name(cls), **args}
    if schedule is not None:
        args["learning_rate"], tagged["learning_rate"] = schedule
    if exclude:
        tagged["exclude_from_weight_decay"] = exclude
    opt = cls(**args)
    if exclude:
        opt.exclude_from_weight_decay(var_names=exclude)
    init = {"dense/kernel": r.normal(size=(3, 2)).astype(dtype), "dense/bias": r.normal(size=(2,)).astype(dtype)}
    variables = {k: keras.Variable(v, name=k.split("/")[1], dtype=dtype) for k, v in init.items()}
    grads, after, lrs = [], [], []
    for _ in range(STEPS):
        g = {k: (r.normal(size=v.shape) * 2).astype(dtype) for k, v in init.items()}
        grads.append({k: wire(v) for k, v in g.items()})
        lrs.append(float(np.float32(keras.ops.convert_to_numpy(opt.learning_rate))))
        opt.apply_gradients([(tf.constant(g[k]), variables[k]) for k in init])
        after.append({k: wire(keras.ops.convert_to_numpy(v)) for k, v in variables.items()})
    slots: dict[str, dict] = {k: {} for k in init}
    for var in opt.variables:
        for k in init:
            short = k.split("/")[1]
            if var.name.startswith(short + "_"):
                slots[k][var.name[len(short) + 1:]] = wire(keras.ops.convert_to_numpy(var))
    return {"id": case_id, "optimizer": tagged, "keras_config": keras.optimizers.serialize(opt),
            "parameters": {k: wire(v) for k, v in init.items()}, "gradients": grads,
            "expected": {"parameters": after, "learning_rate": lrs, "slots": slots,
                         "iterations": int(keras.ops.convert_to_numpy(opt.iterations))}}


def optimizer_cases() -> list[dict]:
    out = []
    for dtype in ("float32", "float64"):
        for oname, (cls, args) in OPTIMIZERS.items():
            for vname, variant in VARIANTS.items():
                out.append(optimizer_case(f"{oname}_{vname}_{DT[dtype]}", cls, args, variant, dtype))
        for sname, sched in SCHEDULES.items():
            for oname in ("sgd", "adam", "adamw"):
                cls, args = OPTIMIZERS[oname]
                out.append(optimizer_case(f"{oname}_schedule_{sname}_{DT[dtype]}", cls, args, {}, dtype, sched))
    return out


# --------------------------------------------------------------------------- fit runs

REGS = {
    "l1": (lambda: keras.regularizers.L1(0.01), {"type": "l1", "l1": 0.01}),
    "l2": (lambda: keras.regularizers.L2(0.02), {"type": "l2", "l2": 0.02}),
    "l1l2": (lambda: keras.regularizers.L1L2(0.01, 0.01), {"type": "l1l2", "l1": 0.01, "l2": 0.01}),
    "orth": (lambda: keras.regularizers.OrthogonalRegularizer(0.05, "columns"),
             {"type": "orthogonal", "factor": 0.05, "mode": "columns"}),
}

FITS = [
    # id, layers [(units, activation, kernel_reg, bias_reg, activity_reg)], loss, batch, epochs, optimizer
    ("mse_l2_sgd_b4", [(3, "tanh", "l2", None, None), (1, None, "l1", None, None)], "mean_squared_error", 4, 5,
     ("sgd", {"learning_rate": 0.05})),
    ("mse_l1_activity_adam_b5", [(3, "relu", "l1", "l2", "l1"), (1, None, None, None, None)],
     "mean_squared_error", 5, 10, ("adam", {"learning_rate": 0.01})),
    ("mae_l1l2_sgd_momentum_b3", [(4, "tanh", "l1l2", "l1", None), (2, None, "l2", None, None)],
     "mean_absolute_error", 3, 5, ("sgd", {"learning_rate": 0.02, "momentum": 0.9})),
    ("huber_orth_rmsprop_b10", [(3, "sigmoid", "orth", None, "l2"), (2, None, None, None, None)],
     {"name": "huber", "delta": 1.0}, 10, 20, ("rmsprop", {"learning_rate": 0.01})),
    ("bce_sigmoid_adamw_b4", [(3, "tanh", "l2", None, None), (1, "sigmoid", "l1", None, None)],
     "binary_crossentropy", 4, 7, ("adamw", {"learning_rate": 0.01, "weight_decay": 0.01})),
    ("cce_softmax_nadam_b6", [(4, "relu", "l1", None, None), (3, "softmax", "l2", None, "l1")],
     "categorical_crossentropy", 6, 10, ("nadam", {"learning_rate": 0.01})),
    ("mse_l2_sgd_wd_clip_b2", [(2, None, "l2", None, None)], "mean_squared_error", 2, 4,
     ("sgd", {"learning_rate": 0.1, "weight_decay": 0.02, "clipnorm": 1.0})),
    ("mse_l1_lion_schedule_b4", [(3, "tanh", "l1", None, None), (1, None, None, None, None)],
     "mean_squared_error", 4, 5, ("lion", {"learning_rate": SCHED})),
]


def keras_loss(spec):
    if isinstance(spec, dict):
        return keras.losses.Huber(delta=spec["delta"])
    return keras.losses.get(spec)


def keras_optimizer(name, args):
    cls = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
           "rmsprop": keras.optimizers.RMSprop, "nadam": keras.optimizers.Nadam,
           "lion": keras.optimizers.Lion}[name]
    args = dict(args)
    if isinstance(args.get("learning_rate"), dict):
        args["learning_rate"] = SCHEDULES["exponential"][0]
    return cls(**args)


# FP64 runs: Keras with floatx float64 (its default float32 floatx cannot fit float64 weights).
# Every hyperparameter is exact in float32, so that Keras's float64 learning-rate variable and
# factors equal the service's (which rounds them through float32 as Keras does by default).
REGS64 = {
    "l1": (lambda: keras.regularizers.L1(0.015625), {"type": "l1", "l1": 0.015625}),
    "l2": (lambda: keras.regularizers.L2(0.03125), {"type": "l2", "l2": 0.03125}),
}
FITS64 = [
    ("fp64_mse_l2_sgd_momentum_b4", [(3, "tanh", "l2", "l1", "l1"), (1, None, "l1", None, None)],
     "mean_squared_error", 4, 6, ("sgd", {"learning_rate": 0.0625, "momentum": 0.875})),
    ("fp64_bce_l1_adam_b5", [(4, "relu", "l1", None, None), (1, "sigmoid", "l2", None, None)],
     "binary_crossentropy", 5, 10, ("adam", {"learning_rate": 0.015625, "beta_1": 0.875, "beta_2": 0.9921875})),
    ("fp64_huber_adamw_b3", [(3, "sigmoid", "l2", None, "l2"), (2, None, None, None, None)],
     {"name": "huber", "delta": 1.0}, 3, 5,
     ("adamw", {"learning_rate": 0.03125, "weight_decay": 0.0625, "beta_1": 0.875, "beta_2": 0.9921875})),
]


def fit_logged(model, x, t, batch: int, epochs: int):
    """``model.fit(shuffle=False)``; its History and each epoch's per-batch ``logs["loss"]``."""
    batch_logs: list[list[float]] = []

    class Logs(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            batch_logs.append([])

        def on_train_batch_end(self, b, logs=None):
            batch_logs[-1].append(float(logs["loss"]))

    hist = model.fit(x, t, batch_size=batch, epochs=epochs, shuffle=False, verbose=0, callbacks=[Logs()])
    return hist, batch_logs


def fit_case(case_id, layer_defs, loss, batch, epochs, opt, dtype="float32") -> dict:
    r = rng(case_id)
    n, features = 10, 4
    regs = REGS if dtype == "float32" else REGS64
    x = r.normal(size=(n, features)).astype(dtype)
    units_out = layer_defs[-1][0]
    if loss == "binary_crossentropy":
        t = (r.random(size=(n, units_out)) > 0.5).astype(dtype)
    elif loss == "categorical_crossentropy":
        t = np.eye(units_out, dtype=dtype)[r.integers(0, units_out, size=n)]
    else:
        t = r.normal(size=(n, units_out)).astype(dtype)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((features,))
    h = inputs
    req_layers, names = [], []
    fan_in = features
    for i, (units, act, kr, br, ar) in enumerate(layer_defs):
        name = "dense" if i == 0 else f"dense_{i}"
        names.append(name)
        kernel = (r.normal(size=(fan_in, units)) * 0.7).astype(dtype)
        bias = (r.normal(size=(units,)) * 0.1).astype(dtype)
        layer = keras.layers.Dense(units, activation=act, name=name,
                                   kernel_regularizer=regs[kr][0]() if kr else None,
                                   bias_regularizer=regs[br][0]() if br else None,
                                   activity_regularizer=regs[ar][0]() if ar else None)
        h = layer(h)
        layer.set_weights([kernel, bias])
        spec = {"name": name, "kernel": wire(kernel), "bias": wire(bias), "activation": act}
        for key, val in (("kernel_regularizer", kr), ("bias_regularizer", br), ("activity_regularizer", ar)):
            if val:
                spec[key] = regs[val][1]
        req_layers.append(spec)
        fan_in = units
    model = keras.Model(inputs, h)
    keras_model = json.loads(model.to_json())
    model.compile(optimizer=keras_optimizer(*opt), loss=keras_loss(loss))


    hist, batch_logs = fit_logged(model, x, t, batch, epochs)
    weights = {}
    for name in names:
        k, b = model.get_layer(name).get_weights()
        weights[f"{name}/kernel"], weights[f"{name}/bias"] = wire(k), wire(b)
    optimizer = {"name": opt[0], **opt[1]}
    request = {"layers": req_layers, "inputs": wire(x), "targets": wire(t), "loss": loss,
               "optimizer": optimizer, "epochs": epochs, "batch_size": batch, "shuffle": False}
    return {"id": case_id, "request": request, "keras_model": keras_model,
            "expected": {"weights": weights, "history_loss": [float(v) for v in hist.history["loss"]],
                         "batch_logs": batch_logs}}


# --------------------------------------------------------------------------- fit runs of other models

L = keras.layers
R = keras.regularizers


def conv_bn_model():
    x = keras.Input((5, 5, 2), name="image")
    h = L.Conv2D(3, 3, activation="relu", kernel_regularizer=R.L2(0.02), name="conv2d")(x)
    h = L.BatchNormalization(momentum=0.8, gamma_regularizer=R.L1(0.01), name="batch_normalization")(h)
    h = L.Flatten(name="flatten")(h)
    out = L.Dense(2, kernel_regularizer=R.L1L2(0.01, 0.01), name="dense")(h)
    return keras.Model(x, out, name="conv_bn"), {"image": (5, 5, 2)}


def embedding_pool_model():
    x = keras.Input((6,), name="tokens")
    h = L.Embedding(12, 3, embeddings_regularizer=R.L2(0.05), name="embedding")(x)
    h = L.GlobalAveragePooling1D(name="global_average_pooling1d")(h)
    out = L.Dense(1, activation="sigmoid", kernel_regularizer=R.L2(0.02), name="dense")(h)
    return keras.Model(x, out, name="embedding_pool"), {"tokens": (6,)}


def two_input_add_model():
    a = keras.Input((3,), name="in_a")
    b = keras.Input((2,), name="in_b")
    da = L.Dense(2, activation="tanh", kernel_regularizer=R.L2(0.02), name="dense_a")(a)
    db = L.Dense(2, kernel_regularizer=R.L1(0.01), trainable=False, name="dense_b")(b)
    s = L.Add(name="add")([da, db])
    out = L.Dense(1, bias_regularizer=R.L1(0.01), name="out")(s)
    return keras.Model([a, b], out, name="two_input_add"), {"in_a": (3,), "in_b": (2,)}


MODEL_FITS = [
    # id, model builder, loss, samples, batch, epochs, optimizer
    ("conv_bn_adam_b4", conv_bn_model, "mean_squared_error", 8, 4, 3, ("adam", {"learning_rate": 0.01})),
    ("embedding_pool_sgd_momentum_b4", embedding_pool_model, "binary_crossentropy", 10, 4, 4,
     ("sgd", {"learning_rate": 0.1, "momentum": 0.9})),
    ("two_input_add_frozen_rmsprop_b5", two_input_add_model, "mean_squared_error", 10, 5, 3,
     ("rmsprop", {"learning_rate": 0.01})),
]


def model_fit_case(case_id, build, loss, n, batch, epochs, opt) -> dict:
    r = rng(case_id)
    keras.utils.set_random_seed(0)
    model, shapes = build()
    weights = {}
    for layer in model.layers:
        for v in layer.weights:
            if v.name == "moving_variance":
                value = r.uniform(0.5, 1.5, size=v.shape)
            elif v.name == "embeddings":
                value = r.normal(size=v.shape)
            else:
                value = r.normal(size=v.shape) * 0.5
            v.assign(value.astype("float32"))
            weights[f"{layer.name}/{v.name}"] = wire(v.numpy())
    xs = {}
    for name, shape in shapes.items():
        xs[name] = (r.integers(0, 12, size=(n, *shape)) if name == "tokens" else r.normal(size=(n, *shape))).astype("float32")
    units = model.outputs[0].shape[-1]
    t = ((r.random(size=(n, units)) > 0.5) if loss == "binary_crossentropy" else r.normal(size=(n, units))).astype("float32")
    keras_model = json.loads(model.to_json())
    model.compile(optimizer=keras_optimizer(*opt), loss=keras_loss(loss))

    x = xs if len(xs) > 1 else next(iter(xs.values()))
    hist, batch_logs = fit_logged(model, x, t, batch, epochs)
    final = {f"{layer.name}/{v.name}": wire(v.numpy()) for layer in model.layers for v in layer.weights}
    request = {"model": keras_model, "weights": weights,
               "inputs": {k: wire(v) for k, v in xs.items()} if len(xs) > 1 else wire(x),
               "targets": wire(t), "loss": loss, "optimizer": {"name": opt[0], **opt[1]}, "epochs": epochs,
               "batch_size": batch, "shuffle": False}
    return {"id": case_id, "request": request,
            "expected": {"weights": final, "history_loss": [float(v) for v in hist.history["loss"]],
                         "batch_logs": batch_logs}}


def dump(name: str, cases: list[dict]) -> None:
    path = OUT / name
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"generator": ' + json.dumps(generator_info()) + ', "cases": [\n')
        f.write(",\n".join(json.dumps(c, separators=(",", ":")) for c in cases))
        f.write("\n]}\n")
    print(f"wrote {path} ({len(cases)} cases)")


def main() -> None:
    if keras.backend.backend() != "tensorflow":
        sys.exit("set KERAS_BACKEND=tensorflow")
    if sys.argv[1:] == ["--fp64-fits"]:
        keras.config.set_floatx("float64")
        print(json.dumps([fit_case(*f, dtype="float64") for f in FITS64]))
        return
    dump("optimizer_steps.json", optimizer_cases())
    fits = [fit_case(*f) for f in FITS]
    # float64 fits in a fresh interpreter: after float32 fits in the same process Keras 3.15
    # mixes a float32 tensor into the next float64 fit (and the other way round).
    out = subprocess.run([sys.executable, __file__, "--fp64-fits"], capture_output=True, text=True, check=True)
    dump("fit_runs.json", fits + json.loads(out.stdout.strip().splitlines()[-1]))
    dump("fit_models.json", [model_fit_case(*f) for f in MODEL_FITS])


if __name__ == "__main__":
    main()
