"""Convolutions, ``channels_last``: ``Conv1D``, ``Conv2D``, ``DepthwiseConv2D``, ``SeparableConv2D``.

Output size per spatial axis (input ``n``, kernel ``k``, stride ``s``, dilation ``d``,
effective kernel ``e = (k − 1)·d + 1``), as TensorFlow pads::

    valid:  out = ⌊(n − e) / s⌋ + 1,   no padding
    same:   out = ⌈n / s⌉,  total pad = max((out − 1)·s + e − n, 0), ⌊total/2⌋ before
    causal: (Conv1D) e − 1 zeros before, out = ⌊(n − 1) / s⌋ + 1

Each kernel tap ``t = (i, j)`` reads the strided window ``P_t`` of the padded input; the
patches are laid side by side (``cols``, shape ``(batch, oh, ow, taps, channels)``) so that

    Conv2D          z = cols · K                    K: (kh, kw, in, filters)
    DepthwiseConv2D z[…, c·m + q] = Σ_t cols[…, t, c] · K[t, c, q]      K: (kh, kw, in, m)
    SeparableConv2D z = depthwise(x) · P            P: (1, 1, in·m, filters)

then ``+ bias`` and ``y = activation(z)``.  The backward pass is the transpose of each step:
``∂K = colsᵀ g_z``, ``∂cols = g_z Kᵀ`` scattered back onto the padded input (overlapping
windows add), ``∂bias = Σ g_z``.

    >>> import numpy as np
    >>> conv = Conv2D("conv2d", {"filters": 1, "kernel_size": 2, "use_bias": False})
    >>> conv.build([(1, 3, 3, 1)], {"conv2d/kernel": np.ones((2, 2, 1, 1))})
    >>> conv.forward([np.arange(9.0).reshape(1, 3, 3, 1)], False)[0][0, :, :, 0]
    array([[ 8., 12.],
           [20., 24.]])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from service.core.errors import ShapeError, SpecError
from service.core.layers.base import Cache, Config, Layer, Shape, Weight, known, need_rank


@dataclass(frozen=True)
class Geometry:
    """One convolution's windows: kernel size, strides, dilation, padding per spatial axis."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: str

    def plan(self, where: str, sizes: Sequence[int]) -> tuple[list[int], list[tuple[int, int]]]:
        """Output sizes and (before, after) pads per spatial axis."""
        outs, pads = [], []
        for n, k, s, d in zip(sizes, self.kernel, self.strides, self.dilation, strict=True):
            e = (k - 1) * d + 1
            if self.padding == "valid":
                out, pad = ((n - e) // s + 1 if n >= e else 0), (0, 0)
            elif self.padding == "same":
                out = -(-n // s)
                total = max((out - 1) * s + e - n, 0)
                pad = (total // 2, total - total // 2)
            else:  # causal
                out, pad = (n - 1) // s + 1, (e - 1, 0)
            if out <= 0:
                raise ShapeError(
                    f"{where}: an input of size {n} is smaller than the effective kernel size {e} "
                    f"(kernel {k}, dilation {d}) with padding 'valid'",
                    field="inputs",
                )
            outs.append(out)
            pads.append(pad)
        return outs, pads


def _windows(g: Geometry, outs: Sequence[int]) -> list[tuple[slice, slice]]:
    kh, kw = g.kernel
    (sh, sw), (dh, dw) = g.strides, g.dilation
    oh, ow = outs
    return [
        (slice(i * dh, i * dh + (oh - 1) * sh + 1, sh), slice(j * dw, j * dw + (ow - 1) * sw + 1, sw))
        for i in range(kh) for j in range(kw)
    ]


def im2col(x: np.ndarray, g: Geometry, where: str, fill: float = 0.0) -> tuple[np.ndarray, Any]:
    """``cols`` of shape ``(batch, oh, ow, taps, channels)`` and what :func:`col2im` needs;
    padded positions hold ``fill``."""
    outs, pads = g.plan(where, x.shape[1:3])
    padded = any(p != (0, 0) for p in pads)
    xp = np.pad(x, ((0, 0), *pads, (0, 0)), constant_values=fill) if padded else x
    wins = _windows(g, outs)
    cols = np.stack([xp[:, a, b, :] for a, b in wins], axis=3)
    return cols, (xp.shape, pads, wins, x.shape)


def col2im(g_cols: np.ndarray, info: Any) -> np.ndarray:
    """The transpose of :func:`im2col`: each tap's gradient added back onto the input."""
    xp_shape, pads, wins, x_shape = info
    g_xp = np.zeros(xp_shape, dtype=g_cols.dtype)
    for t, (a, b) in enumerate(wins):
        g_xp[:, a, b, :] += g_cols[:, :, :, t, :]
    (top, _), (left, _) = pads
    return g_xp[:, top : top + x_shape[1], left : left + x_shape[2], :]


class _Conv(Layer):
    RANK = 2
    KERNEL = "kernel"
    REGULARIZED: ClassVar[dict[str, str]] = {"kernel_regularizer": "kernel", "bias_regularizer": "bias"}
    PADDINGS: tuple[str, ...] = ("valid", "same")

    def configure(self, cfg: Config) -> None:
        r = self.RANK
        self.geometry = Geometry(
            kernel=cfg.tuple_("kernel_size", None, r),
            strides=cfg.tuple_("strides", 1, r),
            dilation=cfg.tuple_("dilation_rate", 1, r),
            padding=cfg.choice("padding", "valid", self.PADDINGS),
        )
        if max(self.geometry.strides) > 1 and max(self.geometry.dilation) > 1:
            raise SpecError(f"{self.where}: strides > 1 together with dilation_rate > 1 is not supported "
                            "(Keras refuses it too)", field="strides")
        self.use_bias = cfg.bool_("use_bias", True)
        self.activation = cfg.activation()
        self.configure_more(cfg)

    def configure_more(self, cfg: Config) -> None:
        self.filters = cfg.int_("filters", None, minimum=1)

    # 1-D layers run as 2-D with a height of 1
    def _as2d(self, x: np.ndarray) -> np.ndarray:
        return x[:, None] if self.RANK == 1 else x

    def _geom2d(self) -> Geometry:
        g = self.geometry
        if self.RANK == 2:
            return g
        return Geometry((1, *g.kernel), (1, *g.strides), (1, *g.dilation), g.padding)

    def _spatial(self, input_shapes: Sequence[Shape]) -> tuple[list[int], int]:
        need_rank(self.where, input_shapes[0], self.RANK + 2, "batch, spatial…, channels")
        sizes = [known(self.where, input_shapes[0], a) for a in range(1, self.RANK + 1)]
        outs, _ = self.geometry.plan(self.where, sizes)
        return outs, known(self.where, input_shapes[0], -1)

    def out_channels(self, channels: int) -> int:
        return self.filters

    def output_shape(self, input_shapes: Sequence[Shape]) -> Shape:
        outs, c = self._spatial(input_shapes)
        return (input_shapes[0][0], *outs, self.out_channels(c))

    def flops(self, input_shapes: Sequence[Shape]) -> int:
        outs, c = self._spatial(input_shapes)
        batch = int(input_shapes[0][0] or 1)
        return batch * math.prod(outs) * math.prod(self.geometry.kernel) * c * self.filters_per_tap(c)

    def filters_per_tap(self, channels: int) -> int:
        return self.filters

    def workspace(self, input_shapes: Sequence[Shape]) -> int:
        """Elements of the patch matrix ``cols`` (batch · out positions · taps · channels)."""
        outs, c = self._spatial(input_shapes)
        return int(input_shapes[0][0] or 1) * math.prod(outs) * math.prod(self.geometry.kernel) * c

    def weight_specs(self, input_shapes: Sequence[Shape]) -> list[Weight]:
        _, c = self._spatial(input_shapes)
        specs = [Weight("kernel", (*self.geometry.kernel, c, self.filters))]
        if self.use_bias:
            specs.append(Weight("bias", (self.filters,)))
        return specs

    def linear(self, x2: np.ndarray) -> tuple[np.ndarray, Any]:
        cols, info = im2col(x2, self._geom2d(), self.where)
        k = self.weights["kernel"]
        n, oh, ow, t, c = cols.shape
        z = cols.reshape(n, oh, ow, t * c) @ k.reshape(t * c, -1)
        return z, (cols, info)

    def linear_backward(self, g_z: np.ndarray, saved: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        cols, info = saved
        k = self.weights["kernel"]
        t, c = cols.shape[3:]
        g2 = g_z.reshape(-1, g_z.shape[-1])
        g_k = (cols.reshape(-1, t * c).T @ g2).reshape(k.shape)
        g_cols = (g2 @ k.reshape(t * c, -1).T).reshape(cols.shape)
        return col2im(g_cols, info), {"kernel": g_k}

    def forward(self, xs: Sequence[np.ndarray], training: bool) -> tuple[np.ndarray, Cache]:
        x2 = self._as2d(xs[0])
        with np.errstate(over="ignore", invalid="ignore"):
            z, saved = self.linear(x2)
            if self.use_bias:
                z = z + self.weights["bias"]
        if self.RANK == 1:
            z = z[:, 0]
        y = self.activation(z)
        return y, (z, y, saved)

    def head(self, cache: Cache) -> Any:
        return self.activation, cache[0]

    def backward(self, g: np.ndarray, cache: Cache) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        return self.backward_from_logits(self.activation.vjp(cache[0], cache[1], g), cache)

    def backward_from_logits(self, g_z: np.ndarray, cache: Cache) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        saved = cache[2]
        g2 = self._as2d(g_z)
        g_x, grads = self.linear_backward(g2, saved)
        if self.use_bias:
            grads["bias"] = g2.reshape(-1, g2.shape[-1]).sum(axis=0)
        return [g_x[:, 0] if self.RANK == 1 else g_x], grads


class Conv2D(_Conv):
    CLASS_NAME = "Conv2D"


class Conv1D(_Conv):
    CLASS_NAME = "Conv1D"
    RANK = 1
    PADDINGS = ("valid", "same", "causal")


class DepthwiseConv2D(_Conv):
    CLASS_NAME = "DepthwiseConv2D"
    REGULARIZED: ClassVar[dict[str, str]] = {"depthwise_regularizer": "kernel", "bias_regularizer": "bias"}

    def configure_more(self, cfg: Config) -> None:
        self.multiplier = cfg.int_("depth_multiplier", 1, minimum=1)

    def out_channels(self, channels: int) -> int:
        return channels * self.multiplier

    def filters_per_tap(self, channels: int) -> int:
        return self.multiplier

    def weight_specs(self, input_shapes: Sequence[Shape]) -> list[Weight]:
        _, c = self._spatial(input_shapes)
        specs = [Weight("kernel", (*self.geometry.kernel, c, self.multiplier))]
        if self.use_bias:
            specs.append(Weight("bias", (c * self.multiplier,)))
        return specs

    @staticmethod
    def depthwise(cols: np.ndarray, k: np.ndarray) -> np.ndarray:
        n, oh, ow, t, c = cols.shape
        z = np.einsum("nhwtc,tcm->nhwcm", cols, k.reshape(t, c, -1), optimize=True)
        return z.reshape(n, oh, ow, -1)

    @staticmethod
    def depthwise_backward(g_z: np.ndarray, cols: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, oh, ow, t, c = cols.shape
        g5 = g_z.reshape(n, oh, ow, c, -1)
        g_k = np.einsum("nhwtc,nhwcm->tcm", cols, g5, optimize=True).reshape(k.shape)
        g_cols = np.einsum("nhwcm,tcm->nhwtc", g5, k.reshape(t, c, -1), optimize=True)
        return g_k, g_cols

    def linear(self, x2: np.ndarray) -> tuple[np.ndarray, Any]:
        cols, info = im2col(x2, self._geom2d(), self.where)
        return self.depthwise(cols, self.weights["kernel"]), (cols, info)

    def linear_backward(self, g_z: np.ndarray, saved: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        cols, info = saved
        g_k, g_cols = self.depthwise_backward(g_z, cols, self.weights["kernel"])
        return col2im(g_cols, info), {"kernel": g_k}


class SeparableConv2D(_Conv):
    CLASS_NAME = "SeparableConv2D"
    REGULARIZED: ClassVar[dict[str, str]] = {
        "depthwise_regularizer": "depthwise_kernel",
        "pointwise_regularizer": "pointwise_kernel",
        "bias_regularizer": "bias",
    }

    def configure_more(self, cfg: Config) -> None:
        self.filters = cfg.int_("filters", None, minimum=1)
        self.multiplier = cfg.int_("depth_multiplier", 1, minimum=1)

    def filters_per_tap(self, channels: int) -> int:
        return self.multiplier + -(-self.multiplier * self.filters // math.prod(self.geometry.kernel))

    def weight_specs(self, input_shapes: Sequence[Shape]) -> list[Weight]:
        _, c = self._spatial(input_shapes)
        specs = [
            Weight("depthwise_kernel", (*self.geometry.kernel, c, self.multiplier)),
            Weight("pointwise_kernel", (1, 1, c * self.multiplier, self.filters)),
        ]
        if self.use_bias:
            specs.append(Weight("bias", (self.filters,)))
        return specs

    def linear(self, x2: np.ndarray) -> tuple[np.ndarray, Any]:
        cols, info = im2col(x2, self._geom2d(), self.where)
        d = DepthwiseConv2D.depthwise(cols, self.weights["depthwise_kernel"])
        p = self.weights["pointwise_kernel"]
        return d @ p.reshape(p.shape[2], p.shape[3]), (cols, info, d)

    def linear_backward(self, g_z: np.ndarray, saved: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        cols, info, d = saved
        p = self.weights["pointwise_kernel"]
        p2 = p.reshape(p.shape[2], p.shape[3])
        g2 = g_z.reshape(-1, g_z.shape[-1])
        g_p = (d.reshape(-1, d.shape[-1]).T @ g2).reshape(p.shape)
        g_d = g_z @ p2.T
        g_k, g_cols = DepthwiseConv2D.depthwise_backward(g_d, cols, self.weights["depthwise_kernel"])
        return col2im(g_cols, info), {"depthwise_kernel": g_k, "pointwise_kernel": g_p}
