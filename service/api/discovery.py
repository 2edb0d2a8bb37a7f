"""``GET /v1/regularizers``, ``/v1/activations``, ``/v1/losses``: what the service supports."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.routing import WireRoute
from service.core import activations, losses, regularizers
from service.schemas import ActivationList, LossList, RegularizerList

router = APIRouter(prefix="/v1", route_class=WireRoute, tags=["discovery"])


@router.get("/regularizers", operation_id="list_regularizers", summary="Supported regularizers")
def list_regularizers() -> RegularizerList:
    """Each regularizer's tag, Keras class, identifiers, parameters with Keras's defaults,
    and formula."""
    return RegularizerList(regularizers=regularizers.describe())


@router.get("/activations", operation_id="list_activations", summary="Supported activations")
def list_activations() -> ActivationList:
    """Each activation's Keras name, aliases, parameters with defaults, and formula."""
    return ActivationList(activations=activations.describe())


@router.get("/losses", operation_id="list_losses", summary="Supported data losses")
def list_losses() -> LossList:
    """Each data loss's Keras name, aliases, parameters with defaults, and formula."""
    return LossList(losses=losses.describe())
