"""Generate the Keras reference vectors for layers and models, and small ``.keras`` files.

Writes ``tests/reference/vectors/layers.json``, ``vectors/models.json`` and
``tests/reference/keras_files/*.keras`` / ``*.weights.h5``.  Every expected number comes
from real Keras 3 (TensorFlow backend): outputs from the layers, penalties from the
layers' own regularizers, gradients from ``tf.GradientTape``.  NumPy only draws the
seeded inputs and weights.  Run it outside the project's venv::

    TF_CPP_MIN_LOG_LEVEL=3 KERAS_BACKEND=tensorflow \\
        /work/kerasenv/bin/python tests/reference/generate_models.py

Layer case: ``{"id", "class_name", "config" (Keras's get_config, JSON), "inputs": [wire…],
"weights": {"<layer>/<weight>": wire}, "training", "upstream": wire, "expected":
{"outputs", "losses": {arg: value}, "keras_layer_losses": [...], "gradients":
{"<layer>/<weight>": {"upstream" | arg: wire}}, "input_gradients": [wire | null],
"updates": {"<layer>/<weight>": wire}}}`` — ``upstream`` is the gradient ``∂L/∂y`` fed
back (``L = Σ upstream ⊙ y``); activity terms are divided by ``y.shape[0]``.

Model case: ``{"id", "model": json.loads(model.to_json()), "weights", "inputs",
"targets", "loss", "training", "expected": {"outputs", "losses", "gradients",
"updates"}, "keras_file"?}`` with ``/v1/model``'s keys.  Factors are exact in float32
(0.5, 0.25, 0.125, 0.0625) so FP64 cases are also the exact-factor values.
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf
from keras import layers, regularizers

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
keras.utils.set_random_seed(0)

HERE = Path(__file__).resolve().parent
OUT = HERE / "vectors"
FILES = HERE / "keras_files"
DT = {"float32": "FP32", "float64": "FP64"}
NP = {"FP32": np.float32, "FP64": np.float64}


def wire(x) -> dict:
    if isinstance(x, tf.IndexedSlices):
        x = tf.convert_to_tensor(x)
    a = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    return {"shape": list(a.shape), "datatype": DT[str(a.dtype)], "data": [float(v) for v in a.reshape(-1)]}


def tensor_of(w: dict) -> np.ndarray:
    return np.asarray(w["data"], dtype=NP[w["datatype"]]).reshape(w["shape"])


def rng_for(case_id: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(case_id.encode()))


def write(family: str, cases: list[dict]) -> None:
    ids = [c["id"] for c in cases]
    assert len(ids) == len(set(ids)), family
    header = {"keras": keras.__version__, "tensorflow": tf.__version__, "numpy": np.__version__,
              "script": "tests/reference/generate_models.py"}
    lines = ['{"generator": ' + json.dumps(header) + ",", ' "cases": [']
    for i, case in enumerate(cases):
        lines.append("  " + json.dumps(case, separators=(",", ":"), allow_nan=False) + ("," if i < len(cases) - 1 else ""))
    lines.append(" ]}")
    OUT.mkdir(exist_ok=True)
    (OUT / f"{family}.json").write_text("\n".join(lines) + "\n")
    print(f"{family}.json: {len(cases)} cases")


def jsonable(obj):
    return json.loads(json.dumps(obj))


def set_weights(layer, rng, dtype, positive=()):
    """Seeded weights (``positive`` names drawn in [0.5, 1.5], e.g. variances)."""
    values = {}
    for v in layer.weights:
        shape = tuple(v.shape)
        if v.name in positive:
            a = rng.uniform(0.5, 1.5, shape)
        else:
            a = rng.normal(0.0, 0.5, shape)
        v.assign(a.astype(dtype))
        values[f"{layer.name}/{v.name}"] = wire(v.numpy())
    return values


L2 = regularizers.L2
L1 = regularizers.L1
L1L2 = regularizers.L1L2

# (id, factory(dtype) -> layer, input shapes, integer inputs?, training)
REG = {"kernel_regularizer": L2(0.5), "bias_regularizer": L1(0.25), "activity_regularizer": L1L2(0.125, 0.0625)}


def layer_specs():
    r = dict(REG)
    a = {"activity_regularizer": L1L2(0.125, 0.0625)}
    return [
        ("dense_tanh", lambda d: layers.Dense(3, activation="tanh", dtype=d, **r), [(4, 5)], False, False),
        ("dense_rank3_no_bias", lambda d: layers.Dense(2, use_bias=False, dtype=d, kernel_regularizer=L1(0.25), **a), [(2, 3, 4)], False, False),
        ("conv1d_same_stride2_relu", lambda d: layers.Conv1D(3, 3, strides=2, padding="same", activation="relu", dtype=d, **r), [(2, 7, 2)], False, False),
        ("conv1d_causal_dilation2", lambda d: layers.Conv1D(2, 2, dilation_rate=2, padding="causal", dtype=d, **r), [(2, 6, 3)], False, False),
        ("conv2d_valid_stride21", lambda d: layers.Conv2D(3, (3, 2), strides=(2, 1), dtype=d, **r), [(2, 6, 5, 2)], False, False),
        ("conv2d_same_dilation2_sigmoid", lambda d: layers.Conv2D(2, 3, padding="same", dilation_rate=2, activation="sigmoid", dtype=d, **r), [(1, 5, 6, 2)], False, False),
        ("conv2d_same_stride2", lambda d: layers.Conv2D(2, 3, strides=2, padding="same", dtype=d, **r), [(2, 6, 5, 1)], False, False),
        ("depthwise_conv2d_mult2_same", lambda d: layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", dtype=d,
            depthwise_regularizer=L2(0.5), bias_regularizer=L1(0.25), **a), [(2, 5, 4, 2)], False, False),
        ("separable_conv2d", lambda d: layers.SeparableConv2D(3, 2, depth_multiplier=2, activation="relu", dtype=d,
            depthwise_regularizer=L2(0.5), pointwise_regularizer=L1(0.25), bias_regularizer=L2(0.125), **a), [(2, 5, 5, 2)], False, False),
        ("embedding", lambda d: layers.Embedding(7, 3, dtype=d, embeddings_regularizer=L2(0.5), **a), [(3, 4)], True, False),
        ("batch_norm_inference", lambda d: layers.BatchNormalization(dtype=d, gamma_regularizer=L2(0.5), beta_regularizer=L1(0.25), **a), [(4, 3)], False, False),
        ("batch_norm_training", lambda d: layers.BatchNormalization(momentum=0.9, dtype=d, gamma_regularizer=L2(0.5), beta_regularizer=L1(0.25), **a), [(5, 2, 3)], False, True),
        ("layer_norm", lambda d: layers.LayerNormalization(dtype=d, gamma_regularizer=L2(0.5), beta_regularizer=L1(0.25), **a), [(3, 2, 4)], False, False),
        ("activation_sigmoid", lambda d: layers.Activation("sigmoid", dtype=d, **a), [(3, 4)], False, False),
        ("relu_layer_args", lambda d: layers.ReLU(max_value=2.0, negative_slope=0.125, threshold=0.25, dtype=d, **a), [(3, 5)], False, False),
        ("leaky_relu_layer", lambda d: layers.LeakyReLU(negative_slope=0.125, dtype=d, **a), [(3, 4)], False, False),
        ("elu_layer", lambda d: layers.ELU(alpha=0.5, dtype=d, **a), [(3, 4)], False, False),
        ("prelu_shared", lambda d: layers.PReLU(shared_axes=[1], alpha_regularizer=L2(0.5), dtype=d, **a), [(2, 3, 4)], False, False),
        ("softmax_layer", lambda d: layers.Softmax(dtype=d, **a), [(3, 4)], False, False),
        ("dropout_inference", lambda d: layers.Dropout(0.5, dtype=d, **a), [(3, 4)], False, False),
        ("flatten", lambda d: layers.Flatten(dtype=d, **a), [(2, 3, 2)], False, False),
        ("reshape", lambda d: layers.Reshape((3, -1), dtype=d, **a), [(2, 6)], False, False),
        ("max_pool1d", lambda d: layers.MaxPooling1D(2, dtype=d, **a), [(2, 5, 3)], False, False),
        ("max_pool2d_same_stride1", lambda d: layers.MaxPooling2D(3, strides=1, padding="same", dtype=d, **a), [(2, 4, 5, 2)], False, False),
        ("avg_pool1d_same", lambda d: layers.AveragePooling1D(3, strides=2, padding="same", dtype=d, **a), [(2, 6, 2)], False, False),
        ("avg_pool2d_same", lambda d: layers.AveragePooling2D(2, padding="same", dtype=d, **a), [(2, 5, 3, 2)], False, False),
        ("global_max_pool1d", lambda d: layers.GlobalMaxPooling1D(dtype=d, **a), [(2, 4, 3)], False, False),
        ("global_max_pool2d", lambda d: layers.GlobalMaxPooling2D(dtype=d, **a), [(2, 3, 3, 2)], False, False),
        ("global_avg_pool1d", lambda d: layers.GlobalAveragePooling1D(dtype=d, **a), [(2, 4, 3)], False, False),
        ("global_avg_pool2d_keepdims", lambda d: layers.GlobalAveragePooling2D(keepdims=True, dtype=d, **a), [(2, 3, 3, 2)], False, False),
        ("add", lambda d: layers.Add(dtype=d, **a), [(3, 4), (3, 4), (3, 4)], False, False),
        ("concatenate", lambda d: layers.Concatenate(axis=1, dtype=d, **a), [(2, 2, 3), (2, 1, 3)], False, False),
    ]


def layer_case(case_id, factory, shapes, integer, training, dtype):
    rng = rng_for(case_id)
    layer = factory(dtype)
    if integer:
        xs = [rng.integers(0, 7, s).astype(dtype) for s in shapes]
    else:
        xs = [rng.normal(0.0, 1.0, s).astype(dtype) for s in shapes]
    layer.build(shapes[0] if len(shapes) == 1 else shapes)
    weights = set_weights(layer, rng, dtype, positive=("moving_variance",))
    xts = [tf.constant(x) for x in xs]
    trainable = layer.trainable_weights
    with tf.GradientTape(persistent=True) as tape:
        for x in xts:
            if not integer:
                tape.watch(x)
        y = layer(xts[0] if len(xts) == 1 else xts, training=training)
        upstream = rng.normal(0.0, 1.0, tuple(y.shape)).astype(dtype)
        lin = tf.reduce_sum(tf.constant(upstream) * y)
        batch = tf.cast(tf.shape(y)[0], y.dtype)
        terms = {"activity_regularizer": layer.activity_regularizer(y) / batch}
        for arg, wname in {"kernel_regularizer": "kernel", "bias_regularizer": "bias", "depthwise_regularizer": "kernel",
                           "pointwise_regularizer": "pointwise_kernel", "embeddings_regularizer": "embeddings",
                           "gamma_regularizer": "gamma", "beta_regularizer": "beta", "alpha_regularizer": "alpha"}.items():
            reg = getattr(layer, arg, None)
            if arg == "depthwise_regularizer" and isinstance(layer, layers.SeparableConv2D):
                wname = "depthwise_kernel"
            if reg is not None and any(v.name == wname for v in trainable):
                terms[arg] = reg(next(v for v in trainable if v.name == wname))
    keras_losses = [float(v) for v in layer.losses]
    assert abs(sum(keras_losses) - float(sum(t.numpy() for t in terms.values()))) <= 1e-5 * (1 + abs(sum(keras_losses))), case_id
    gradients = {}
    for v in trainable:
        path = f"{layer.name}/{v.name}"
        entry = {"upstream": wire(tape.gradient(lin, v.value))}
        for term, value in terms.items():
            g = tape.gradient(value, v.value)
            if g is not None:
                entry[term] = wire(g)
        gradients[path] = entry
    input_grads = [None if integer else wire(tape.gradient(lin, x)) for x in xts]
    updates = {}
    if training and isinstance(layer, layers.BatchNormalization):
        updates = {f"{layer.name}/moving_mean": wire(layer.moving_mean.numpy()),
                   f"{layer.name}/moving_variance": wire(layer.moving_variance.numpy())}
    return {
        "id": f"{case_id}_{DT[dtype].lower()}",
        "class_name": layer.__class__.__name__,
        "name": layer.name,
        "config": layer_config(layer),
        "inputs": [wire(x) for x in xs],
        "weights": weights,
        "training": training,
        "upstream": wire(upstream),
        "expected": {
            "outputs": wire(y),
            "losses": {k: float(v.numpy()) for k, v in terms.items()},
            "keras_layer_losses": keras_losses,
            "gradients": gradients,
            "input_gradients": input_grads,
            "updates": updates,
        },
    }


def layer_config(layer):
    """Keras's serialized layer; Keras 3.15's ELU cannot serialize itself (its get_config
    refuses the regularizer object among its kwargs), so its config is written by hand from
    the layer's attributes in the same form."""
    try:
        return jsonable(keras.layers.serialize(layer))
    except NotImplementedError:
        assert isinstance(layer, layers.ELU)
        return {"module": "keras.layers", "class_name": "ELU", "registered_name": None,
                "config": {"name": layer.name, "alpha": float(layer.alpha), "trainable": True,
                           "activity_regularizer": jsonable(keras.regularizers.serialize(layer.activity_regularizer))}}


