"""``POST /v1/penalty`` and ``POST /v1/penalties``: regularization penalties of weights."""

from __future__ import annotations

from fastapi import APIRouter

from service import wire
from service.api.responses import POST_ERRORS
from service.api.routing import WireRoute
from service.core.regularizers import penalties
from service.schemas import (
    PenaltiesRequest,
    PenaltiesResponse,
    PenaltyRequest,
    PenaltyResponse,
    numbers_out,
    tensor_out,
)

router = APIRouter(prefix="/v1", route_class=WireRoute, tags=["penalties"], responses=POST_ERRORS)


@router.post("/penalty", operation_id="compute_penalty", summary="Penalty of one tensor")
def compute_penalty(request: PenaltyRequest) -> PenaltyResponse:
    """The regularizer's penalty of ``tensor`` and (unless ``return_gradient`` is false) its
    gradient, in the tensor's datatype. ``L1(0.1)`` on ``ones((2, 2, 4)) * 3`` is 4.8."""
    regularizer, tensor = request.regularizer, request.tensor
    return PenaltyResponse(
        penalty=wire.scalar(regularizer.penalty(tensor), what="penalty"),
        gradient=tensor_out(regularizer.gradient(tensor), request.encoding, "gradient")
        if request.return_gradient
        else None,
        regularizer=regularizer.get_config(),
    )


@router.post("/penalties", operation_id="compute_penalties", summary="Penalties of named weights")
def compute_penalties(request: PenaltiesRequest) -> PenaltiesResponse:
    """Each weight's penalty, their ``total`` (summed in order, in the widest datatype
    given, as Keras sums ``model.losses``) and each gradient."""
    result = penalties(
        {name: (w.regularizer, w.tensor) for name, w in request.weights.items()},
        return_gradients=request.return_gradients,
    )
    return PenaltiesResponse(
        penalties=numbers_out(result.penalties, "penalties"),
        total=wire.scalar(result.total, what="total"),
        gradients={
            name: tensor_out(g, request.encoding, f"gradients.{name}")
            for name, g in result.gradients.items()
        }
        if result.gradients is not None
        else None,
    )
