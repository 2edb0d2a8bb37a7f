"""Request and response models of ``/v1/optimizer/step`` and ``/v1/train`` (API.md)."""

from __future__ import annotations

import math
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, RootModel, StrictBool, StrictInt, model_validator

from service.core import optimizers
from service.core.optimizers import OptimizerState
from service.core.training import TrainResult
from service.errors import TooManyLayers
from service.schemas.base import ActivityNormalization, Encoding, ParsedBy, current_budget
from service.schemas.model import _count_layers
from service.schemas.requests import DenseLayer, Loss, RequestModel, Tensor, _core_spec
from service.schemas.responses import Number, TensorResult, tensor_out

# --------------------------------------------------------------------------- optimizer specs


class KerasOptimizer(BaseModel):
    """What ``keras.optimizers.serialize`` writes; ``module``, ``registered_name`` and the
    config's ``name`` are ignored."""

    model_config = ConfigDict(extra="forbid")
    class_name: str = Field(examples=["AdamW"])
    config: dict[str, Any] = Field(default_factory=dict, examples=[{"learning_rate": 0.001, "weight_decay": 0.004}])
    module: str | None = None
    registered_name: str | None = None


class TaggedOptimizer(BaseModel):
    """``{"name": "adamw", "learning_rate": 0.001, "weight_decay": 0.004,
    "exclude_from_weight_decay": ["bias"], "clipnorm": 1.0}``: Keras's constructor argument
    names; ``learning_rate`` is a number or a schedule (serialized or ``{"name": ...}``)."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(examples=["sgd", "rmsprop", "adagrad", "adam", "adamw", "adamax", "nadam", "lion"])


OptimizerSpec = Annotated[
    optimizers.Optimizer,
    ParsedBy(_core_spec(optimizers.get), str | KerasOptimizer | TaggedOptimizer),
]


class SlotTensors(RootModel[dict[str, Tensor]]):
    """One parameter's slot variables by Keras's names (``momentum``, ``velocity``, ...)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)


class OptimizerStateIn(BaseModel):
    """A state as a previous response returned it (extra keys are ignored)."""

    model_config = ConfigDict(extra="ignore", arbitrary_types_allowed=True, frozen=True)
    iterations: StrictInt = Field(ge=0, lt=2**63, description="Steps taken (Keras keeps an int64).")
    slots: dict[str, SlotTensors] = Field(default_factory=dict)

    def core(self) -> OptimizerState:
        return OptimizerState(self.iterations, {p: s.root for p, s in self.slots.items()})


class SlotResults(RootModel[dict[str, TensorResult]]):
    """One parameter's slot variables by Keras's names."""


class OptimizerStateOut(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    iterations: int
    slots: dict[str, SlotResults] = Field(
        description="slots[parameter][slot], slot names as Keras names its variables (momentum, velocity, ...)"
    )

    @classmethod
    def of(cls, state: OptimizerState, encoding: Encoding) -> OptimizerStateOut:
        return cls(iterations=state.iterations, slots={
            p: SlotResults({s: tensor_out(v, encoding, f"state.slots.{p}.{s}") for s, v in slots.items()})
            for p, slots in state.slots.items()})


class KerasModelConfig(RootModel[dict[str, Any]]):
    """``json.loads(model.to_json())`` or ``model.get_config()`` of a Sequential or Functional
    model, Keras 3 or tf.keras 2 layout: any model ``/v1/model`` takes (a chain of Dense
    layers runs on the Dense-stack path, every other model through the model evaluator in
    training mode)."""


class ModelWeights(RootModel[dict[str, Tensor]]):
    """``"<layer>/<weight>"`` → tensor, as Keras 3 names them (``dense/kernel``, ``dense/bias``)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)


class TermNorms(RootModel[dict[str, list[Number]]]):
    """term → ‖∂term/∂parameter‖₂ per recorded step."""


def _optimizer_config(opt: optimizers.Optimizer) -> dict[str, Any]:
    return opt.get_config()


# --------------------------------------------------------------------------- /v1/optimizer/step


class OptimizerStepRequest(RequestModel):
    """One step of a Keras optimizer: clip, weight decay, update (SPEC §6.1)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"optimizer": {"name": "sgd", "learning_rate": 0.1, "weight_decay": 0.01},
         "parameters": {"dense/kernel": [1.0, -2.0, 3.0]}, "gradients": {"dense/kernel": [0.5, 0.5, -1.0]}},
        {"optimizer": {"class_name": "AdamW", "config": {"learning_rate": 0.01}},
         "parameters": {"dense/kernel": [[0.5, -1.0]], "dense/bias": [0.1]},
         "gradients": {"dense/kernel": [[0.2, 0.1]], "dense/bias": [-0.3]}, "state": None},
    ]})

    optimizer: OptimizerSpec
    parameters: dict[str, Tensor]
    gradients: dict[str, Tensor]
    state: OptimizerStateIn | None = None
    encoding: Encoding = Encoding.json


