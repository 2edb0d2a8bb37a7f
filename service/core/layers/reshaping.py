"""Layers that only move values: ``Flatten``, ``Reshape``, and ``Dropout``.

* ``Flatten``: ``(batch, d1, …, dk) → (batch, d1·…·dk)``; the gradient is reshaped back.
* ``Reshape(target_shape)``: the shape without the batch axis, one entry may be ``-1``.
* ``Dropout(rate, noise_shape=None, seed=None)``: the identity at inference.  In training
  mode ``y = x ⊙ m / (1 − rate)`` with ``m`` a 0/1 mask drawn by the **service's own**
  generator, ``numpy.random.default_rng(seed)`` (seed 0 when the config has none),
  keeping an element when its uniform draw is ``≥ rate``.  It is not Keras's random
  stream: the same seed gives a different mask in Keras.  ``∂x = g ⊙ m / (1 − rate)``.

    >>> import numpy as np
    >>> Flatten("flatten", {}).forward([np.zeros((2, 3, 4))], False)[0].shape
    (2, 12)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.core.errors import ShapeError, SpecError, shown
from service.core.layers.base import Cache, Config, Layer, Shape


class Flatten(Layer):
    CLASS_NAME = "Flatten"

    def output_shape(self, input_shapes: Sequence[Shape]) -> Shape:
        shape = input_shapes[0]
        if len(shape) < 2:
            raise ShapeError(f"{self.where} expects inputs of rank >= 2, got shape {list(shape)}", field="inputs")
        n = 1
        for d in shape[1:]:
            n *= int(d or 0)
        return (shape[0], n)

    def forward(self, xs: Sequence[np.ndarray], training: bool) -> tuple[np.ndarray, Cache]:
        x = xs[0]
        return x.reshape([int(d or 0) for d in self.output_shape([x.shape])]), x.shape

    def backward(self, g: np.ndarray, cache: Cache) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        return [g.reshape(cache)], {}


class Reshape(Layer):
    CLASS_NAME = "Reshape"

    def configure(self, cfg: Config) -> None:
        target = cfg.get("target_shape")
        if not isinstance(target, list | tuple) or not target or any(
            isinstance(d, bool) or not isinstance(d, int) or (d < 1 and d != -1) for d in target
        ) or list(target).count(-1) > 1:
            raise SpecError(
                f"{self.where}: target_shape must be positive sizes (at most one -1), got {shown(target)}",
                field="target_shape",
            )
        self.target = tuple(target)

    def output_shape(self, input_shapes: Sequence[Shape]) -> Shape:
        shape = input_shapes[0]
        n = 1
        for d in shape[1:]:
            n *= int(d or 0)
        known_part = 1
        for d in self.target:
            if d != -1:
                known_part *= d
        out = list(self.target)
        if -1 in out:
            if known_part == 0 or n % known_part:
                raise ShapeError(
                    f"{self.where}: cannot reshape {n} values per sample to {list(self.target)}",
                    field="target_shape",
                )
            out[out.index(-1)] = n // known_part
        elif known_part != n:
            raise ShapeError(
                f"{self.where}: cannot reshape {n} values per sample (input shape {list(shape)}) "
                f"to {list(self.target)} ({known_part} values)",
                field="target_shape",
            )
        return (shape[0], *out)

    def forward(self, xs: Sequence[np.ndarray], training: bool) -> tuple[np.ndarray, Cache]:
        x = xs[0]
        return x.reshape([int(d or 0) for d in self.output_shape([x.shape])]), x.shape

    def backward(self, g: np.ndarray, cache: Cache) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        return [g.reshape(cache)], {}


class Dropout(Layer):
    CLASS_NAME = "Dropout"

    def configure(self, cfg: Config) -> None:
        self.rate = cfg.float_("rate", None, minimum=0.0, below=1.0)
        seed = cfg.get("seed")
        self.seed = 0 if seed is None else cfg.int_("seed", 0)
        noise = cfg.get("noise_shape")
        if noise is not None and (not isinstance(noise, list | tuple) or any(
            d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 1) for d in noise
        )):
            raise SpecError(f"{self.where}: noise_shape must be sizes or null, got {shown(noise)}", field="noise_shape")
        self.noise_shape = None if noise is None else tuple(noise)

    def mask(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """The 0/1 keep mask (broadcast to ``shape``), scaled by ``1/(1 − rate)``."""
        draw_shape = shape
        if self.noise_shape is not None:
            if len(self.noise_shape) != len(shape):
                raise ShapeError(
                    f"{self.where}: noise_shape {list(self.noise_shape)} does not fit inputs of shape {list(shape)}",
                    field="noise_shape",
                )
            draw_shape = tuple(s if d is None else d for d, s in zip(self.noise_shape, shape, strict=True))
        keep = np.random.default_rng(self.seed).random(draw_shape) >= self.rate
        return (keep / dtype.type(1 - self.rate)).astype(dtype)

    def forward(self, xs: Sequence[np.ndarray], training: bool) -> tuple[np.ndarray, Cache]:
        x = xs[0]
        if not training or self.rate == 0:
            return x, None
        m = self.mask(x.shape, x.dtype)
        return x * m, m

    def passes_through(self, cache: Cache) -> bool:
        return cache is None

    def backward(self, g: np.ndarray, cache: Cache) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        return [g if cache is None else g * cache], {}
