"""The route class every API route uses: fast JSON in, NumPy-aware JSON out.

Routes stay plain FastAPI (``def route(request: PenaltyRequest) -> PenaltyResponse``,
so the OpenAPI document shows the real request and response schemas); this class
changes only how bytes become models and models become bytes:

* in — ``Content-Type`` must be JSON (else 415); the body is parsed with ``orjson``
  (about 1.6× faster than the stdlib's ``json`` on a million numbers) and validated
  under the request's :class:`~service.wire.Budget` of element limits;
* out — the response model is dumped in Python mode, so tensors stay NumPy arrays,
  and written by ``orjson`` directly (no list of a million Python floats in between),
  in the threadpool that runs the route.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from email.message import Message
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel

from service.config import Settings
from service.errors import JSONResponse, UnsupportedMediaType
from service.schemas import budget_for, decoding


class OrjsonRequest(Request):
    """A request whose ``json()`` is parsed by orjson (NaN and Infinity are refused)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


def require_json(request: Request) -> None:
    """415 unless the body is declared ``application/json`` (or ``application/*+json``)."""
    header = request.headers.get("content-type")
    message = Message()
    message["content-type"] = header or ""
    subtype = message.get_content_subtype()
    if not header or message.get_content_maintype() != "application" or not (
        subtype == "json" or subtype.endswith("+json")
    ):
        raise UnsupportedMediaType(
            f"the body must be JSON with 'Content-Type: application/json', got "
            f"{header or 'no Content-Type'}"
        )


def _rendered(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """``endpoint`` returning a Response written by orjson (its signature is kept for FastAPI)."""
    if inspect.iscoroutinefunction(endpoint):
        raise TypeError(f"{endpoint.__name__}: WireRoute routes are plain `def` (NumPy work)")

    @functools.wraps(endpoint)
    def render(*args: Any, **kwargs: Any) -> Any:
        result = endpoint(*args, **kwargs)
        return JSONResponse(result.model_dump()) if isinstance(result, BaseModel) else result

    return render


class WireRoute(APIRoute):
    """An APIRoute with orjson bodies, element limits and NumPy-aware responses."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, _rendered(endpoint), **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        has_body = self.body_field is not None

        async def route_handler(request: Request) -> Response:
            settings: Settings = request.app.state.settings
            request = OrjsonRequest(request.scope, request.receive)
            if has_body:
                require_json(request)
                await request.body()  # over the limit: a 413 here, before FastAPI parses
            with decoding(budget_for(settings)):
                return await handler(request)

        return route_handler
