"""A bare Starlette app: ``POST /echo`` answers the body it got, ``GET /healthz`` is ok.

The ceiling ``bench/transport.py`` compares small ``/v1/penalty`` requests against: the
same uvicorn, the same client, no validation and no computation.

    uvicorn --factory bench.echo_app:create_app
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def echo(request: Request) -> Response:
    return Response(await request.body(), media_type="application/json")


async def healthz(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app() -> Starlette:
    return Starlette(routes=[Route("/echo", echo, methods=["POST"]), Route("/healthz", healthz)])
