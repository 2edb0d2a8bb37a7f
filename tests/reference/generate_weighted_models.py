"""Generate Keras reference vectors for models with ``sample_weight`` and loss reductions.

Writes ``tests/reference/vectors/weighted_models.json``: models evaluated by
``service.core.model.evaluate`` with a per-sample ``sample_weight`` and a loss
``reduction`` (``"none"`` included).  Every expected number comes from real Keras 3
(TensorFlow backend): the data loss from ``keras.losses.<Loss>(reduction=...)`` called
with ``sample_weight``, penalties from the layers' regularizers, gradients from
``tf.GradientTape``.  With ``reduction="none"`` the loss is a tensor of per-sample
values (``data_loss_values``); its term is their sum, as the tape differentiates it.
NumPy only draws the seeded inputs, weights and sample weights.  Run it outside the
project's venv::

    TF_CPP_MIN_LOG_LEVEL=3 KERAS_BACKEND=tensorflow \\
        /work/kerasenv/bin/python tests/reference/generate_weighted_models.py

Case: ``{"id", "model": json.loads(model.to_json()), "weights", "inputs", "targets",
"loss": {"name", "reduction"}, "sample_weight", "expected": {"outputs", "losses",
"gradients", "data_loss_values"?}}`` (FP32, inference mode).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras
import numpy as np
import tensorflow as tf
from generate_models import L1, L2, OUT, cnn, rng_for, set_weights, term_gradients, two_inputs, wire
from keras import layers

LOSSES = {"categorical_crossentropy": keras.losses.CategoricalCrossentropy,
          "mean_squared_error": keras.losses.MeanSquaredError,
          "huber": keras.losses.Huber}
WEIGHTED = ("kernel_regularizer", "bias_regularizer", "gamma_regularizer", "beta_regularizer")


def pooled():
    """The output is a pooling layer's (no activation to take logits from)."""
    return keras.Sequential(
        [layers.InputLayer((6, 2), name="x"),
         layers.Conv1D(3, 2, activation="tanh", kernel_regularizer=L2(0.5), activity_regularizer=L1(0.125), name="conv1d"),
         layers.GlobalAveragePooling1D(name="global_average_pooling1d")], name="pooled")


def case(case_id, model, loss_name, reduction, batch=5):
    rng = rng_for(case_id)
    weights = {}
    for layer in model.layers:
        weights.update(set_weights(layer, rng, np.float32))
    inputs = [rng.normal(0, 1, (batch, *t.shape[1:])).astype(np.float32) for t in model.inputs]
    out_shape = (batch, *model.outputs[0].shape[1:])
    if loss_name == "categorical_crossentropy":
        targets = np.eye(out_shape[-1], dtype=np.float32)[rng.integers(0, out_shape[-1], batch)]
    else:
        targets = rng.normal(0, 1, out_shape).astype(np.float32)
    sample_weight = rng.uniform(0.0, 2.0, batch).astype(np.float32)
    sample_weight[1] = 0.0  # a sample that does not count
    loss_fn = LOSSES[loss_name](reduction=reduction)
    probe = keras.Model(model.inputs, [layer.output for layer in model.layers])
    xts = [tf.constant(x) for x in inputs]
    with tf.GradientTape(persistent=True) as tape:
        outs = probe(xts if len(xts) > 1 else xts[0], training=False)
        outs = outs if isinstance(outs, list) else [outs]
        y = outs[-1]
        data = loss_fn(tf.constant(targets), y, sample_weight=tf.constant(sample_weight))
        terms = {"data_loss": tf.reduce_sum(data)}
        for layer, o in zip(model.layers, outs, strict=True):
            if layer.activity_regularizer is not None:
                terms[f"{layer.name}/activity_regularizer"] = layer.activity_regularizer(o) / tf.cast(tf.shape(o)[0], o.dtype)
            for arg in WEIGHTED:
                reg = getattr(layer, arg, None)
                var = next((v for v in layer.trainable_weights if v.name == arg.removesuffix("_regularizer")), None)
                if reg is not None and var is not None:
                    terms[f"{layer.name}/{arg}"] = reg(var)
        total_t = tf.add_n(list(terms.values()))
    gradients = term_gradients(model, tape, terms, total_t)
    expected = {"outputs": wire(y),
                "losses": {**{k: float(v.numpy()) for k, v in terms.items()}, "total": float(sum(v.numpy() for v in terms.values()))},
                "gradients": gradients}
    if reduction == "none":
        expected["data_loss_values"] = wire(data)
    names = [t._keras_history[0].name for t in model.inputs]
    return {
        "id": case_id,
        "model": json.loads(model.to_json()),
        "weights": weights,
        "inputs": wire(inputs[0]) if len(inputs) == 1 else {n: wire(x) for n, x in zip(names, inputs, strict=True)},
        "targets": wire(targets),
        "loss": {"name": loss_name, "reduction": reduction},
        "sample_weight": wire(sample_weight),
        "expected": expected,
    }


def main():
    cases = []
    for case_id, make, loss_name, reduction in [
        ("cnn_softmax_head_weighted", cnn, "categorical_crossentropy", "sum_over_batch_size"),
        ("cnn_softmax_head_none", cnn, "categorical_crossentropy", "none"),
        ("two_inputs_mse_none", two_inputs, "mean_squared_error", "none"),
        ("two_inputs_huber_sum", two_inputs, "huber", "sum"),
        ("pooled_mse_mean_with_sample_weight", pooled, "mean_squared_error", "mean_with_sample_weight"),
        ("pooled_mse_none", pooled, "mean_squared_error", "none"),
    ]:
        keras.backend.clear_session()
        cases.append(case(case_id, make(), loss_name, reduction))
    header = {"keras": keras.__version__, "tensorflow": tf.__version__, "numpy": np.__version__,
              "script": "tests/reference/generate_weighted_models.py"}
    lines = ['{"generator": ' + json.dumps(header) + ",", ' "cases": [']
    for i, c in enumerate(cases):
        lines.append("  " + json.dumps(c, separators=(",", ":"), allow_nan=False) + ("," if i < len(cases) - 1 else ""))
    lines.append(" ]}")
    (OUT / "weighted_models.json").write_text("\n".join(lines) + "\n")
    print(f"weighted_models.json: {len(cases)} cases")


if __name__ == "__main__":
    sys.exit(main())
