"""Request models: tensors (decoded by :mod:`service.wire`), regularizer, activation and
loss specs (validated by the core's own ``get()``), and the four compute requests."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from service import wire
from service.core import activations, losses, regularizers
from service.core.errors import CoreError, SpecError
from service.core.network import LayerSpec
from service.core.selection import Selection, gradient_selection
from service.errors import TooManyLayers, did_you_mean
from service.schemas.base import (
    ActivationName,
    ActivityNormalization,
    Datatype,
    Encoding,
    LossName,
    ParsedBy,
    RegularizerIdentifier,
    current_budget,
)

T = TypeVar("T")

# --------------------------------------------------------------------------- tensors (input)

_NUMBERS = {"type": "array", "items": {"anyOf": [{"type": "number"}, {"type": "array", "items": {}}]}}


class _Schema(BaseModel):
    """Base of the models that only document a JSON form (validation is done elsewhere)."""

    model_config = ConfigDict(extra="forbid")


class TensorWithData(_Schema):
    """``data`` flat in row-major order, or nested as ``shape``; ``shape`` may be left out
    when ``data`` is nested."""

    shape: list[Annotated[int, Field(ge=0)]] | None = None
    datatype: Datatype = Datatype.FP32
    data: Annotated[list[Any], WithJsonSchema(_NUMBERS)]


class TensorWithB64(_Schema):
    """``b64``: base64 (standard alphabet, padded) of the little-endian C-order bytes."""

    shape: list[Annotated[int, Field(ge=0)]]
    datatype: Datatype = Datatype.FP32
    b64: str


NestedArray = Annotated[
    list[Any],
    WithJsonSchema({**_NUMBERS, "title": "NestedArray", "description": "Rectangular nested arrays of finite numbers, FP32."}),
]


def _decode_tensor(value: Any) -> np.ndarray:
    try:
        return wire.decode(value, current_budget())
    except wire.TensorError as exc:
        raise PydanticCustomError("invalid_tensor", "{reason}", {"reason": str(exc)}) from None


Tensor = Annotated[np.ndarray, ParsedBy(_decode_tensor, NestedArray | TensorWithData | TensorWithB64)]

# --------------------------------------------------------------------------- specs (input)

Factor = Annotated[float, Field(ge=0, allow_inf_nan=False)]
#: ``null`` reads as Keras's constructors read ``None``: 0.01 for L1/L2, 0 for L1L2.
NullableFactor = Annotated[float | None, Field(ge=0, allow_inf_nan=False)]


class L1Regularizer(_Schema):
    """``l1 · Σ|x|``; gradient ``l1 · sign(x)``."""

    type: Literal["l1"]
    l1: NullableFactor = regularizers.L1.defaults["l1"]


class L2Regularizer(_Schema):
    """``l2 · Σx²``; gradient ``2 · l2 · x`` (Keras's convention)."""

    type: Literal["l2"]
    l2: NullableFactor = regularizers.L2.defaults["l2"]


class L1L2Regularizer(_Schema):
    """``l1 · Σ|x| + l2 · Σx²``."""

    type: Literal["l1l2"]
    l1: NullableFactor = regularizers.L1L2.defaults["l1"]
    l2: NullableFactor = regularizers.L1L2.defaults["l2"]


class OrthogonalRegularizer(_Schema):
    """``factor ·`` mean ``|cos|`` between distinct rows (or columns) of a rank-2 tensor."""

    type: Literal["orthogonal"]
    factor: Factor = regularizers.Orthogonal.defaults["factor"]
    mode: Literal["rows", "columns"] = regularizers.Orthogonal.defaults["mode"]


TaggedRegularizer = Annotated[
    L1Regularizer | L2Regularizer | L1L2Regularizer | OrthogonalRegularizer,
    Field(discriminator="type", title="TaggedRegularizer"),
]


class KerasRegularizer(_Schema):
    """Keras's serialized form (``keras.regularizers.serialize``); ``module`` and
    ``registered_name`` are accepted and ignored."""

    class_name: str = Field(examples=["L1L2"])
    config: dict[str, float | str | None] = Field(default_factory=dict, examples=[{"l1": 0.01, "l2": 0.0}])
    module: str | None = None
    registered_name: str | None = None


class ActivationObject(BaseModel):
    """An activation with parameters, e.g. ``{"name": "leaky_relu", "negative_slope": 0.1}``."""

    model_config = ConfigDict(extra="allow")
    name: ActivationName  # type: ignore[valid-type]


class LossObject(BaseModel):
    """A loss with parameters, e.g. ``{"name": "huber", "delta": 1.0}``."""

    model_config = ConfigDict(extra="allow")
    name: LossName  # type: ignore[valid-type]


def _core_spec(get: Callable[[Any], T]) -> Callable[[Any], T]:
    """A validator that builds a spec with the core's ``get``; its errors become 422s
    (the core raises a typed error for any JSON value it cannot read as a spec)."""

    def validate(value: Any) -> T:
        try:
            return get(value)
        except CoreError as exc:
            raise PydanticCustomError("invalid_spec", "{reason}", {"reason": exc.message}) from None

    return validate


def _regularizer(value: Any) -> regularizers.Regularizer:
    """``regularizers.get``, after checking the types of a Keras dict's ``module`` and
    ``registered_name`` (ignored, but a string or null as Keras writes them)."""
    if isinstance(value, dict) and "class_name" in value:
        for key in ("module", "registered_name"):
            if value.get(key) is not None and not isinstance(value[key], str):
                raise SpecError(f"{key} must be a string or null, got {type(value[key]).__name__}", field=key)
    return regularizers.get(value)


Regularizer = Annotated[
    regularizers.Regularizer,
    ParsedBy(_core_spec(_regularizer), RegularizerIdentifier | TaggedRegularizer | KerasRegularizer),
]
Activation = Annotated[
    activations.Activation, ParsedBy(_core_spec(activations.get), ActivationName | ActivationObject)
]
Loss = Annotated[losses.Loss, ParsedBy(_core_spec(losses.get), LossName | LossObject)]


class GradientSelection(_Schema):
    """Named parameters and terms (either list omitted = all of them); unknown names are a
    422 listing the valid ones."""

    parameters: list[str] | None = None
    terms: list[str] | None = None


def _selection(value: Any) -> Selection | None:
    if value is None:
        raise PydanticCustomError("invalid_spec", "{reason}", {"reason": "null is not a selection; "
                                  'send true, false, "totals" or {"parameters": [...], "terms": [...]}'})
    return _core_spec(functools.partial(gradient_selection, field="a gradient selection"))(value)


ReturnGradients = Annotated[
    Selection | bool | None,
    ParsedBy(
        _selection,
        Annotated[
            StrictBool | Literal["totals"] | GradientSelection,
            Field(description='true, false, "totals" (only each parameter\'s total) or '
                  '{"parameters": [...], "terms": [...]}'),
        ],
    ),
]

# --------------------------------------------------------------------------- requests


def _hint(key: str, fields: list[str], aliases: dict[str, str]) -> str:
    """The did-you-mean hint, ignoring case; an old name points to its field."""
    lowered = {c.lower(): c for c in [*fields, *aliases]}
    close = did_you_mean(key.lower(), list(lowered))
    if not close:
        return ""
    name = lowered[close.split("'")[1]]
    return f" (did you mean {aliases.get(name, name)!r}?" + (f" Keras 1 called it {name!r})" if name in aliases else ")")


class RequestModel(BaseModel):
    """Unknown fields are refused (naming the closest known one); no coercion of booleans."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)
    #: Old names a field is also accepted under (old -> field), offered in hints too.
    FIELD_ALIASES: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            fields = list(cls.model_fields)
            for key in data:
                if key not in cls.model_fields:
                    hint = _hint(str(key), fields, cls.FIELD_ALIASES)
                    raise PydanticCustomError(
                        "unknown_field",
                        "{reason}",
                        {"field": key, "reason": f"unknown field{hint}; the fields are {', '.join(fields)}"},
                    )
        return data


SEED_TENSOR: JsonValue = [[[3, 3, 3, 3], [3, 3, 3, 3]], [[3, 3, 3, 3], [3, 3, 3, 3]]]


class PenaltyRequest(RequestModel):
    """One tensor and one regularizer: the penalty and its gradient."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"tensor": SEED_TENSOR, "regularizer": {"type": "l1", "l1": 0.1}},
                {"tensor": {"shape": [2, 2], "datatype": "FP64", "data": [1, -2, 3, -4]},
                 "regularizer": {"class_name": "L2", "config": {"l2": 0.01}}, "encoding": "b64"},
            ]
        }
    )

    tensor: Tensor
    regularizer: Regularizer
    return_gradient: ReturnGradients = True
    encoding: Encoding = Encoding.json