def layer_cases():
    out = []
    for spec in layer_specs():
        for dtype in ("float32", "float64"):
            keras.backend.clear_session()
            out.append(layer_case(*spec, dtype))
    return out


# ----------------------------------------------------------------------------- models


def cnn():
    return _seq(
        [layers.InputLayer((8, 8, 2), name="image"),
         layers.Conv2D(4, 3, activation="relu", kernel_regularizer=L2(0.5), activity_regularizer=L1(0.0625), name="conv2d"),
         layers.MaxPooling2D(name="max_pooling2d"),
         layers.Conv2D(3, 2, padding="same", bias_regularizer=L1(0.25), name="conv2d_1"),
         layers.Flatten(name="flatten"),
         layers.Dense(3, activation="softmax", kernel_regularizer=L1(0.125), name="dense")], "cnn")


def _seq(items, name):
    return keras.Sequential(items, name=name)


def mlp(with_dropout=True):
    items = [layers.InputLayer((6,), name="features"),
             layers.Dense(8, kernel_regularizer=L2(0.25), name="dense"),
             layers.BatchNormalization(gamma_regularizer=L2(0.5), beta_regularizer=L1(0.125), name="batch_normalization"),
             layers.Activation("relu", name="activation")]
    if with_dropout:
        items.append(layers.Dropout(0.3, name="dropout"))
    items.append(layers.Dense(1, activation="sigmoid", activity_regularizer=L2(0.0625), name="dense_1"))
    return _seq(items, "mlp")


