"""Merge layers: ``Add`` (elementwise sum of equal shapes) and ``Concatenate(axis=-1)``.

``Add``: ``y = Σ xᵢ``, each ``∂xᵢ = g``.  ``Concatenate``: ``y = concat(xs, axis)``,
``∂xᵢ`` is ``g``'s slice for input ``i``.

    >>> import numpy as np
    >>> Concatenate("c", {}).forward([np.zeros((1, 2)), np.ones((1, 1))], False)[0]
    array([[0., 0., 1.]])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.core.errors import ShapeError, SpecError
from service.core.layers.base import Cache, Config, Layer, Shape


class Add(Layer):
    CLASS_NAME = "Add"
    INPUTS = None

    def output_shape(self, input_shapes: Sequence[Shape]) -> Shape:
        first = input_shapes[0]
        for s in input_shapes[1:]:
            if tuple(s) != tuple(first):
                raise ShapeError(
                    f"{self.where}: inputs must have equal shapes, got "
                    f"{', '.join(str(list(s)) for s in input_shapes)}",
                    field="inputs",
                )
        return first

    def forward(self, xs: Sequence[np.ndarray], training: bool) -> tuple[np.ndarray, Cache]:
        y = xs[0].copy()
        for x in xs[1:]:
            y = y + x
        return y, len(xs)

    def backward(self, g: np.ndarray, cache: Cache) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        return [g] * cache, {}


class Concatenate(Layer):
    CLASS_NAME = "Concatenate"
    INPUTS = None

    def configure(self, cfg: Config) -> None:
        axis = cfg.get("axis", -1)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise SpecError(f"{self.where}: axis must be an integer, got {axis!r}", field="axis")
        self.axis = axis

    def _axis(self, rank: int) -> int:
        axis = self.axis + rank if self.axis < 0 else self.axis
        if not 1 <= axis < rank:
            raise ShapeError(f"{self.where}: axis {self.axis} is out of range for rank {rank} (axis 0 is the batch)",
                             field="axis")
        return axis

    def output_shape(self, input_shapes: Sequence[Shape]) -> Shape:
        rank = len(input_shapes[0])
        axis = self._axis(rank)
        for s in input_shapes:
            if len(s) != rank or any(a != b for i, (a, b) in enumerate(zip(s, input_shapes[0], strict=True)) if i != axis):
                raise ShapeError(
                    f"{self.where}: inputs must match except on axis {self.axis}, got "
                    f"{', '.join(str(list(s)) for s in input_shapes)}",
                    field="inputs",
                )
        total = sum(int(s[axis] or 0) for s in input_shapes)
        return (*input_shapes[0][:axis], total, *input_shapes[0][axis + 1:])

    def forward(self, xs: Sequence[np.ndarray], training: bool) -> tuple[np.ndarray, Cache]:
        axis = self._axis(xs[0].ndim)
        return np.concatenate(xs, axis=axis), (axis, [x.shape[axis] for x in xs])

    def backward(self, g: np.ndarray, cache: Cache) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        axis, sizes = cache
        cuts = np.cumsum(sizes)[:-1]
        return list(np.split(g, cuts, axis=axis)), {}
