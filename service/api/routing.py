"""The route class every API route uses: fast JSON in, NumPy-aware JSON out.

Routes stay plain FastAPI (``def route(request: PenaltyRequest) -> PenaltyResponse``,
so the OpenAPI document shows the real request and response schemas); this class
changes only how bytes become models and models become bytes:

* in — ``Content-Type`` must be JSON (else 415); the body is parsed by jiter
  (pydantic-core's parser: as fast as orjson, about 1.5× faster than the stdlib's
  ``json`` on a million numbers, see ``bench/wire.py``) and validated under the
  request's :class:`~service.wire.Budget` of element limits;
* out — the response model is dumped in Python mode, so tensors stay NumPy arrays,
  and written by ``orjson`` directly (no list of a million Python floats in between),
  in the threadpool that runs the route;
* off the event loop — parsing, validation and pricing (``service.budget``) of a body
  run in the threadpool (:meth:`WireRoute.prepare`), so probes answer while large
  bodies are decoded; FastAPI then receives the validated model and passes it through.
  A body of ``PENALTY_OFFLOAD_BYTES`` or more is served whole in a process pool
  (``service.offload``): the GIL is held for a large body's whole parse.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from email.message import Message
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from pydantic_core import from_json
from starlette.concurrency import run_in_threadpool

from service import budget, errors, offload
from service.config import Settings
from service.errors import InvalidJson, JSONResponse, UnsupportedMediaType
from service.schemas import budget_for, decoding


def parse_json(body: bytes, max_rank: int) -> Any:
    """The body as Python values; NaN and Infinity are refused.

    jiter stops at 200 levels of nesting, far below Python's recursion limit, so no
    ``repr`` or error message downstream can recurse out of the stack on a deep body.
    """
    try:
        return from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        reason = str(exc)
        if reason.startswith("recursion limit exceeded"):
            message = f"the body nests too deeply ({reason}); a tensor has at most {max_rank} dimensions"
        else:
            message = f"the body is not valid JSON ({reason}); send a JSON object as API.md describes"
        raise InvalidJson(message, details=[{"loc": ["body"], "msg": message, "type": InvalidJson.code}]) from None


class ParsedRequest(Request):
    """A request whose ``json()`` is the body :class:`WireRoute` parsed with :func:`parse_json`."""

    parsed: Any = None

    async def json(self) -> Any:
        return self.parsed


def require_json(request: Request) -> None:
    """415 unless the body is declared ``application/json`` (or ``application/*+json``)."""
    header = request.headers.get("content-type")
    declared = Message()
    declared["content-type"] = header or ""
    subtype = declared.get_content_subtype()
    if not header or declared.get_content_maintype() != "application" or not (
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
    """An APIRoute with jiter-parsed bodies, element limits and NumPy-aware responses."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, _rendered(endpoint), **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        has_body = self.body_field is not None
        params = self.dependant
        offloadable = has_body and len(params.body_params) == 1 and not (
            params.path_params or params.query_params or params.header_params
            or params.cookie_params or params.dependencies
        )

        async def route_handler(request: Request) -> Response:
            settings: Settings = request.app.state.settings
            request = ParsedRequest(request.scope, request.receive)
            if has_body:
                require_json(request)
                body = await request.body()  # over the size limit: a 413 here
                if offloadable and settings.offload_bytes and len(body) >= settings.offload_bytes:
                    return await self.offloaded(body, settings)
                if body:  # (FastAPI reports an empty body as a missing field)
                    ticket = request.scope.get(budget.SCOPE_KEY)
                    request.parsed = await run_in_threadpool(self.prepare, body, settings, ticket)
            with decoding(budget_for(settings)):
                return await handler(request)

        return route_handler

    # --- the threadpool's (or the process pool's) share of a request (keep the event loop free)

    async def offloaded(self, body: bytes, settings: Settings) -> Response:
        """The whole request served in ``service.offload``'s process pool."""
        where = (self.endpoint.__module__, self.endpoint.__name__)
        status, content, headers, code, trace = await offload.serve(where, body, settings)
        if code is not None:
            for hook in errors.ON_ERROR:
                hook(code, status)
        if trace:
            errors.logger.error("unhandled error on POST %s (in the process pool)\n%s", self.path_format, trace)
        return Response(content, status, headers, media_type="application/json")

    def prepare(self, body: bytes, settings: Settings, ticket: budget.Ticket | None) -> Any:
        """Parse ``body``; when the route's body is one model, validate and price it
        (:func:`prepare_body`)."""
        model = self.body_field.field_info.annotation if self.body_field is not None else None
        return prepare_body(model, body, settings, ticket)


def prepare_body(model: Any, body: bytes, settings: Settings, ticket: budget.Ticket | None) -> Any:
    """``body`` parsed; when ``model`` is a pydantic model, validated (under the element
    limits) as FastAPI would, and its priced cost (``service.budget``) charged to ``ticket``."""
    parsed = parse_json(body, settings.max_nesting_depth)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return parsed
    with decoding(budget_for(settings)):
        try:
            validated = model.model_validate(parsed, from_attributes=True)  # as FastAPI does
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
            ) from None
    cost = budget.charge(validated, settings.max_work, settings.max_work_bytes)
    if ticket is not None:
        ticket.reserve(cost.bytes)
    return validated