def two_inputs():
    a = keras.Input((5,), name="a")
    b = keras.Input((3,), name="b")
    d1 = layers.Dense(4, activation="relu", kernel_regularizer=L2(0.25), name="dense")(a)
    d2 = layers.Dense(4, activity_regularizer=L1(0.125), name="dense_1")(b)
    s = layers.Add(name="add")([d1, d2])
    d3 = layers.Dense(4, activation="tanh", bias_regularizer=L2(0.5), name="dense_2")(s)
    r = layers.Add(name="add_1")([s, d3])
    c = layers.Concatenate(name="concatenate")([r, d2])
    n = layers.LayerNormalization(gamma_regularizer=L1(0.0625), name="layer_normalization")(c)
    out = layers.Dense(2, name="dense_3", kernel_regularizer=L1L2(0.125, 0.25))(n)
    return keras.Model([a, b], out, name="two_inputs")


def embedding_model():
    items = [layers.InputLayer((5,), name="tokens"),
             layers.Embedding(10, 4, embeddings_regularizer=L2(0.5), name="embedding"),
             layers.Conv1D(3, 2, activity_regularizer=L1(0.125), activation="relu", name="conv1d"),
             layers.GlobalAveragePooling1D(name="global_average_pooling1d"),
             layers.Dense(1, activation="sigmoid", kernel_regularizer=L2(0.25), name="dense")]
    return _seq(items, "embedding_model")


