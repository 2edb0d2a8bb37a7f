"""Piecewise-polynomial activations, each value beside its derivative.

These repeat TensorFlow's operations in TensorFlow's order, so their values match
Keras bit for bit (``sparse_plus`` to 1 ulp: TF squares with ``pow``), and each
derivative at a breakpoint is the one ``tf.GradientTape`` returns there.
"""

from __future__ import annotations

import numpy as np

from service.core.activations.base import P, const, indicator
from service.core.numeric import FloatArray


def f32(v: float) -> float:
    """``v`` rounded to float32, as TF rounds a Python number it casts or stores as an
    attribute (``leaky_relu``'s slope, ``relu``'s threshold and max_value): for float64
    data too."""
    return float(np.float32(v))


def linear(z: FloatArray, p: P) -> FloatArray:
    return z.copy()


def linear_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    return np.ones_like(z)


def relu(z: FloatArray, p: P) -> FloatArray:
    """Keras's ``relu(z, negative_slope=s, max_value=m, threshold=θ)``, op for op.

    * ``s ≠ 0``, no ``m``, ``θ = 0``: ``leaky_relu(z, s)``.
    * otherwise ``x = where(z > θ, z, 0)`` if ``θ ≠ 0``; ``relu6(z)`` if ``m == 6``;
      else ``max(z, 0)``; then ``clip(x, 0, m)`` (unless relu6 was used); then
      ``y = x − s·relu(θ − z)``.  So ``θ = 5`` on ``[0, 2, 5, 7]`` gives ``[0, 0, 0, 7]``.

    Derivative (TF): ``where`` passes where ``z > θ``; ``relu`` where ``z > 0``;
    ``relu6`` on ``(0, 6)``; ``clip`` passes on ``[0, m]`` (ties pass: 1 at ``z = m`` when
    ``m ≠ 6``); the negative part adds ``s`` where ``θ − z > 0`` (0 at ``z = θ``).

    As Keras, ``θ`` in the comparison and ``m`` are rounded to float32 (``ops.cast`` of a
    Python float goes through float32), and so is ``s`` on the ``leaky_relu`` path; ``θ`` in
    the negative part and ``s`` there are exact.
    """
    s, m, th = p["negative_slope"], p["max_value"], p["threshold"]
    if s != 0 and m is None and th == 0:
        return leaky_relu(z, {"negative_slope": s})
    if th != 0:
        x = np.where(z > const(z, f32(th)), z, const(z, 0))
    elif m == 6:
        x = np.minimum(np.maximum(z, 0), const(z, 6))
    else:
        x = np.maximum(z, const(z, 0))
    if m is not None and not (th == 0 and m == 6):
        x = np.maximum(np.minimum(x, const(z, f32(m))), const(z, 0))
    if s != 0:
        negative = np.maximum(-z + const(z, th), const(z, 0)) if th != 0 else np.maximum(-z, const(z, 0))
        x = x - const(z, s) * negative
    return x


def relu_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    s, m, th = p["negative_slope"], p["max_value"], p["threshold"]
    if s != 0 and m is None and th == 0:
        return leaky_relu_d(z, y, {"negative_slope": s})
    if th != 0:
        d = indicator(z > const(z, f32(th)), z)
    elif m == 6:
        d = indicator((z > 0) & (z < 6), z)
    else:
        d = indicator(z > 0, z)
    if m is not None and not (th == 0 and m == 6):
        # tf.clip_by_value = maximum(minimum(x, m), 0); both pass the gradient at a tie.
        x = np.where(z > const(z, f32(th)), z, const(z, 0)) if th != 0 else np.maximum(z, const(z, 0))
        mm = const(z, f32(m))
        d = d * indicator((x <= mm) & (np.minimum(x, mm) >= 0), z)
    if s != 0:
        d = d + const(z, s) * indicator(-z + const(z, th) > 0, z)
    return d


