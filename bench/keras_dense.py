"""The Keras side of the Dense benchmarks, run only in the Keras interpreter
(``/work/kerasenv``; Keras is no dependency of the service): the same work the service does
for a Dense layer with all three regularizers — each term's gradient with respect to kernel,
bias and inputs, and the totals — with one persistent ``tf.GradientTape``."""

from __future__ import annotations

from typing import Any


def every_term(layer: Any, xt: Any) -> tuple[Any, list[float], list[Any]]:
    """``(outputs, [activity, kernel, bias], [∂kernel/∂W, ∂bias/∂b, ∂activity/∂(W, b, x), totals])``."""
    import tensorflow as tf

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(xt)
        y = layer(xt)
        activity, kernel, bias = layer.losses
    out = [tape.gradient(kernel, layer.kernel), tape.gradient(bias, layer.bias)]
    out += tape.gradient(activity, [layer.kernel, layer.bias, xt])
    out += [out[0] + out[2], out[1] + out[3]]
    del tape
    return y.numpy(), [float(v) for v in (activity, kernel, bias)], [v.numpy() for v in out]