def softmax_head():
    """A Softmax *layer* as the head, with logits large enough that the probabilities
    saturate: Keras's crossentropy then reads the logits attached to the output."""
    items = [layers.InputLayer((4,), name="x"),
             layers.Dense(3, kernel_regularizer=L2(0.125), name="dense"),
             layers.Softmax(name="softmax")]
    return _seq(items, "softmax_head")


def frozen():
    """Transfer learning: a frozen Dense and a frozen BatchNormalization (trainable=False)
    carry regularizers that Keras does not count; evaluated in training mode."""
    items = [layers.InputLayer((5,), name="x"),
             layers.Dense(4, kernel_regularizer=L2(0.5), activity_regularizer=L1(0.125), trainable=False, name="frozen"),
             layers.BatchNormalization(gamma_regularizer=L2(0.25), trainable=False, name="batch_normalization"),
             layers.Dense(2, kernel_regularizer=L2(0.25), name="dense")]
    return _seq(items, "frozen")


def softmax_dropout_head():
    """A saturated softmax Dense, then Dropout, evaluated in inference mode (Dropout passes
    its input through unchanged)."""
    items = [layers.InputLayer((4,), name="x"),
             layers.Dense(3, activation="softmax", name="dense"),
             layers.Dropout(0.5, name="dropout")]
    return _seq(items, "softmax_dropout_head")