class WeightPenalty(RequestModel):
    """A named weight of a model and its regularizer."""

    tensor: Tensor
    regularizer: Regularizer


class PenaltiesRequest(RequestModel):
    """Many named weights (e.g. a whole model's): each penalty, their total, each gradient."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"weights": {
                    "dense/kernel": {"tensor": [[0.5, -1.0], [1.5, 2.0]], "regularizer": {"type": "l2", "l2": 0.1}},
                    "dense/bias": {"tensor": [0.25, -0.5], "regularizer": "l1"},
                }}
            ]
        }
    )

    weights: dict[str, WeightPenalty]
    return_gradients: ReturnGradients = True
    encoding: Encoding = Encoding.json


#: Keras 1's argument names (renamed in Keras 2.0), accepted as aliases.
KERAS1_NAMES = {"W_regularizer": "kernel_regularizer", "b_regularizer": "bias_regularizer"}


class _LayerFields(RequestModel):
    """A Dense layer's fields; Keras 1's ``W_regularizer``/``b_regularizer`` are accepted."""

    FIELD_ALIASES: ClassVar[dict[str, str]] = KERAS1_NAMES

    @model_validator(mode="before")
    @classmethod
    def _keras1_names(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(k in data for k in KERAS1_NAMES):
            data = dict(data)
            for old, new in KERAS1_NAMES.items():
                if old in data:
                    if new in data:
                        raise PydanticCustomError(
                            "unknown_field", "{reason}",
                            {"field": old, "reason": f"{old} is Keras 1's name for {new}; give only one of them"},
                        )
                    data[new] = data.pop(old)
        return data

    kernel: Tensor
    bias: Tensor | None = None
    activation: Activation | None = None
    kernel_regularizer: Regularizer | None = None
    bias_regularizer: Regularizer | None = None
    activity_regularizer: Regularizer | None = None


def _reserve_outputs(inputs: np.ndarray, kernels: list[np.ndarray]) -> None:
    """Count the layer outputs a request would create against the budget, before computing.

    Shapes that do not fit are left for the core to report (as a ``shape_mismatch``).
    """
    if inputs.ndim == 0:
        return
    batch = math.prod(inputs.shape[:-1])
    for i, kernel in enumerate(kernels):
        if kernel.ndim != 2:
            return
        current_budget().reserve(batch * kernel.shape[1], f"the output of layer {i} ({batch}×{kernel.shape[1]})")


class DenseRequest(_LayerFields):
    """``outputs = activation(inputs · kernel + bias)`` with every penalty term and its gradients."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"inputs": SEED_TENSOR,
                 "kernel": [[0.1, -0.2, 0.3], [-0.4, 0.5, -0.6], [0.7, -0.8, 0.9], [-1.0, 1.1, -1.2]],
                 "bias": [0.1, 0.2, 0.3],
                 "activation": "relu",
                 "kernel_regularizer": {"type": "l1", "l1": 0.1},
                 "bias_regularizer": {"type": "l2", "l2": 0.1},
                 "activity_regularizer": {"type": "l1", "l1": 0.1}}
            ]
        }
    )

    inputs: Tensor
    activity_normalization: ActivityNormalization = ActivityNormalization.batch
    return_gradients: ReturnGradients = True
    encoding: Encoding = Encoding.json

    @model_validator(mode="after")
    def _outputs_fit(self) -> DenseRequest:
        _reserve_outputs(self.inputs, [self.kernel])
        return self


