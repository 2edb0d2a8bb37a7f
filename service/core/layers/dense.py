"""``Dense``: ``y = activation(x · kernel + bias)`` over the last axis.

The arithmetic is :mod:`service.core.dense`'s (the one ``/v1/dense`` uses): ``x`` of shape
``(batch, …, in)``, ``kernel`` ``(in, units)``, ``bias`` ``(units,)``; backward
``∂kernel = xᵀ g_z``, ``∂bias = Σ g_z``, ``∂x = g_z kernelᵀ`` with ``g_z = activation'(z) ⊙ g_y``.

    >>> import numpy as np
    >>> layer = Dense("dense", {"units": 1, "use_bias": False})
    >>> layer.build([(1, 2)], {"dense/kernel": np.array([[1.0], [2.0]])})
    >>> layer.forward([np.array([[3.0, 4.0]])], False)[0]
    array([[11.]])
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, ClassVar, cast

import numpy as np

from service.core import dense as dense_math
from service.core.layers.base import Cache, Config, Layer, Shape, Weight, known, need_rank


class Dense(Layer):
    CLASS_NAME = "Dense"
    REGULARIZED: ClassVar[dict[str, str]] = {"kernel_regularizer": "kernel", "bias_regularizer": "bias"}

    def configure(self, cfg: Config) -> None:
        self.units = cfg.int_("units", None, minimum=1)
        self.use_bias = cfg.bool_("use_bias", True)
        self.activation = cfg.activation()
        self.prefix = f"{self.name}/"
        #: The input ranks accepted (None: any, for a stack layer whose inputs were checked).
        self.ranks: tuple[int, ...] | None = (2, 3, 4, 5, 6)

    @classmethod
    def of(cls, name: str, layer: dense_math.Layer) -> Dense:
        """The layer of an already validated :class:`service.core.dense.Layer` (``/v1/network``'s
        stack); errors keep that layer's field prefix (``layers.1.``)."""
        self = cls.__new__(cls)
        self.name, self.where, self.prefix = name, f"layer {name!r} (Dense)", layer.where
        self.regularizers = dict(layer.regularizers)
        self.units, self.use_bias, self.activation = layer.units, layer.bias is not None, layer.activation
        self.trainable, self.weights, self.ranks = True, {}, None
        return self

    def _need_rank(self, shape: Shape) -> None:
        if self.ranks is not None:
            need_rank(self.where, shape, self.ranks, "batch, …, features")

    def weight_specs(self, input_shapes: Sequence[Shape]) -> list[Weight]:
        self._need_rank(input_shapes[0])
        n_in = known(self.where, input_shapes[0], -1)
        specs = [Weight("kernel", (n_in, self.units))]
        if self.use_bias:
            specs.append(Weight("bias", (self.units,)))
        return specs

    def output_shape(self, input_shapes: Sequence[Shape]) -> Shape:
        self._need_rank(input_shapes[0])
        shape = (*input_shapes[0][:-1], self.units)
        if None in shape:  # sized when the data comes
            return shape
        return self.activation.output_shape(cast(tuple[int, ...], shape))  # glu halves its axis

    def flops(self, input_shapes: Sequence[Shape]) -> int:
        rows = 1
        for d in input_shapes[0][:-1]:
            rows *= int(d or 1)
        return rows * int(input_shapes[0][-1] or 1) * self.units

    def _math(self) -> dense_math.Layer:
        return dense_math.Layer(
            kernel=self.weights["kernel"], bias=self.weights.get("bias"),
            activation=self.activation, regularizers={}, where=self.prefix,
        )

    def forward(self, xs: Sequence[np.ndarray], training: bool) -> tuple[np.ndarray, Cache]:
        p = dense_math.forward(self._math(), xs[0])
        return p.y, p

    def head(self, cache: Cache) -> Any:
        return self.activation, cache.z

    def backward(self, g: np.ndarray, cache: Cache) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        return self.backward_from_logits(self.activation.vjp(cache.z, cache.y, g), cache)

    def backward_from_logits(self, g_z: np.ndarray, cache: Cache) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        return self.backward_some(g_z, cache, inputs=True, weights=("kernel", "bias"), from_logits=True)

    def backward_some(
        self, g: np.ndarray, cache: Cache, *, inputs: bool, weights: Collection[str], from_logits: bool = False
    ) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        """Only the products asked for: ``xᵀ g_z`` for the kernel, ``Σ g_z`` for the bias,
        ``g_z kernelᵀ`` for the input."""
        g_z = g if from_logits else self.activation.vjp(cache.z, cache.y, g)
        d_kernel, d_bias, d_x = dense_math.backward(
            self._math(), cache, g_z, need_inputs=inputs, need_kernel="kernel" in weights, need_bias="bias" in weights,
        )
        grads = {k: v for k, v in (("kernel", d_kernel), ("bias", d_bias)) if v is not None}
        return [d_x], grads