MODEL_LOSS = {"softmax_dropout_head": "categorical_crossentropy", "frozen": "mean_squared_error", "softmax_head": "categorical_crossentropy", "cnn": "categorical_crossentropy", "mlp": "binary_crossentropy", "mlp_bn_training": "binary_crossentropy",
              "two_inputs": "mean_squared_error", "embedding_model": "binary_crossentropy"}
LOSSES = {"categorical_crossentropy": keras.losses.CategoricalCrossentropy, "binary_crossentropy": keras.losses.BinaryCrossentropy,
          "mean_squared_error": keras.losses.MeanSquaredError}



def term_gradients(model, tape, terms: dict, total_t) -> dict:
    """``{"<layer>/<weight>": {term: ∂term/∂w (where it reaches), "total": ∂total/∂w}}`` for
    every trainable weight, from a persistent tape that recorded ``terms`` and ``total_t``."""
    gradients = {}
    for layer in model.layers:
        for v in layer.trainable_weights:
            entry = {}
            for term, value in terms.items():
                g = tape.gradient(value, v.value)
                if g is not None:
                    entry[term] = wire(g)
            entry["total"] = wire(tape.gradient(total_t, v.value))
            gradients[f"{layer.name}/{v.name}"] = entry
    return gradients

def model_case(case_id, model, training=False, batch=4, save=None):
    rng = rng_for(case_id)
    weights = {}
    for layer in model.layers:
        weights.update(set_weights(layer, rng, np.float32, positive=("moving_variance",)))
    if case_id in ("softmax_head", "softmax_dropout_head"):  # saturate: logits of size ~40
        layer = model.get_layer("dense")
        layer.kernel.assign(layer.kernel.numpy() * 40)
        weights["dense/kernel"] = wire(layer.kernel.numpy())
    inputs = []
    for t in model.inputs:
        shape = (batch, *t.shape[1:])
        inputs.append(rng.integers(0, 10, shape).astype(np.float32) if case_id.startswith("embedding")
                      else rng.normal(0, 1, shape).astype(np.float32))
    out_shape = (batch, *model.outputs[0].shape[1:])
    if MODEL_LOSS[case_id] == "categorical_crossentropy":
        targets = np.eye(out_shape[-1], dtype=np.float32)[rng.integers(0, out_shape[-1], batch)]
    elif MODEL_LOSS[case_id] == "binary_crossentropy":
        targets = rng.integers(0, 2, out_shape).astype(np.float32)
    else:
        targets = rng.normal(0, 1, out_shape).astype(np.float32)
    if save and save.endswith(".keras"):
        model.save(FILES / save)
    elif save:
        model.save_weights(FILES / save)
    probe = keras.Model(model.inputs, [layer.output for layer in model.layers])
    loss_fn = LOSSES[MODEL_LOSS[case_id]]()
    xts = [tf.constant(x) for x in inputs]
    with tf.GradientTape(persistent=True) as tape:
        outs = probe(xts if len(xts) > 1 else xts[0], training=training)
        outs = outs if isinstance(outs, list) else [outs]
        y = outs[-1]
        terms = {"data_loss": loss_fn(tf.constant(targets), y)}
        for layer, o in zip(model.layers, outs, strict=True):
            if layer.activity_regularizer is not None:
                terms[f"{layer.name}/activity_regularizer"] = layer.activity_regularizer(o) / tf.cast(tf.shape(o)[0], o.dtype)
            for arg in ("kernel_regularizer", "bias_regularizer", "gamma_regularizer", "beta_regularizer",
                        "embeddings_regularizer"):
                reg = getattr(layer, arg, None)
                wname = {"kernel_regularizer": "kernel", "bias_regularizer": "bias", "gamma_regularizer": "gamma",
                         "beta_regularizer": "beta", "embeddings_regularizer": "embeddings"}[arg]
                var = next((v for v in layer.trainable_weights if v.name == wname), None)
                if reg is not None and var is not None:
                    terms[f"{layer.name}/{arg}"] = reg(var)
        total_t = tf.add_n(list(terms.values()))
    total = float(sum(v.numpy() for v in terms.values()))
    keras_total = float(terms["data_loss"].numpy()) + float(sum(v.numpy() for v in probe.losses))
    assert abs(total - keras_total) <= 1e-5 * (1 + abs(total)), (case_id, total, keras_total)
    gradients = term_gradients(model, tape, terms, total_t)
    updates = {}
    if training:  # a frozen BatchNormalization updates nothing (asserted below)
        for layer in model.layers:
            if isinstance(layer, layers.BatchNormalization) and not layer.trainable:
                assert np.array_equal(layer.moving_mean.numpy(), tensor_of(weights[f"{layer.name}/moving_mean"])), case_id
        for layer in model.layers:
            if isinstance(layer, layers.BatchNormalization) and layer.trainable:
                updates[f"{layer.name}/moving_mean"] = wire(layer.moving_mean.numpy())
                updates[f"{layer.name}/moving_variance"] = wire(layer.moving_variance.numpy())
    case = {
        "id": case_id,
        "model": json.loads(model.to_json()),
        "weights": weights,
        "inputs": wire(inputs[0]) if len(inputs) == 1 else {n: wire(x) for n, x in zip(_input_names(model), inputs, strict=True)},
        "targets": wire(targets),
        "loss": MODEL_LOSS[case_id],
        "training": training,
        "expected": {"outputs": wire(y), "losses": {**{k: float(v.numpy()) for k, v in terms.items()}, "total": total},
                     "gradients": gradients, "updates": updates},
    }
    if save:
        case["keras_file"] = save
    return case


