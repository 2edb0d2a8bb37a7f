"""Request and response models of API.md (Pydantic v2).

Three kinds of field carry the contract:

* ``Tensor`` — validated by :func:`service.wire.decode` into an ``np.ndarray`` (one
  C-level type scan and one ``np.array`` call for nested JSON, ``frombuffer`` for b64);
  its JSON schema is the union of the three wire forms.
* ``Regularizer``, ``Activation``, ``Loss`` — validated by the core's own ``get()``
  (the single source of the rules: names, parameters, ranges) into core objects; their
  JSON schemas document every accepted form, with Keras's defaults.
* Response tensors hold NumPy arrays (``service.wire.encode``); ``orjson`` writes them.

Limits: tensors decode under the :class:`~service.wire.Budget` of the current request,
set with :func:`decoding` by the route class (``service.api.routing``).  Outside a
request (tests, scripts) the default settings' limits apply.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    JsonValue,
    RootModel,
    StrictBool,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from service import wire
from service.config import Settings
from service.core import activations, losses, regularizers
from service.core.dense import DenseResult
from service.core.errors import CoreError
from service.core.network import LayerSpec, NetworkResult
from service.errors import TooManyLayers, did_you_mean

T = TypeVar("T")

# --------------------------------------------------------------------------- request limits

_BUDGET: ContextVar[wire.Budget | None] = ContextVar("penalty_service_budget", default=None)


def budget_for(settings: Settings) -> wire.Budget:
    return wire.Budget(
        max_tensor_elements=settings.max_tensor_elements,
        max_request_elements=settings.max_request_elements,
        max_depth=settings.max_nesting_depth,
        max_layers=settings.max_layers,
    )


@contextmanager
def decoding(budget: wire.Budget) -> Iterator[None]:
    """Validate request models under ``budget`` (one per request)."""
    token = _BUDGET.set(budget)
    try:
        yield
    finally:
        _BUDGET.reset(token)


def _budget() -> wire.Budget:
    """The current request's budget; outside a request, a fresh one with default limits."""
    return _BUDGET.get() or budget_for(Settings.model_construct())


# --------------------------------------------------------------------------- enums


class Datatype(enum.StrEnum):
    """Open Inference Protocol names; the dtype a computation runs in."""

    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"


class Encoding(enum.StrEnum):
    """How response tensors are written: ``json`` numbers or ``b64`` little-endian bytes."""

    json = "json"
    b64 = "b64"


class ActivityNormalization(enum.StrEnum):
    """``batch`` divides activity penalties by ``outputs.shape[0]`` (Keras ≥ 3.14); ``none`` does not."""

    batch = "batch"
    none = "none"


def _names_enum(name: str, names: Iterable[str], doc: str) -> type[enum.StrEnum]:
    members = enum.StrEnum(name, [(n, n) for n in names])  # type: ignore[misc]
    members.__doc__ = doc
    return members


def _case_distinct(names: Iterable[str]) -> list[str]:
    """``names`` without those that differ from a lower-case one only in case: generated
    clients turn enum values into upper-case constants, where "mse" and "MSE" would clash.
    The names left out are still accepted (the core validates every spec)."""
    names = list(names)
    return [n for n in names if n == n.lower() or n.lower() not in names]


RegularizerIdentifier = _names_enum(
    "RegularizerIdentifier",
    _case_distinct(regularizers.IDENTIFIERS),
    "A Keras regularizer identifier (Keras 3's class names L1, L2, L1L2 and "
    "OrthogonalRegularizer are accepted as well).",
)
ActivationName = _names_enum(
    "ActivationName", list(activations.ALIASES), "A Keras activation name (or alias)."
)
LossName = _names_enum(
    "LossName",
    _case_distinct(losses.ALIASES),
    "A Keras loss name (or alias; the upper-case MSE, MAE and BCE are accepted as well).",
)

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


@dataclass(frozen=True)
class ParsedBy:
    """``Annotated[T, ParsedBy(parse, documented_as)]``: ``parse`` turns the JSON value into
    a ``T`` (raising ``PydanticCustomError``); the JSON schema is ``documented_as``'s, the
    forms a client may send."""

    parse: Callable[[Any], Any]
    documented_as: Any

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(
            self.parse, json_schema_input_schema=handler.generate_schema(self.documented_as)
        )


def _decode_tensor(value: Any) -> np.ndarray:
    try:
        return wire.decode(value, _budget())
    except wire.TensorError as exc:
        raise PydanticCustomError("invalid_tensor", "{reason}", {"reason": str(exc)}) from None


