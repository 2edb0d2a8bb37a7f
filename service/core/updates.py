"""The update rules of Keras 3.15's optimizers, in Keras's operation order.

Each rule updates one parameter ``w`` in place and its slots ``s`` (a dict of Keras's slot
names) given the clipped gradient ``g``, the learning rate ``lr`` (float32, cast to ``w``'s
dtype), the iteration count ``t`` before the step, the optimizer's parameters ``p`` and
``c``, the constructor of ``w``'s dtype.  The formulas are in :mod:`service.core.optimizers`.

Rounding follows Keras: a hyperparameter Keras passes through ``ops.cast`` (momentum, the
β's in ``βᵗ``, weight decay, Adagrad's initial accumulator, Nadam's 0.96) is rounded
through float32 (:func:`keras_cast`) even for float64 parameters, while ``1 − β``, ε and
ρ enter exactly; ``βᵗ`` is correctly rounded (:func:`power`).

    >>> w, s = np.array([1.0], np.float32), {}
    >>> sgd(np.array([0.5], np.float32), w, s, np.float32(0.1), 0, {"momentum": 0.0}, np.float32)
    >>> w.tolist()
    [0.949999988079071]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from service.core.errors import SpecError
from service.core.numeric import FloatArray

Slots = dict[str, FloatArray]


def keras_cast(c: Any, x: float) -> Any:
    """A hyperparameter as Keras's ``ops.cast(python_float, dtype)`` gives it: through float32."""
    return c(np.float32(x))


def power(base: Any, exponent: Any) -> Any:
    """``baseᵉ`` in ``base``'s dtype, correctly rounded (computed in float64 for float32, as
    TensorFlow's kernel rounds it; NumPy's float32 ``power`` is off by an ulp at times)."""
    return type(base)(np.power(np.float64(base), np.float64(exponent)))


def sgd(g: FloatArray, w: FloatArray, s: Slots, lr: Any, t: int, p: Mapping[str, Any], c: Any) -> None:
    if p["momentum"] != 0:
        mu = keras_cast(c, p["momentum"])
        s["momentum"] = s["momentum"] * mu - g * lr
        w += (s["momentum"] * mu - g * lr) if p["nesterov"] else s["momentum"]
    else:
        w -= g * lr


def rmsprop(g: FloatArray, w: FloatArray, s: Slots, lr: Any, t: int, p: Mapping[str, Any], c: Any) -> None:
    rho = p["rho"]
    s["velocity"] = c(rho) * s["velocity"] + c(1 - rho) * np.square(g)
    if p["centered"]:
        s["average_gradient"] = c(rho) * s["average_gradient"] + c(1 - rho) * g
        denominator = s["velocity"] - np.square(s["average_gradient"]) + c(p["epsilon"])
    else:
        denominator = s["velocity"] + c(p["epsilon"])
    increment = (lr * g) / np.sqrt(denominator)
    if p["momentum"] > 0:
        s["momentum"] = c(p["momentum"]) * s["momentum"] + increment
        w -= s["momentum"]
    else:
        w -= increment


def adagrad(g: FloatArray, w: FloatArray, s: Slots, lr: Any, t: int, p: Mapping[str, Any], c: Any) -> None:
    s["accumulator"] = s["accumulator"] + np.square(g)
    w -= (lr * g) / np.sqrt(s["accumulator"] + c(p["epsilon"]))


def adam(g: FloatArray, w: FloatArray, s: Slots, lr: Any, t: int, p: Mapping[str, Any], c: Any) -> None:
    step = c(t + 1)
    b1_power, b2_power = power(keras_cast(c, p["beta_1"]), step), power(keras_cast(c, p["beta_2"]), step)
    alpha = lr * np.sqrt(c(1) - b2_power) / (c(1) - b1_power)
    s["momentum"] = s["momentum"] + (g - s["momentum"]) * c(1 - p["beta_1"])
    s["velocity"] = s["velocity"] + (np.square(g) - s["velocity"]) * c(1 - p["beta_2"])
    v = s["velocity"]
    if p["amsgrad"]:
        s["velocity_hat"] = v = np.maximum(s["velocity_hat"], v)
    w -= (s["momentum"] * alpha) / (np.sqrt(v) + c(p["epsilon"]))