def _input_names(model):
    return [t._keras_history[0].name for t in model.inputs]


def model_cases():
    FILES.mkdir(exist_ok=True)
    out = []
    for case_id, make, training, save in [
        ("cnn", cnn, False, "cnn.keras"),
        ("mlp", lambda: mlp(True), False, "mlp.weights.h5"),
        ("mlp_bn_training", lambda: mlp(False), True, None),
        ("two_inputs", two_inputs, False, "two_inputs.keras"),
        ("embedding_model", embedding_model, False, "embedding_model.keras"),
        ("softmax_head", softmax_head, False, None),
        ("frozen", frozen, True, None),
        ("softmax_dropout_head", softmax_dropout_head, False, None),
    ]:
        keras.backend.clear_session()
        out.append(model_case(case_id, make(), training=training, save=save))
    return out


def dropout_training_case():
    """Keras's own Dropout mask in training mode (seed 7, rate 0.5, on ones): the service
    draws its own mask, so this case records the difference rather than a value to match."""
    keras.backend.clear_session()
    layer = layers.Dropout(0.5, seed=7)
    y = layer(tf.ones((4, 6)), training=True)
    return {"id": "dropout_training_keras_mask", "difference": True, "class_name": "Dropout", "name": layer.name,
            "config": layer_config(layer), "inputs": [wire(np.ones((4, 6), np.float32))],
            "expected": {"outputs": wire(y)}}


def main():
    write("layers", [*layer_cases(), dropout_training_case()])
    write("models", model_cases())


if __name__ == "__main__":
    sys.exit(main())