Tensor = Annotated[np.ndarray, ParsedBy(_decode_tensor, NestedArray | TensorWithData | TensorWithB64)]

# --------------------------------------------------------------------------- specs (input)

Factor = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class L1Regularizer(_Schema):
    """``l1 · Σ|x|``; gradient ``l1 · sign(x)``."""

    type: Literal["l1"]
    l1: Factor = regularizers.L1.defaults["l1"]


class L2Regularizer(_Schema):
    """``l2 · Σx²``; gradient ``2 · l2 · x`` (Keras's convention)."""

    type: Literal["l2"]
    l2: Factor = regularizers.L2.defaults["l2"]


class L1L2Regularizer(_Schema):
    """``l1 · Σ|x| + l2 · Σx²``."""

    type: Literal["l1l2"]
    l1: Factor = regularizers.L1L2.defaults["l1"]
    l2: Factor = regularizers.L1L2.defaults["l2"]


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
    config: dict[str, float | str] = Field(default_factory=dict, examples=[{"l1": 0.01, "l2": 0.0}])
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


def _core_spec(get: Callable[[Any], T], kind: str) -> Callable[[Any], T]:
    """A validator that builds a spec with the core's ``get``; its errors become 422s.

    A ``TypeError`` means a JSON value of a type ``get`` does not expect (a list where a
    name belongs): the client's error too, not a server fault.
    """

    def validate(value: Any) -> T:
        try:
            return get(value)
        except CoreError as exc:
            reason = exc.message
        except TypeError as exc:
            reason = f"not a valid {kind} spec ({exc}); GET /v1/{kind}s lists the accepted forms"
        raise PydanticCustomError("invalid_spec", "{reason}", {"reason": reason})

    return validate


Regularizer = Annotated[
    regularizers.Regularizer,
    ParsedBy(_core_spec(regularizers.get, "regularizer"), RegularizerIdentifier | TaggedRegularizer | KerasRegularizer),
]
Activation = Annotated[
    activations.Activation, ParsedBy(_core_spec(activations.get, "activation"), ActivationName | ActivationObject)
]
Loss = Annotated[losses.Loss, ParsedBy(_core_spec(losses.get, "loss"), LossName | LossObject)]

# --------------------------------------------------------------------------- requests


class RequestModel(BaseModel):
    """Unknown fields are refused (naming the closest known one); no coercion of booleans."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            fields = list(cls.model_fields)
            for key in data:
                if key not in cls.model_fields:
                    hint = did_you_mean(str(key), fields)
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
    return_gradient: StrictBool = True
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
    return_gradients: StrictBool = True
    encoding: Encoding = Encoding.json


class _LayerFields(RequestModel):
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
        _budget().reserve(batch * kernel.shape[1], f"the output of layer {i} ({batch}×{kernel.shape[1]})")


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
    return_gradients: StrictBool = True
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
    loss: Loss = Field(default="mean_squared_error", validate_default=True)
    activity_normalization: ActivityNormalization = ActivityNormalization.batch
    return_gradients: StrictBool = True
    encoding: Encoding = Encoding.json

    @model_validator(mode="before")
    @classmethod
    def _layer_count(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("layers"), list):
            limit = _budget().max_layers
            if len(data["layers"]) > limit:
                raise TooManyLayers(
                    f"the network has {len(data['layers'])} layers; the limit is {limit}"
                )
        return data

    @model_validator(mode="after")
    def _outputs_fit(self) -> NetworkRequest:
        _reserve_outputs(self.inputs, [layer.kernel for layer in self.layers])
        return self


# --------------------------------------------------------------------------- responses

FlatNumbers = Annotated[np.ndarray, WithJsonSchema({"type": "array", "items": {"type": "number"}})]
Number = Annotated[float, Field(allow_inf_nan=False)]


class _Response(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)


class TensorOut(_Response):
    """A result tensor: ``data`` flat in row-major order."""

    shape: list[int]
    datatype: Datatype
    data: FlatNumbers


class TensorOutB64(_Response):
    """A result tensor as base64 of its little-endian C-order bytes (``"encoding": "b64"``)."""

    shape: list[int]
    datatype: Datatype
    b64: str


TensorResult = TensorOut | TensorOutB64


class TermGradients(RootModel[dict[str, TensorResult]]):
    """The gradient of each loss term that reaches one tensor, and their ``total``."""


class ParameterGradients(RootModel[dict[str, TermGradients]]):
    """``gradients[parameter][term]``: for each parameter, the gradient of each term that reaches it."""


class WeightGradients(RootModel[dict[str, TensorResult]]):
    """The gradient of each named weight's penalty with respect to that weight."""