class DenseLayer(_LayerFields):
    """One layer of a network; unnamed layers are ``dense``, ``dense_1``, … (Keras's names)."""

    name: str | None = None

    def spec(self) -> LayerSpec:
        return LayerSpec(
            kernel=self.kernel, bias=self.bias, activation=self.activation,
            kernel_regularizer=self.kernel_regularizer, bias_regularizer=self.bias_regularizer,
            activity_regularizer=self.activity_regularizer, name=self.name,
        )


#: The ``sample_weight`` field of every route that takes a loss.
SAMPLE_WEIGHT: Any = Field(
    default=None,
    description="Weights of the per-sample data losses (Keras fit's sample_weight), e.g. "
    "one per sample; broadcast against them after Keras's squeeze/expand of a trailing 1.",
)


class NetworkRequest(RequestModel):
    """A stack of Dense layers and a data loss: every term and its gradient per parameter."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"inputs": [[1.0, 2.0], [3.0, 4.0]],
                 "targets": [[1.0], [0.0]],
                 "layers": [
                     {"kernel": [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], "bias": [0.0, 0.0, 0.0],
                      "activation": "relu", "kernel_regularizer": {"type": "l2", "l2": 0.01},
                      "activity_regularizer": {"type": "l1", "l1": 0.01}},
                     {"kernel": [[0.5], [-0.5], [0.25]], "activation": "sigmoid",
                      "kernel_regularizer": "l1"},
                 ],
                 "loss": "binary_crossentropy"}
            ]
        }
    )

    inputs: Tensor
    targets: Tensor
    layers: list[DenseLayer] = Field(min_length=1)
    loss: Loss = Field(
        default="mean_squared_error",
        validate_default=True,
        description="A Keras loss name, or an object with its options: every Keras option "
        "(from_logits, label_smoothing, axis, delta, alpha, gamma, ignore_class, ...) and "
        "reduction (sum_over_batch_size, sum, mean, mean_with_sample_weight, none). Every "
        "route that takes a loss takes this same field.",
    )
    sample_weight: Tensor | None = SAMPLE_WEIGHT
    activity_normalization: ActivityNormalization = ActivityNormalization.batch
    return_gradients: ReturnGradients = True
    encoding: Encoding = Encoding.json

    @model_validator(mode="before")
    @classmethod
    def _layer_count(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("layers"), list):
            limit = current_budget().max_layers
            if len(data["layers"]) > limit:
                raise TooManyLayers(
                    f"the network has {len(data['layers'])} layers; the limit is {limit}"
                )
        return data

    @model_validator(mode="after")
    def _outputs_fit(self) -> NetworkRequest:
        _reserve_outputs(self.inputs, [layer.kernel for layer in self.layers])
        return self