class OptimizerStepResponse(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    parameters: dict[str, TensorResult]
    state: OptimizerStateOut
    learning_rate: Number = Field(description="The rate this step used (float32, the schedule at "
                                              "the iteration count before the step).")
    optimizer: dict[str, Any] = Field(description="The optimizer in its tagged form, defaults filled in.")


class OptimizerInfo(BaseModel):
    name: str
    class_name: str
    parameters: dict[str, bool | int | float | str | None]
    slots: list[str]
    formula: str


class ScheduleInfo(BaseModel):
    name: str
    class_name: str
    parameters: dict[str, bool | int | float | str | None]
    formula: str


class OptimizerList(BaseModel):
    optimizers: list[OptimizerInfo]
    schedules: list[ScheduleInfo]


# --------------------------------------------------------------------------- /v1/train


class Record(RequestModel):
    every: StrictInt = Field(1, ge=1, description="Record every n-th step (and the last).")
    sparsity_tolerances: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        default_factory=lambda: [0.0, 0.001], max_length=16,
        description="Sparsity = the fraction of weights with |w| ≤ tolerance.")


def _dense_only(model: dict[str, Any]) -> bool:
    """Whether a model config holds only Dense layers (the others are priced by the route,
    from :func:`service.core.model.cost`)."""
    layers = (model.get("config") or {}).get("layers") if isinstance(model.get("config"), dict) else None
    return isinstance(layers, list) and all(
        isinstance(x, dict) and x.get("class_name") in ("Dense", "InputLayer") for x in layers)