def tensor_out(array: np.ndarray, encoding: Encoding, what: str) -> TensorResult:
    fields = wire.encode(array, encoding, what=what)
    return TensorOutB64(**fields) if "b64" in fields else TensorOut(**fields)


def numbers_out(values: Mapping[str, Any], what: str) -> dict[str, float]:
    return {k: wire.scalar(v, what=f"{what}.{k}") for k, v in values.items()}


def gradients_out(
    gradients: Mapping[str, Mapping[str, np.ndarray]], encoding: Encoding, what: str = "gradients"
) -> dict[str, dict[str, TensorResult]]:
    return {
        param: {term: tensor_out(g, encoding, f"{what}.{param}.{term}") for term, g in terms.items()}
        for param, terms in gradients.items()
    }


class PenaltyResponse(_Response):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"penalty": 4.8,
                 "gradient": {"shape": [2, 2, 4], "datatype": "FP32", "data": [0.1] * 16},
                 "regularizer": {"type": "l1", "l1": 0.1}}
            ]
        }
    )

    penalty: Number
    gradient: TensorResult | None
    regularizer: TaggedRegularizer = Field(description="The regularizer, in its canonical tagged form.")


class PenaltiesResponse(_Response):
    penalties: dict[str, Number]
    total: Number = Field(description="The sum of the penalties, in the widest datatype given.")
    gradients: WeightGradients | None


class DenseResponse(_Response):
    outputs: TensorResult
    losses: dict[str, Number] = Field(
        description="One entry per regularizer given (kernel_regularizer, bias_regularizer, "
        "activity_regularizer) and total."
    )
    gradients: ParameterGradients | None = Field(
        description="gradients[parameter][term] for parameters kernel and bias (when given)."
    )
    input_gradients: TermGradients | None = Field(
        description="Gradient of each term that reaches the inputs (the activity term) and total."
    )

    @classmethod
    def of(cls, result: DenseResult, encoding: Encoding) -> DenseResponse:
        """The core's result, with the gradient wrt ``inputs`` in its own field."""
        gradients = dict(result.gradients) if result.gradients is not None else None
        inputs = gradients.pop("inputs", None) if gradients is not None else None
        return cls(
            outputs=tensor_out(result.outputs, encoding, "outputs"),
            losses=numbers_out(result.losses, "losses"),
            gradients=gradients_out(gradients, encoding) if gradients is not None else None,
            input_gradients=gradients_out({"inputs": inputs}, encoding)["inputs"]
            if inputs is not None
            else None,
        )


class NetworkResponse(_Response):
    outputs: TensorResult
    losses: dict[str, Number] = Field(
        description="data_loss, '<layer>/<term>' for every regularizer given, and total."
    )
    gradients: ParameterGradients | None = Field(
        description="gradients['<layer>/kernel' | '<layer>/bias'][term]; total is what fit applies."
    )

    @classmethod
    def of(cls, result: NetworkResult, encoding: Encoding) -> NetworkResponse:
        return cls(
            outputs=tensor_out(result.outputs, encoding, "outputs"),
            losses=numbers_out(result.losses, "losses"),
            gradients=gradients_out(result.gradients, encoding)
            if result.gradients is not None
            else None,
        )


# --------------------------------------------------------------------------- discovery

Parameter = bool | int | float | str | None


class RegularizerInfo(_Response):
    type: str
    keras_class: str
    identifiers: list[str]
    parameters: dict[str, Parameter]
    formula: str


class FunctionInfo(_Response):
    name: str
    aliases: list[str]
    parameters: dict[str, Parameter]
    formula: str


class RegularizerList(_Response):
    regularizers: list[RegularizerInfo]


class ActivationList(_Response):
    activations: list[FunctionInfo]


class LossList(_Response):
    losses: list[FunctionInfo]


class Status(_Response):
    status: Literal["ok"] = "ok"


class ErrorDetail(_Response):
    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(_Response):
    code: str
    message: str
    details: list[ErrorDetail]


class ErrorResponse(_Response):
    """The one error envelope."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"error": {"code": "shape_mismatch",
                           "message": "kernel has 5 rows but inputs have 4 features (last axis)",
                           "details": [{"loc": ["body", "kernel"], "type": "shape_mismatch",
                                        "msg": "kernel has 5 rows but inputs have 4 features (last axis)"}]}}
            ]
        }
    )

    error: ErrorBody
