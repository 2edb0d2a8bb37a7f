"""``POST /v1/optimizer/step``: one step of a Keras optimizer, state in, state out."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.responses import POST_ERRORS
from service.api.routing import WireRoute
from service.core import optimizers, schedules
from service.schemas.responses import tensor_out
from service.schemas.training import (
    OptimizerList,
    OptimizerStateOut,
    OptimizerStepRequest,
    OptimizerStepResponse,
)

router = APIRouter(prefix="/v1", route_class=WireRoute)


@router.post("/optimizer/step", operation_id="optimizer_step", summary="One step of a Keras optimizer",
             responses=POST_ERRORS, tags=["training"])
def optimizer_step(request: OptimizerStepRequest) -> OptimizerStepResponse:
    """Clip the gradients, apply decoupled weight decay ``w ← w − w·wd·lr``, then the
    optimizer's update, as Keras 3.15's ``apply_gradients`` does; ``state`` (null for a
    fresh optimizer) comes back with ``iterations + 1`` and Keras's slot names."""
    opt = request.optimizer
    state = request.state.core() if request.state is not None else None
    lr = opt.lr_at(state.iterations if state is not None else 0)
    params, new_state = optimizers.step(opt, request.parameters, request.gradients, state)
    enc = request.encoding
    return OptimizerStepResponse(
        parameters={k: tensor_out(v, enc, f"parameters.{k}") for k, v in params.items()},
        state=OptimizerStateOut.of(new_state, enc), learning_rate=float(lr), optimizer=opt.get_config(),
    )


@router.get("/optimizers", operation_id="list_optimizers", summary="Supported optimizers and schedules",
            tags=["discovery"])
def list_optimizers() -> OptimizerList:
    """Each optimizer's Keras name and class, arguments with Keras's defaults, slot names and
    update rule; each learning-rate schedule's name, class, parameters and formula."""
    return OptimizerList(optimizers=optimizers.describe(), schedules=schedules.describe())