class TrainRequest(RequestModel):
    """A training run over a Dense stack (``layers``, as ``/v1/network``) or a Keras model
    (``model`` + ``weights``, as ``/v1/model``; in training mode: BatchNormalization uses
    batch statistics and its moving statistics are updated each step, frozen layers keep
    their weights, Dropout uses the service's own seeded masks, not Keras's stream)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"layers": [{"kernel": [[0.5], [-0.5]], "bias": [0.0], "kernel_regularizer": {"type": "l2", "l2": 0.01}}],
         "inputs": [[1.0, 2.0], [2.0, 1.0], [0.0, 1.0], [1.0, 0.0]], "targets": [[1.0], [2.0], [0.5], [0.5]],
         "loss": "mse", "optimizer": {"name": "sgd", "learning_rate": 0.1}, "epochs": 5, "batch_size": 2},
    ]})

    model: KerasModelConfig | None = Field(None, description="A Keras model, any that /v1/model takes "
                                                             "(with `weights`); or send `layers`.")
    weights: ModelWeights | None = Field(None, description="The model's weights, '<layer>/<weight>', "
                                         "non-trainable ones (moving statistics, frozen layers) included.")
    layers: list[DenseLayer] | None = None
    inputs: Tensor | dict[str, Tensor] = Field(description="One tensor, or for a `model` one per input "
                                               "layer by name; the first axis is the sample axis.")
    targets: Tensor
    loss: Loss = Field(default="mean_squared_error", validate_default=True)
    optimizer: OptimizerSpec = Field(default="rmsprop", validate_default=True)
    epochs: StrictInt = Field(1, ge=1)
    batch_size: StrictInt = Field(32, ge=1)
    shuffle: StrictBool = False
    seed: StrictInt = Field(0, ge=0, lt=2**63)
    activity_normalization: ActivityNormalization = ActivityNormalization.batch
    l1_proximal: StrictBool = Field(False, description="Non-Keras: soft-thresholding step after each "
                                                       "update instead of L1's subgradient (exact zeros).")
    record: Record = Field(default_factory=Record)
    state: OptimizerStateIn | None = Field(None, description="Continue from a previous run's optimizer_state.")
    encoding: Encoding = Encoding.json

    @model_validator(mode="before")
    @classmethod
    def _layer_count(cls, data: Any) -> Any:
        if isinstance(data, dict):
            limit = current_budget().max_layers
            if isinstance(data.get("layers"), list) and len(data["layers"]) > limit:
                raise TooManyLayers(f"the network has {len(data['layers'])} layers; the limit is {limit}")
            n = _count_layers(data.get("model"))
            if n > limit:
                raise TooManyLayers(f"the model has {n} layers; the limit is {limit}")
        return data

    @model_validator(mode="after")
    def _outputs_fit(self) -> TrainRequest:
        if isinstance(self.inputs, np.ndarray) and self.inputs.ndim >= 1:
            rows = min(self.batch_size, self.inputs.shape[0]) * math.prod(self.inputs.shape[1:-1])
            kernels = [layer.kernel for layer in self.layers or []]
            if self.weights is not None and self.model is not None and _dense_only(self.model.root):
                kernels += [w for k, w in self.weights.root.items() if k.endswith("/kernel")]
            for i, kernel in enumerate(kernels):
                if kernel.ndim == 2:
                    current_budget().reserve(rows * kernel.shape[1],
                                             f"the output of layer {i} on one batch ({rows}×{kernel.shape[1]})")
        return self


class WeightStats(BaseModel):
    l1: list[Number] = Field(description="Σ|w|")
    l2: list[Number] = Field(description="√Σw² (the Euclidean norm)")
    max_abs: list[Number]
    sparsity: dict[str, list[Number]] = Field(description="tolerance -> fraction of |w| ≤ tolerance")


class History(BaseModel):
    step: list[int]
    epoch: list[int]
    learning_rate: list[Number]
    losses: dict[str, list[Number]] = Field(description="data_loss, every '<layer>/<argument>' term, total; "
                                                        "each measured on its batch before the update")
    gradient_norms: dict[str, TermNorms] = Field(description="[parameter][term] → ‖gradient‖₂")
    weights: dict[str, WeightStats]


class TrainResponse(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    steps: int
    epochs: int
    history: History
    epoch_losses: dict[str, list[Number]] = Field(description="Per epoch, the batch-size-weighted mean of the "
                                                              "step losses: `total` is Keras's History `loss`.")
    weights: dict[str, TensorResult]
    optimizer_state: OptimizerStateOut
    optimizer: dict[str, Any]
    l1_proximal: bool

    @classmethod
    def of(cls, result: TrainResult, request: TrainRequest) -> TrainResponse:
        enc = request.encoding
        return cls(steps=result.steps, epochs=result.epochs, history=History(**result.history),
                   epoch_losses=result.epoch_losses,
                   weights={k: tensor_out(np.asarray(v), enc, f"weights.{k}") for k, v in result.weights.items()},
                   optimizer_state=OptimizerStateOut.of(result.optimizer_state, enc),
                   optimizer=_optimizer_config(request.optimizer), l1_proximal=request.l1_proximal)


class TrainProgress(BaseModel):
    """One ``progress`` event of a streamed run."""

    step: int
    steps: int
    epoch: int
    losses: dict[str, Number]
