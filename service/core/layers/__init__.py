"""The layer registry: Keras class name → layer class (one interface, see :mod:`.base`).

    >>> sorted(CLASSES)[:3]
    ['Activation', 'Add', 'AveragePooling1D']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.core.errors import SpecError, shown
from service.core.layers import (
    activation,
    convolution,
    dense,
    embedding,
    merging,
    normalization,
    pooling,
    reshaping,
)
from service.core.layers.base import Layer, Weight

_ALL: tuple[type[Layer], ...] = (
    dense.Dense,
    activation.ActivationLayer, activation.ReLU, activation.LeakyReLU, activation.ELU,
    activation.PReLU, activation.Softmax,
    reshaping.Flatten, reshaping.Reshape, reshaping.Dropout,
    merging.Add, merging.Concatenate,
    normalization.BatchNormalization, normalization.LayerNormalization,
    convolution.Conv1D, convolution.Conv2D, convolution.DepthwiseConv2D, convolution.SeparableConv2D,
    embedding.Embedding,
    pooling.MaxPooling1D, pooling.MaxPooling2D, pooling.AveragePooling1D, pooling.AveragePooling2D,
    pooling.GlobalMaxPooling1D, pooling.GlobalMaxPooling2D,
    pooling.GlobalAveragePooling1D, pooling.GlobalAveragePooling2D,
)
#: Keras class name -> layer class.
CLASSES: dict[str, type[Layer]] = {cls.CLASS_NAME: cls for cls in _ALL}
#: tf.keras 2 / Keras 1 class names that are the same layer.
ALIASES = {
    "MaxPool1D": "MaxPooling1D", "MaxPool2D": "MaxPooling2D",
    "AvgPool1D": "AveragePooling1D", "AvgPool2D": "AveragePooling2D",
    "GlobalMaxPool1D": "GlobalMaxPooling1D", "GlobalMaxPool2D": "GlobalMaxPooling2D",
    "GlobalAvgPool1D": "GlobalAveragePooling1D", "GlobalAvgPool2D": "GlobalAveragePooling2D",
    "Convolution1D": "Conv1D", "Convolution2D": "Conv2D",
    "SeparableConvolution2D": "SeparableConv2D", "DepthwiseConvolution2D": "DepthwiseConv2D",
}


def create(class_name: Any, name: str, config: Mapping[str, Any]) -> Layer:
    """A layer from its Keras class name and config; an unsupported class is a SpecError."""
    cls = CLASSES.get(ALIASES.get(class_name, class_name)) if isinstance(class_name, str) else None
    if cls is None:
        raise SpecError(
            f"layer {name!r}: class {shown(class_name)} is not supported; supported: "
            f"{', '.join(sorted(CLASSES))}, InputLayer",
            field="class_name",
        )
    return cls(name, config)


__all__ = ["CLASSES", "Layer", "Weight", "create"]
