"""``POST /v1/penalty`` and ``POST /v1/penalties``: regularization penalties of weights."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter

from service import wire
from service.api.responses import POST_ERRORS
from service.api.routing import WireRoute
from service.core.dense import total
from service.core.numeric import result_dtype
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
    weights = request.weights
    values = {name: w.regularizer.penalty(w.tensor) for name, w in weights.items()}
    zero = np.zeros((), result_dtype(*(w.tensor for w in weights.values())))
    return PenaltiesResponse(
        penalties=numbers_out(values, "penalties"),
        total=wire.scalar(total(values, zero), what="total"),
        gradients={
            name: tensor_out(w.regularizer.gradient(w.tensor), request.encoding, f"gradients.{name}")
            for name, w in weights.items()
        }
        if request.return_gradients
        else None,
    )
