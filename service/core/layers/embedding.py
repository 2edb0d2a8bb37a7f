"""``Embedding(input_dim, output_dim)``: ``y[…, :] = embeddings[x[…]]``.

``x`` holds integer indices in ``[0, input_dim)`` (sent as numbers; each must be a whole
number in range); ``y`` has shape ``x.shape + (output_dim,)``.  The gradient wrt the table
adds each output row's gradient onto the row it was read from (a scatter-add):
``∂embeddings[i] = Σ_{positions p with x[p] = i} g[p]``; indices have no gradient.
Regularizer argument: ``embeddings_regularizer``.  ``mask_zero=true`` (which masks the
loss downstream) is refused.

    >>> from typing import ClassVar

import numpy as np
    >>> e = Embedding("embedding", {"input_dim": 3, "output_dim": 2})
    >>> e.build([(1, 2)], {"embedding/embeddings": np.arange(6.0).reshape(3, 2)})
    >>> e.forward([np.array([[2.0, 0.0]])], False)[0]
    array([[[4., 5.],
            [0., 1.]]])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from service.core.errors import ShapeError, SpecError
from service.core.layers.base import Cache, Config, Layer, Shape, Weight


class Embedding(Layer):
    CLASS_NAME = "Embedding"
    REGULARIZED: ClassVar[dict[str, str]] = {"embeddings_regularizer": "embeddings"}

    def configure(self, cfg: Config) -> None:
        self.input_dim = cfg.int_("input_dim", None, minimum=1)
        self.output_dim = cfg.int_("output_dim", None, minimum=1)
        if cfg.get("mask_zero", False):
            raise SpecError(f"{self.where}: mask_zero=true is not supported (it masks the loss)",
                            field="mask_zero")

    def weight_specs(self, input_shapes: Sequence[Shape]) -> list[Weight]:
        return [Weight("embeddings", (self.input_dim, self.output_dim))]

    def output_shape(self, input_shapes: Sequence[Shape]) -> Shape:
        return (*input_shapes[0], self.output_dim)

    def indices(self, x: np.ndarray) -> np.ndarray:
        bad = (x != np.round(x)) | (x < 0) | (x >= self.input_dim)
        if np.any(bad):
            first = x[bad].reshape(-1)[0]
            raise ShapeError(
                f"{self.where}: inputs must be whole numbers in [0, {self.input_dim}), "
                f"got {float(first)!r} ({int(bad.sum())} such values)",
                field="inputs",
            )
        return x.astype(np.intp)

    def forward(self, xs: Sequence[np.ndarray], training: bool) -> tuple[np.ndarray, Cache]:
        idx = self.indices(xs[0])
        return self.weights["embeddings"][idx], idx

    def backward(self, g: np.ndarray, cache: Cache) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        table = np.zeros_like(self.weights["embeddings"])
        np.add.at(table, cache.reshape(-1), g.reshape(-1, self.output_dim))
        return [None], {"embeddings": table}
