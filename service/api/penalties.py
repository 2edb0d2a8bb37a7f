"""``POST /v1/penalty`` and ``POST /v1/penalties``: regularization penalties of weights."""

from __future__ import annotations

from fastapi import APIRouter

from service import wire
from service.api.responses import POST_ERRORS
from service.api.routing import WireRoute
from service.core.regularizers import penalties
from service.core.selection import TOTAL, gradient_selection
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
    selection = gradient_selection(request.return_gradient, "return_gradient")
    if selection is not None:
        selection.check(["tensor"], [TOTAL], "return_gradient")
    return PenaltyResponse(
        penalty=wire.scalar(regularizer.penalty(tensor), what="penalty"),
        gradient=tensor_out(regularizer.gradient(tensor), request.encoding, "gradient")
        if selection is not None and selection.wants("tensor", TOTAL)
        else None,
        regularizer=regularizer.get_config(),
    )


@router.post("/penalties", operation_id="compute_penalties", summary="Penalties of named weights")
def compute_penalties(request: PenaltiesRequest) -> PenaltiesResponse:
    """Each weight's penalty, their ``total`` (summed in order, in the widest datatype
    given, as Keras sums ``model.losses``) and each gradient (of the weights selected)."""
    weights = {name: (w.regularizer, w.tensor) for name, w in request.weights.items()}
    selection = gradient_selection(request.return_gradients)
    if selection is not None:
        selection.check(weights, [TOTAL], "return_gradients")
    chosen = [name for name in weights if selection is not None and selection.wants(name, TOTAL)]
    every = selection is not None and len(chosen) == len(weights)
    result = penalties(weights, return_gradients=every)
    gradients = result.gradients
    if selection is not None and not every:  # a subset: only its gradients are computed
        gradients = penalties({n: weights[n] for n in chosen}).gradients if chosen else {}
    return PenaltiesResponse(
        penalties=numbers_out(result.penalties, "penalties"),
        total=wire.scalar(result.total, what="total"),
        gradients={
            name: tensor_out(g, request.encoding, f"gradients.{name}") for name, g in gradients.items()
        }
        if gradients is not None
        else None,
    )
