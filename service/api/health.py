"""``/healthz`` (liveness) and ``/readyz`` (readiness), ``GET`` and ``HEAD``.

Both are ``async`` and touch nothing but memory: they answer on the event loop even
when every threadpool thread is busy with a large request (parsing, validation and
encoding of bodies run in the threadpool, see ``service.api.routing``).  ``/readyz`` is
503 while the worker's admission budget is full (``service.budget``), so a load
balancer sends the next request elsewhere; ``/healthz`` stays 200 (the process is fine,
restarting it would lose the work in progress).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from service import errors
from service.budget import Admission
from service.schemas import ErrorResponse, Status

router = APIRouter(tags=["operations"])


@router.get("/healthz", operation_id="liveness", summary="Liveness")
async def liveness() -> Status:
    """The process is up and answering."""
    return Status()


@router.get(
    "/readyz", operation_id="readiness", summary="Readiness", response_model=Status,
    responses={503: {"model": ErrorResponse, "description": "At capacity: send traffic elsewhere"}},
)
async def readiness(request: Request) -> Status | Response:
    """Ready for traffic unless the worker's request or in-flight-bytes budget is full."""
    admission: Admission = request.app.state.admission
    if admission.saturated():
        return errors.error_response(
            503, "not_ready",
            f"at capacity: {admission.requests} of {admission.max_requests} requests, "
            f"{admission.bytes} of {admission.max_bytes} bytes in flight",
            headers={"Retry-After": str(admission.retry_after)},
        )
    return Status()


# HEAD (probes and load balancers that send it): the same answers, without a body.
for _path, _endpoint in (("/healthz", liveness), ("/readyz", readiness)):
    router.add_api_route(_path, _endpoint, methods=["HEAD"], include_in_schema=False, response_model=Status)
