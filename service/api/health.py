"""``GET /healthz`` (liveness) and ``GET /readyz`` (readiness)."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.routing import WireRoute
from service.schemas import Status

router = APIRouter(route_class=WireRoute, tags=["operations"])


@router.get("/healthz", operation_id="liveness", summary="Liveness")
def liveness() -> Status:
    """The process is up and answering."""
    return Status()


@router.get("/readyz", operation_id="readiness", summary="Readiness")
def readiness() -> Status:
    """The service is ready for traffic (it is stateless: ready once it answers)."""
    return Status()
