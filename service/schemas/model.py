"""``POST /v1/model``: a Keras model as Keras describes it, its weights, inputs and options."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, RootModel, StrictBool, model_validator

from service.core import keras_config
from service.core.model import Model, ModelResult
from service.errors import TooManyLayers
from service.schemas.base import ActivityNormalization, Encoding, ParsedBy, current_budget
from service.schemas.requests import (
    SAMPLE_WEIGHT,
    Loss,
    RequestModel,
    ReturnGradients,
    Tensor,
    _core_spec,
)
from service.schemas.responses import (
    DATA_LOSS_VALUES,
    Number,
    ParameterGradients,
    TensorResult,
    _Response,
    _WithDataLossValues,
    data_loss_values_out,
    gradients_out,
    numbers_out,
    tensor_out,
)

KerasModel = Annotated[
    Model,
    ParsedBy(_core_spec(keras_config.from_config), dict[str, Any]),
    Field(description="json.loads(model.to_json()) or model.get_config(): Sequential or Functional, "
                      "Keras 3 or tf.keras 2 layout."),
]

_EXAMPLE: dict[str, Any] = {
    "model": {"class_name": "Sequential", "config": {"name": "mlp", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 2], "name": "x"}},
        {"class_name": "Dense", "config": {"name": "dense", "units": 2, "activation": "relu",
                                           "kernel_regularizer": {"class_name": "L2", "config": {"l2": 0.01}}}},
        {"class_name": "Dense", "config": {"name": "dense_1", "units": 1, "activation": "sigmoid",
                                           "activity_regularizer": {"class_name": "L1", "config": {"l1": 0.01}}}}]}},
    "weights": {"dense/kernel": [[0.5, -0.25], [0.75, 1.0]], "dense/bias": [0.0, 0.1],
                "dense_1/kernel": [[1.0], [-1.0]], "dense_1/bias": [0.0]},
    "inputs": [[1.0, 2.0], [3.0, -1.0]],
    "targets": [[1.0], [0.0]],
    "loss": "binary_crossentropy",
}


def _count_layers(model: Any) -> int:
    if not isinstance(model, dict):
        return 0
    config = model.get("config", model) if "class_name" in model else model
    layers = config.get("layers") if isinstance(config, dict) else None
    return len(layers) if isinstance(layers, list) else 0


class ModelRequest(RequestModel):
    """A Keras model, its weights by ``"<layer>/<weight>"``, inputs (one tensor, or one per
    input layer by name), and optionally targets and a loss."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})

    model: KerasModel
    weights: dict[str, Tensor] = Field(default_factory=dict)
    inputs: Tensor | dict[str, Tensor]
    targets: Tensor | None = None
    loss: Loss | None = None
    sample_weight: Tensor | None = SAMPLE_WEIGHT
    training: StrictBool = Field(False, description="BatchNormalization uses batch statistics (and "
                                 "returns updated moving statistics); Dropout drops units with the "
                                 "service's own seeded mask, not Keras's random stream.")
    activity_normalization: ActivityNormalization = ActivityNormalization.batch
    return_gradients: ReturnGradients = True
    return_layer_outputs: StrictBool = False
    encoding: Encoding = Encoding.json

    @model_validator(mode="before")
    @classmethod
    def _layer_count(cls, data: Any) -> Any:
        if isinstance(data, dict):
            n, limit = _count_layers(data.get("model")), current_budget().max_layers
            if n > limit:
                raise TooManyLayers(f"the model has {n} layers; the limit is {limit}")
        return data


class LayerSummary(_Response):
    name: str
    class_name: str
    output_shape: list[int]
    losses: dict[str, Number] = Field(description="This layer's terms by Keras argument name.")


class Diagnostic(_Response):
    code: str
    layer: str
    message: str


class NamedTensors(RootModel[dict[str, TensorResult]]):
    """Tensors by name: layer outputs by layer name, updated statistics by weight path."""


class ModelResponse(_WithDataLossValues):
    outputs: TensorResult
    losses: dict[str, Number] = Field(description="data_loss, '<layer>/<argument>' for every term, and total.")
    layers: list[LayerSummary]
    gradients: ParameterGradients | None = Field(
        description="gradients['<layer>/<weight>'][term] for every trainable weight; total is what fit applies.")
    layer_outputs: NamedTensors | None = None
    updates: NamedTensors = Field(
        default_factory=lambda: NamedTensors({}),
        description="Training mode: BatchNormalization's updated moving statistics, by weight path.")
    diagnostics: list[Diagnostic]
    data_loss_values: TensorResult | None = DATA_LOSS_VALUES

    @classmethod
    def of(cls, r: ModelResult, encoding: Encoding) -> ModelResponse:
        return cls(
            outputs=tensor_out(r.outputs, encoding, "outputs"),
            losses=numbers_out(r.losses, "losses"),
            layers=[LayerSummary(name=s["name"], class_name=s["class_name"], output_shape=s["output_shape"],
                                 losses=numbers_out(s["losses"], f"layers.{s['name']}.losses")) for s in r.layers],
            gradients=gradients_out(r.gradients, encoding) if r.gradients is not None else None,
            layer_outputs={k: tensor_out(v, encoding, f"layer_outputs.{k}") for k, v in r.layer_outputs.items()}
            if r.layer_outputs is not None else None,
            updates={k: tensor_out(v, encoding, f"updates.{k}") for k, v in r.updates.items()},
            diagnostics=[Diagnostic(**d) for d in r.diagnostics],
            data_loss_values=data_loss_values_out(r.data_loss_values, encoding),
        )