def leaky_relu(z: FloatArray, p: P) -> FloatArray:
    """``z if z > 0 else s·z`` (TF's select, so ``s > 1`` is not a max); ``s`` is TF's float32
    attribute, so float64 data sees ``s`` rounded to float32 (0.2 → 0.20000000298)."""
    return np.where(z > 0, z, z * const(z, f32(p["negative_slope"])))


def leaky_relu_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """``1 if z > 0 else s``: TF tests ``z > 0``, so the slope at 0 is ``s``."""
    return np.where(z > 0, const(z, 1), const(z, f32(p["negative_slope"])))


def relu6(z: FloatArray, p: P) -> FloatArray:
    return np.minimum(np.maximum(z, const(z, 0)), const(z, 6))


def relu6_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """1 on the open interval (0, 6); 0 at 0 and at 6 (TF's Relu6Grad)."""
    return indicator((z > 0) & (z < 6), z)


def hard_sigmoid(z: FloatArray, p: P) -> FloatArray:
    """``relu6(z + 3)/6`` (Keras 3; Keras 2 used ``0.2z + 0.5``)."""
    return relu6(z + const(z, 3), p) / const(z, 6)


def hard_sigmoid_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """``1/6`` where ``0 < z + 3 < 6``; 0 at ``z = ±3``."""
    s = z + const(z, 3)
    return np.where((s > 0) & (s < 6), const(z, 1) / const(z, 6), const(z, 0))


def hard_silu(z: FloatArray, p: P) -> FloatArray:
    return z * hard_sigmoid(z, p)


def hard_silu_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """``hard_sigmoid(z) + z·hard_sigmoid'(z)``: 0 at −3, 1 at 3, ½ at 0."""
    return hard_sigmoid(z, p) + z * hard_sigmoid_d(z, y, p)


def hard_tanh(z: FloatArray, p: P) -> FloatArray:
    return np.maximum(np.minimum(z, const(z, 1)), const(z, -1))


def hard_tanh_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """1 on the closed interval [−1, 1] (clip_by_value passes ties), 0 outside."""
    return indicator((z <= 1) & (z >= -1), z)


def soft_shrink(z: FloatArray, p: P) -> FloatArray:
    t = const(z, p["threshold"])
    return np.where(z > t, z - t, np.where(z < -t, z + t, const(z, 0)))


def soft_shrink_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """1 where ``|z| > t`` (strictly); 0 at ``±t``."""
    t = const(z, p["threshold"])
    return indicator((z > t) | (z < -t), z)


def hard_shrink(z: FloatArray, p: P) -> FloatArray:
    return np.where(np.abs(z) > const(z, p["threshold"]), z, const(z, 0))


def hard_shrink_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """1 where ``|z| > t`` (strictly); 0 at ``±t``."""
    return indicator(np.abs(z) > const(z, p["threshold"]), z)


def sparse_plus(z: FloatArray, p: P) -> FloatArray:
    s = z + 1
    return np.where(z <= -1, const(z, 0), np.where(z < 1, const(z, 0.25) * (s * s), z))


def sparse_plus_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """0 for ``z ≤ −1``, ``(z + 1)/2`` on ``(−1, 1)``, 1 for ``z ≥ 1``."""
    return np.where(z <= -1, const(z, 0), np.where(z < 1, const(z, 0.5) * (z + 1), const(z, 1)))


def sparse_sigmoid(z: FloatArray, p: P) -> FloatArray:
    return np.where(z <= -1, const(z, 0), np.where(z >= 1, const(z, 1), const(z, 0.5) * (z + 1)))


def sparse_sigmoid_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """½ on the open interval (−1, 1); 0 at ±1 and outside."""
    return np.where((z > -1) & (z < 1), const(z, 0.5), const(z, 0))


def threshold(z: FloatArray, p: P) -> FloatArray:
    """``z if z > threshold else default_value`` (TF's ``where``; both parameters exact)."""
    return np.where(z > const(z, p["threshold"]), z, const(z, p["default_value"]))


def threshold_d(z: FloatArray, y: FloatArray, p: P) -> FloatArray:
    """1 where ``z > threshold`` (strictly), else 0."""
    return indicator(z > const(z, p["threshold"]), z)