def adamax(g: FloatArray, w: FloatArray, s: Slots, lr: Any, t: int, p: Mapping[str, Any], c: Any) -> None:
    b1_power = power(keras_cast(c, p["beta_1"]), c(t + 1))
    s["momentum"] = s["momentum"] + (g - s["momentum"]) * c(1 - p["beta_1"])
    s["norm"] = np.maximum(c(p["beta_2"]) * s["norm"], np.abs(g))
    w -= (lr * s["momentum"]) / ((c(1) - b1_power) * (s["norm"] + c(p["epsilon"])))


#: Iterations up to which Nadam's ``u_product`` is recomputed (about 0.1 s of NumPy).
MAX_NADAM_ITERATIONS = 10_000_000
_CHUNK = 1 << 16
#: The latest (iterations, u_product) per (beta_1, dtype): a run's next step costs O(1).
_LATEST: dict[tuple[float, Any], tuple[int, Any]] = {}


def nadam_u_product(iterations: int, beta_1: float, c: Any) -> Any:
    """Keras's optimizer-wide ``u_product`` after ``iterations`` steps,
    ``Π_t β1·(1 − ½·0.96ᵗ)``, multiplied left to right in the parameters' dtype with
    Keras's two roundings per step (``u·β1``, then ``·(1 − ½·0.96ᵗ)``): one
    ``multiply.accumulate`` over the interleaved factors, in chunks."""
    if iterations > MAX_NADAM_ITERATIONS:
        raise SpecError(f"a nadam state with {iterations} iterations is beyond the {MAX_NADAM_ITERATIONS} "
                        "the service recomputes Keras's u_product for", field="state.iterations")
    key = (beta_1, c)
    start, u = _LATEST.get(key, (0, c(1)))
    if start > iterations:
        start, u = 0, c(1)
    dtype = np.dtype(c)
    while start < iterations:
        t = np.arange(start + 1, min(iterations, start + _CHUNK) + 1, dtype=np.float64)
        decay = np.power(np.float64(c(0.96)), t).astype(dtype)  # correctly rounded, as power()
        factors = np.empty(2 * t.size + 1, dtype)
        factors[0], factors[1::2], factors[2::2] = u, c(beta_1), c(1) - c(0.5) * decay
        u = np.multiply.accumulate(factors)[-1]
        start += t.size
    if len(_LATEST) >= 256:  # many distinct β1 values: forget them rather than grow
        _LATEST.clear()
    _LATEST[key] = (iterations, u)
    return c(u)


def _mu(beta_1: Any, t: int, c: Any) -> Any:
    return beta_1 * (c(1) - c(0.5) * power(keras_cast(c, 0.96), c(t)))


def nadam(g: FloatArray, w: FloatArray, s: Slots, lr: Any, t: int, p: Mapping[str, Any], c: Any) -> None:
    b1, b2 = keras_cast(c, p["beta_1"]), keras_cast(c, p["beta_2"])
    u_t, u_next = _mu(b1, t + 1, c), _mu(b1, t + 2, c)
    u_product = p["_u_product"]  # already advanced for this step, as Keras does
    u_product_next = u_product * u_next
    s["momentum"] = s["momentum"] + (g - s["momentum"]) * (c(1) - b1)
    s["velocity"] = s["velocity"] + (np.square(g) - s["velocity"]) * (c(1) - b2)
    m_hat = (u_next * s["momentum"]) / (c(1) - u_product_next) + ((c(1) - u_t) * g) / (c(1) - u_product)
    v_hat = s["velocity"] / (c(1) - power(b2, c(t + 1)))
    w -= (m_hat * lr) / (np.sqrt(v_hat) + c(p["epsilon"]))


def lion(g: FloatArray, w: FloatArray, s: Slots, lr: Any, t: int, p: Mapping[str, Any], c: Any) -> None:
    b1, b2 = keras_cast(c, p["beta_1"]), keras_cast(c, p["beta_2"])
    w -= lr * np.sign(s["momentum"] * b1 + g * (c(1) - b1))
    s["momentum"] = s["momentum"] * b2 + g * (c(1) - b2)
