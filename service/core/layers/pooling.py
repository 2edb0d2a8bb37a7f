"""Pooling, ``channels_last``: Max/AveragePooling1D/2D and GlobalMax/GlobalAveragePooling1D/2D.

Windows are the convolutions' (:class:`~service.core.layers.convolution.Geometry`, no
dilation; ``strides`` default to ``pool_size``; ``padding`` valid or same):

* max:     ``y = max_t P_t``; the gradient goes to the window's first maximum (scan order);
           same-padding positions count as −∞;
* average: ``y = Σ_t P_t / count`` where ``count`` is the number of *real* (unpadded)
           positions in the window (TensorFlow's rule for ``same``); ``∂P_t = g / count``;
* global:  a max or mean over every spatial axis (``keepdims`` as Keras); the global max
           splits the gradient equally among tied maxima (``reduce_max``'s gradient).

    >>> import numpy as np
    >>> MaxPooling1D("m", {}).forward([np.array([[[1.0], [3.0], [2.0], [0.0]]])], False)[0][:, :, 0]
    array([[3., 2.]])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from service.core.errors import ShapeError
from service.core.layers.base import Cache, Config, Layer, Shape, known, need_rank
from service.core.layers.convolution import Geometry, col2im, im2col


class _Pool(Layer):
    RANK = 2
    MAX = True

    def configure(self, cfg: Config) -> None:
        pool = cfg.tuple_("pool_size", 2, self.RANK)
        strides = cfg.get("strides")
        self.geometry = Geometry(
            kernel=pool,
            strides=pool if strides is None else cfg.tuple_("strides", None, self.RANK),
            dilation=(1,) * self.RANK,
            padding=cfg.choice("padding", "valid", ("valid", "same")),
        )

    def _geom2d(self) -> Geometry:
        g = self.geometry
        return g if self.RANK == 2 else Geometry((1, *g.kernel), (1, *g.strides), (1, 1), g.padding)

    def output_shape(self, input_shapes: Sequence[Shape]) -> Shape:
        need_rank(self.where, input_shapes[0], self.RANK + 2, "batch, spatial…, channels")
        sizes = [known(self.where, input_shapes[0], a) for a in range(1, self.RANK + 1)]
        outs, _ = self.geometry.plan(self.where, sizes)
        return (input_shapes[0][0], *outs, input_shapes[0][-1])

    def flops(self, input_shapes: Sequence[Shape]) -> int:
        n = 1
        for d in self.output_shape(input_shapes):
            n *= int(d or 1)
        return n * int(np.prod(self.geometry.kernel))

    def workspace(self, input_shapes: Sequence[Shape]) -> int:
        return self.flops(input_shapes)

    def forward(self, xs: Sequence[np.ndarray], training: bool) -> tuple[np.ndarray, Cache]:
        x2 = xs[0][:, None] if self.RANK == 1 else xs[0]
        g = self._geom2d()
        if self.MAX:
            cols, info = im2col(x2, g, self.where, fill=-np.inf)
            arg = np.argmax(cols, axis=3)
            y = np.take_along_axis(cols, arg[:, :, :, None, :], axis=3)[:, :, :, 0, :]
            cache: Any = (arg, cols.shape, info)
        else:
            cols, info = im2col(x2, g, self.where)
            count, _ = im2col(np.ones((1, *x2.shape[1:3], 1), x2.dtype), g, self.where)
            count = count.sum(axis=3)  # (1, oh, ow, 1)
            y = cols.sum(axis=3) / count
            cache = (count, cols.shape, info)
        return (y[:, 0] if self.RANK == 1 else y), cache

    def backward(self, g: np.ndarray, cache: Cache) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        g2 = g[:, None] if self.RANK == 1 else g
        first, shape, info = cache
        g_cols = np.zeros(shape, dtype=g.dtype)
        if self.MAX:
            np.put_along_axis(g_cols, first[:, :, :, None, :], g2[:, :, :, None, :], axis=3)
        else:
            g_cols += (g2 / first)[:, :, :, None, :]
        g_x = col2im(g_cols, info)
        return [g_x[:, 0] if self.RANK == 1 else g_x], {}


class MaxPooling2D(_Pool):
    CLASS_NAME = "MaxPooling2D"


class MaxPooling1D(_Pool):
    CLASS_NAME = "MaxPooling1D"
    RANK = 1


class AveragePooling2D(_Pool):
    CLASS_NAME = "AveragePooling2D"
    MAX = False


class AveragePooling1D(_Pool):
    CLASS_NAME = "AveragePooling1D"
    RANK = 1
    MAX = False


class _Global(Layer):
    RANK = 2
    MAX = True

    def configure(self, cfg: Config) -> None:
        self.keepdims = cfg.bool_("keepdims", False)

    def _axes(self) -> tuple[int, ...]:
        return tuple(range(1, self.RANK + 1))

    def output_shape(self, input_shapes: Sequence[Shape]) -> Shape:
        shape = input_shapes[0]
        need_rank(self.where, shape, self.RANK + 2, "batch, spatial…, channels")
        if any(known(self.where, shape, a) == 0 for a in self._axes()):
            raise ShapeError(f"{self.where} needs at least one position to pool over, got shape {list(shape)}",
                             field="inputs")
        if self.keepdims:
            return (shape[0], *([1] * self.RANK), shape[-1])
        return (shape[0], shape[-1])

    def forward(self, xs: Sequence[np.ndarray], training: bool) -> tuple[np.ndarray, Cache]:
        x = xs[0]
        axes = self._axes()
        y = x.max(axis=axes, keepdims=True) if self.MAX else x.mean(axis=axes, keepdims=True)
        out = y if self.keepdims else y.reshape(x.shape[0], x.shape[-1])
        return out, (x, y)

    def backward(self, g: np.ndarray, cache: Cache) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        x, y = cache
        g = g.reshape(y.shape)
        axes = self._axes()
        if self.MAX:
            hit = (x == y).astype(x.dtype)
            return [g * hit / hit.sum(axis=axes, keepdims=True)], {}
        n = 1
        for a in axes:
            n *= x.shape[a]
        return [np.broadcast_to(g / x.dtype.type(n), x.shape).copy()], {}


class GlobalMaxPooling2D(_Global):
    CLASS_NAME = "GlobalMaxPooling2D"


class GlobalMaxPooling1D(_Global):
    CLASS_NAME = "GlobalMaxPooling1D"
    RANK = 1


class GlobalAveragePooling2D(_Global):
    CLASS_NAME = "GlobalAveragePooling2D"
    MAX = False


class GlobalAveragePooling1D(_Global):
    CLASS_NAME = "GlobalAveragePooling1D"
    RANK = 1
    MAX = False
