"""``BatchNormalization`` and ``LayerNormalization`` (Keras 3 arguments and defaults).

Both compute, over the reduced axes ``A`` (``M`` elements each)::

    r = 1 / sqrt(var + epsilon),   y = (x − mean) · r · gamma + beta

* BatchNormalization (``axis=-1, momentum=0.99, epsilon=1e-3, center, scale``): ``A`` is
  every axis but ``axis``.  Inference uses ``moving_mean`` / ``moving_variance``; training
  uses the batch's mean and (biased) variance and returns the updated statistics
  ``moving ← moving · momentum + batch · (1 − momentum)`` (Keras's formula).  The moving
  statistics are never trainable, never regularized.
* LayerNormalization (``axis=-1, epsilon=1e-3, center, scale``): ``A`` is ``axis`` (one or
  several axes), statistics per sample; ``gamma``/``beta`` have the shape of those axes.

Backward with ``ĝ = g · gamma`` and ``x̂ = (x − mean) · r``: with batch statistics
``∂x = r/M · (M·ĝ − Σ_A ĝ − x̂ · Σ_A ĝ·x̂)``; with fixed statistics ``∂x = ĝ · r``;
``∂gamma = Σ g·x̂``, ``∂beta = Σ g`` over the axes gamma is broadcast along.
Regularizer arguments: ``gamma_regularizer``, ``beta_regularizer``.

    >>> import numpy as np
    >>> ln = LayerNormalization("ln", {"center": False, "scale": False, "epsilon": 0.0})
    >>> ln.build([(1, 2)], {})
    >>> ln.forward([np.array([[1.0, 3.0]])], False)[0]
    array([[-1.,  1.]])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from service.core.errors import ShapeError, SpecError
from service.core.layers.base import Cache, Config, Layer, Shape, Weight


def _axes(where: str, axis: Any, rank: int) -> tuple[int, ...]:
    raw = axis if isinstance(axis, list | tuple) else [axis]
    out = []
    for a in raw:
        if isinstance(a, bool) or not isinstance(a, int) or not -rank <= a < rank or a % rank == 0:
            raise ShapeError(
                f"{where}: axis {a!r} is out of range for inputs of rank {rank} (axis 0 is the batch)",
                field="axis",
            )
        out.append(a % rank)
    return tuple(sorted(set(out)))


class _Norm(Layer):
    REGULARIZED: ClassVar[dict[str, str]] = {"gamma_regularizer": "gamma", "beta_regularizer": "beta"}

    def configure(self, cfg: Config) -> None:
        self.axis = cfg.get("axis", -1)
        if not isinstance(self.axis, int | list | tuple) or isinstance(self.axis, bool):
            raise SpecError(f"{self.where}: axis must be an integer or a list of them", field="axis")
        self.epsilon = cfg.float_("epsilon", 1e-3, minimum=0.0)
        self.center = cfg.bool_("center", True)
        self.scale = cfg.bool_("scale", True)

    def param_axes(self, rank: int) -> tuple[int, ...]:
        """The axes gamma/beta run along."""
        return _axes(self.where, self.axis, rank)

    def param_shape(self, shape: Shape) -> tuple[int, ...]:
        return tuple(int(shape[a] or 0) for a in self.param_axes(len(shape)))

    def weight_specs(self, input_shapes: Sequence[Shape]) -> list[Weight]:
        """``gamma`` (when ``scale``) and ``beta`` (when ``center``), in Keras's order."""
        shape = self.param_shape(input_shapes[0])
        return [Weight(name, shape) for name, on in (("gamma", self.scale), ("beta", self.center)) if on]

    def _broadcast(self, v: np.ndarray, rank: int) -> np.ndarray:
        axes = self.param_axes(rank)
        shape = [1] * rank
        for a, n in zip(axes, v.shape, strict=True):
            shape[a] = n
        return v.reshape(shape)

    def _params(self, rank: int, dtype: Any) -> tuple[Any, Any]:
        one, zero = dtype.type(1), dtype.type(0)
        gamma = self._broadcast(self.weights["gamma"], rank) if self.scale else one
        beta = self._broadcast(self.weights["beta"], rank) if self.center else zero
        return gamma, beta

    def normalize(self, x: np.ndarray, mean: Any, var: Any) -> tuple[np.ndarray, Any, np.ndarray]:
        gamma, beta = self._params(x.ndim, x.dtype)
        r = 1 / np.sqrt(var + x.dtype.type(self.epsilon))
        xhat = (x - mean) * r
        return xhat * gamma + beta, r, xhat

    def grads(self, g: np.ndarray, xhat: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``ĝ`` and the gamma/beta gradients."""
        rank = g.ndim
        axes = self.param_axes(rank)
        other = tuple(a for a in range(rank) if a not in axes)
        grads: dict[str, np.ndarray] = {}
        if self.center:
            grads["beta"] = g.sum(axis=other).reshape(self.weights["beta"].shape)
        if self.scale:
            grads["gamma"] = (g * xhat).sum(axis=other).reshape(self.weights["gamma"].shape)
            g = g * self._broadcast(self.weights["gamma"], rank)
        return g, grads


def _batch_stats_backward(gh: np.ndarray, xhat: np.ndarray, r: Any, axes: tuple[int, ...]) -> np.ndarray:
    m = 1
    for a in axes:
        m *= gh.shape[a]
    s1 = gh.sum(axis=axes, keepdims=True)
    s2 = (gh * xhat).sum(axis=axes, keepdims=True)
    return r / gh.dtype.type(m) * (gh.dtype.type(m) * gh - s1 - xhat * s2)


class BatchNormalization(_Norm):
    CLASS_NAME = "BatchNormalization"

    def configure(self, cfg: Config) -> None:
        super().configure(cfg)
        self.momentum = cfg.float_("momentum", 0.99, minimum=0.0)
        if not isinstance(self.axis, int):
            if len(self.axis) != 1:
                raise SpecError(f"{self.where}: only one axis is supported, got {self.axis!r}", field="axis")
            self.axis = self.axis[0]

    def weight_specs(self, input_shapes: Sequence[Shape]) -> list[Weight]:
        shape = self.param_shape(input_shapes[0])
        return [*super().weight_specs(input_shapes),
                Weight("moving_mean", shape, False), Weight("moving_variance", shape, False)]

    def forward(self, xs: Sequence[np.ndarray], training: bool) -> tuple[np.ndarray, Cache]:
        x = xs[0]
        rank = x.ndim
        stats = tuple(a for a in range(rank) if a not in self.param_axes(rank))
        # a frozen BatchNormalization runs in inference mode; an empty batch has no statistics
        training = training and self.trainable and all(x.shape[a] > 0 for a in stats)
        if training:
            mean = x.mean(axis=stats, keepdims=True)
            var = np.square(x - mean).mean(axis=stats, keepdims=True)
        else:
            mean = self._broadcast(self.weights["moving_mean"], rank)
            var = self._broadcast(self.weights["moving_variance"], rank)
        y, r, xhat = self.normalize(x, mean, var)
        updates = {}
        if training:
            # Keras: moving * momentum + batch * (1.0 - momentum), each Python float cast once
            mom, rest = x.dtype.type(self.momentum), x.dtype.type(1.0 - self.momentum)
            shape = self.weights["moving_mean"].shape
            updates = {
                "moving_mean": self.weights["moving_mean"] * mom + mean.reshape(shape) * rest,
                "moving_variance": self.weights["moving_variance"] * mom + var.reshape(shape) * rest,
            }
        return y, (training, r, xhat, stats, updates)

    def updates(self, cache: Cache) -> dict[str, np.ndarray]:
        return dict(cache[4])

    def backward(self, g: np.ndarray, cache: Cache) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        training, r, xhat, stats, _ = cache
        gh, grads = self.grads(g, xhat)
        g_x = _batch_stats_backward(gh, xhat, r, stats) if training else gh * r
        return [g_x], grads


class LayerNormalization(_Norm):
    CLASS_NAME = "LayerNormalization"

    def configure(self, cfg: Config) -> None:
        super().configure(cfg)
        if cfg.bool_("rms_scaling", False):
            raise SpecError(f"{self.where}: rms_scaling=true is not supported", field="rms_scaling")


    def forward(self, xs: Sequence[np.ndarray], training: bool) -> tuple[np.ndarray, Cache]:
        x = xs[0]
        axes = self.param_axes(x.ndim)
        if x.size == 0:  # nothing to normalize (and no statistics to form)
            return x.copy(), None
        mean = x.mean(axis=axes, keepdims=True)
        var = np.square(x - mean).mean(axis=axes, keepdims=True)
        y, r, xhat = self.normalize(x, mean, var)
        return y, (r, xhat, axes)

    def backward(self, g: np.ndarray, cache: Cache) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        if cache is None:
            return [np.zeros_like(g)], {w: np.zeros_like(self.weights[w]) for w in ("gamma", "beta") if w in self.weights}
        r, xhat, axes = cache
        gh, grads = self.grads(g, xhat)
        return [_batch_stats_backward(gh, xhat, r, axes)], grads
