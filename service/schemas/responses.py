"""Response models: result tensors (NumPy arrays that ``orjson`` writes), labelled losses,
gradients per parameter and term, discovery lists and the error envelope."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    WithJsonSchema,
)

from service import wire
from service.core.dense import DenseResult
from service.core.network import NetworkResult
from service.schemas.base import Datatype, Encoding
from service.schemas.requests import TaggedRegularizer

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


#: The ``data_loss_values`` field of every response with a data loss (declared last).
DATA_LOSS_VALUES: Any = Field(
    default=None,
    description="For a loss with reduction 'none': the weighted per-sample data losses "
    "(data_loss is then their sum). Null otherwise.",
)


class _WithDataLossValues(_Response):
    """A response whose ``data_loss_values`` is left out of the body when there are none (so
    a response without ``reduction: "none"`` is exactly what it was before the field)."""

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        body = super().model_dump(**kwargs)
        if body.get("data_loss_values", 0) is None:
            del body["data_loss_values"]
        return body


def data_loss_values_out(values: np.ndarray | None, encoding: Encoding) -> TensorResult | None:
    return tensor_out(values, encoding, "data_loss_values") if values is not None else None


class NetworkResponse(_WithDataLossValues):
    outputs: TensorResult
    losses: dict[str, Number] = Field(
        description="data_loss, '<layer>/<term>' for every regularizer given, and total."
    )
    gradients: ParameterGradients | None = Field(
        description="gradients['<layer>/kernel' | '<layer>/bias'][term]; total is what fit applies."
    )
    data_loss_values: TensorResult | None = DATA_LOSS_VALUES

    @classmethod
    def of(cls, result: NetworkResult, encoding: Encoding) -> NetworkResponse:
        return cls(
            outputs=tensor_out(result.outputs, encoding, "outputs"),
            losses=numbers_out(result.losses, "losses"),
            gradients=gradients_out(result.gradients, encoding)
            if result.gradients is not None
            else None,
            data_loss_values=data_loss_values_out(result.data_loss_values, encoding),
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
