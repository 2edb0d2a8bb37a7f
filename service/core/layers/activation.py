"""Activation layers: ``Activation``, ``ReLU``, ``LeakyReLU``, ``ELU``, ``Softmax``, ``PReLU``.

Each (but PReLU) is ``y = f(x)`` with the activation registry's ``f`` and its vector-Jacobian
product, under Keras's layer arguments and defaults:

* ``ReLU(max_value=None, negative_slope=0, threshold=0)`` → ``relu`` with those parameters;
* ``LeakyReLU(negative_slope=0.3)`` (Keras 2's ``alpha`` accepted) → ``leaky_relu``;
* ``ELU(alpha=1)`` → ``elu``;  ``Softmax(axis=-1)`` → ``softmax``.

``PReLU``: ``y = relu(x) − alpha ⊙ relu(−x)`` with a trainable ``alpha`` of the input's
shape without the batch axis (size 1 along ``shared_axes``); ``∂y/∂x = 1 (x > 0), alpha
(x < 0), 0 at 0`` (TensorFlow's relu′(0) = 0), ``∂y/∂alpha = −relu(−x)`` summed over the
batch and the shared axes.  Regularizer argument: ``alpha_regularizer``.

    >>> import numpy as np
    >>> LeakyReLU("leaky_re_lu", {"alpha": 0.01}).forward([np.array([-1.0, 2.0])], False)[0]
    array([-0.01,  2.  ])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from service.core import activations
from service.core.errors import SpecError
from service.core.layers.base import Cache, Config, Layer, Shape, Weight


class _Elementwise(Layer):
    def make(self, cfg: Config) -> activations.Activation:
        raise NotImplementedError

    def configure(self, cfg: Config) -> None:
        try:
            self.activation = self.make(cfg)
        except SpecError as exc:
            if exc.message.startswith(self.where):
                raise
            raise SpecError(f"{self.where}: {exc.message}", field=exc.field) from None

    def forward(self, xs: Sequence[np.ndarray], training: bool) -> tuple[np.ndarray, Cache]:
        y = self.activation(xs[0])
        return y, (xs[0], y)

    def head(self, cache: Cache) -> Any:
        return self.activation, cache[0]

    def backward(self, g: np.ndarray, cache: Cache) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        return [self.activation.vjp(cache[0], cache[1], g)], {}

    def backward_from_logits(self, g_z: np.ndarray, cache: Cache) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        return [g_z], {}


class ActivationLayer(_Elementwise):
    CLASS_NAME = "Activation"

    def make(self, cfg: Config) -> activations.Activation:
        return cfg.activation()


class ReLU(_Elementwise):
    CLASS_NAME = "ReLU"

    def make(self, cfg: Config) -> activations.Activation:
        max_value = cfg.get("max_value")
        params = {
            "negative_slope": cfg.float_("negative_slope", 0.0, minimum=0.0),
            "max_value": None if max_value is None else cfg.float_("max_value", 0.0, minimum=0.0),
            "threshold": cfg.float_("threshold", 0.0),
        }
        return activations.get({"name": "relu", **params})


class LeakyReLU(_Elementwise):
    CLASS_NAME = "LeakyReLU"

    def make(self, cfg: Config) -> activations.Activation:
        key = "alpha" if cfg.items.get("alpha") is not None else "negative_slope"
        if key == "alpha":
            cfg.get("negative_slope")
        return activations.get({"name": "leaky_relu", "negative_slope": cfg.float_(key, 0.3, minimum=0.0)})


class ELU(_Elementwise):
    CLASS_NAME = "ELU"

    def make(self, cfg: Config) -> activations.Activation:
        return activations.get({"name": "elu", "alpha": cfg.float_("alpha", 1.0)})


class Softmax(_Elementwise):
    CLASS_NAME = "Softmax"

    def make(self, cfg: Config) -> activations.Activation:
        axis = cfg.get("axis", -1)
        if isinstance(axis, list):
            axis = tuple(axis)
        return activations.get({"name": "softmax", "axis": axis})


class PReLU(Layer):
    CLASS_NAME = "PReLU"
    REGULARIZED: ClassVar[dict[str, str]] = {"alpha_regularizer": "alpha"}

    def configure(self, cfg: Config) -> None:
        shared = cfg.get("shared_axes")
        if shared is None:
            shared = []
        if isinstance(shared, int) and not isinstance(shared, bool):
            shared = [shared]
        if not isinstance(shared, list | tuple) or any(
            isinstance(a, bool) or not isinstance(a, int) or a < 1 for a in shared
        ):
            raise SpecError(f"{self.where}: shared_axes must be axes >= 1, got {shared!r}", field="shared_axes")
        self.shared_axes = tuple(shared)

    def weight_specs(self, input_shapes: Sequence[Shape]) -> list[Weight]:
        shape = [1 if d is None else int(d) for d in input_shapes[0][1:]]
        for a in self.shared_axes:
            if a > len(shape):
                raise SpecError(
                    f"{self.where}: shared axis {a} is out of range for inputs of shape "
                    f"{list(input_shapes[0])}",
                    field="shared_axes",
                )
            shape[a - 1] = 1
        return [Weight("alpha", tuple(shape))]

    def forward(self, xs: Sequence[np.ndarray], training: bool) -> tuple[np.ndarray, Cache]:
        x = xs[0]
        alpha = self.weights["alpha"]
        neg = np.maximum(-x, 0)
        return np.maximum(x, 0) - alpha * neg, (x, neg)

    def backward(self, g: np.ndarray, cache: Cache) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        x, neg = cache
        alpha = self.weights["alpha"]
        g_x = g * np.where(x > 0, 1, np.where(x < 0, alpha, 0)).astype(x.dtype)
        g_alpha = -(g * neg)
        axes = (0, *self.shared_axes)
        g_alpha = g_alpha.sum(axis=axes, keepdims=True)[0]
        return [g_x], {"alpha": g_alpha.reshape(alpha.shape)}
