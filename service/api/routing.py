"""The route class every API route uses: JSON or safetensors in, JSON or safetensors out.

Routes stay plain FastAPI (``def route(request: PenaltyRequest) -> PenaltyResponse``,
so the OpenAPI document shows the real request and response schemas); this class
changes only how bytes become models and models become bytes, in two functions:

* :func:`read_request` — bytes -> the validated request model.  ``Content-Type``
  ``application/json`` (or ``*+json``) is parsed by jiter (pydantic-core's parser, see
  ``bench/wire.py``); ``application/x-safetensors`` is read by
  :func:`service.wire.safetensors.read` (zero-copy views, bounds-checked first), its
  ``__metadata__["json"]`` parsed as JSON and each tensor put at the field its name
  paths to (:func:`service.schemas.paths.place`).  Anything else is a 415.  Tensors
  decode under the request's :class:`~service.wire.Budget` of element limits.
* :func:`write_response` — the response model -> bytes: JSON written by ``orjson``
  straight from the NumPy arrays, or, when ``Accept`` names
  ``application/x-safetensors``, every array under its dot-joined path and the rest
  of the model in ``__metadata__["json"]``.  Errors are always the JSON envelope.

A new route gets both formats for free: it uses ``route_class=WireRoute`` and is a plain
``def`` taking one request model (whose tensor fields are ``schemas.Tensor``) and
returning a response model (whose tensors come from ``schemas.tensor_out``).  A route
with any other signature (a ``Request``, form parts, a streaming response) still goes
through FastAPI's own handler, with the parsed body (JSON, or safetensors placed as
above) handed to it.

Where the work runs: a body under ``Settings.inline_body_bytes`` is read, computed and
written on the event loop (a thread hop costs more than such a request's whole work,
``bench/transport.py``); a larger one does all three in one threadpool call; a JSON body of
``PENALTY_OFFLOAD_BYTES`` or more that holds numbers in bulk is served whole in a process
pool (``service.offload.wanted``: parsing and encoding JSON numbers hold the GIL for the
whole body, so a thread would not free the event loop; ``b64`` and safetensors tensors
stay in the threadpool).  Every
validated request is priced (``service.budget.charge``: 413 ``too_expensive`` over the
limits) and its cost reserved against admission control before the route computes.  A binary
answer is sent as its pieces (header, then each array's own bytes) without joining them.
:class:`FastLane` (installed innermost by ``create_app``) takes POSTs to such routes past
the framework's router, which costs more than a small request's own work.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Coroutine, Iterator
from email.message import Message
from typing import Any

import fastapi.routing
import orjson
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from pydantic_core import from_json
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from service import budget, errors, offload, wire
from service.config import Settings
from service.errors import (
    ApiError,
    InvalidJson,
    JSONResponse,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from service.observability import header
from service.schemas import budget_for, decoding
from service.schemas.paths import PlacementError, place
from service.wire import safetensors

SAFETENSORS = safetensors.MEDIA_TYPE


class InvalidSafetensors(ApiError):
    """A safetensors body that is malformed, or whose tensors fill no (or the same) field."""

    status_code = 422
    code = "invalid_safetensors"


def parse_json(body: bytes | str, max_rank: int) -> Any:
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


def body_format(header: str | None) -> str:
    """``"json"`` or ``"safetensors"`` from ``Content-Type``; 415 for anything else."""
    if header == "application/json":  # the common case, without parsing
        return "json"
    declared = Message()
    declared["content-type"] = header or ""
    subtype = declared.get_content_subtype()
    if header and declared.get_content_maintype() == "application":
        if subtype == "json" or subtype.endswith("+json"):
            return "json"
        if subtype == "x-safetensors":
            return "safetensors"
    raise UnsupportedMediaType(
        f"the body must be JSON with 'Content-Type: application/json', got "
        f"{header or 'no Content-Type'}"
    )


def wants_safetensors(accept: str) -> bool:
    """Does ``Accept`` name ``application/x-safetensors`` (with a non-zero quality)?"""
    if "safetensors" not in accept:
        return False
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if media.lower() == SAFETENSORS:
            return not any(p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params)
    return False


def parse_body(body: bytes, kind: str, model: Any, settings: Settings) -> Any:
    """The body as the JSON document the request model validates (tensors as arrays when
    they came as safetensors)."""
    if kind == "json":
        return parse_json(body, settings.max_nesting_depth) if body else None
    budget = budget_for(settings)  # a scratch budget: refuse oversize tensors before any view
    try:
        tensors, metadata = safetensors.read(body, max_header_bytes=settings.max_safetensors_header_bytes, budget=budget)
        document = parse_json(metadata.get("json", "{}"), settings.max_nesting_depth)
        return place(model, document, tensors)
    except safetensors.SafetensorsError as exc:
        if exc.too_large:
            raise PayloadTooLarge(exc.message) from None
        raise InvalidSafetensors(exc.message, details=[{"loc": ["body"], "msg": exc.message,
                                                        "type": InvalidSafetensors.code}]) from None
    except PlacementError as exc:
        raise InvalidSafetensors(exc.message, details=[{"loc": ["body", exc.name], "msg": exc.message,
                                                        "type": InvalidSafetensors.code}]) from None


def read_request(
    body: bytes, kind: str, model: type[BaseModel], settings: Settings, ticket: budget.Ticket | None = None
) -> BaseModel:
    """Request bytes (JSON or safetensors) -> the validated request model (422 envelope),
    priced by ``service.budget`` (413 ``too_expensive``) and its cost reserved on ``ticket``."""
    document = parse_body(body, kind, model, settings)
    if document is None:  # an empty body, reported as FastAPI does
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required"}])
    return validate(document, model, settings, ticket)


def validate(document: Any, model: type[BaseModel], settings: Settings, ticket: budget.Ticket | None) -> BaseModel:
    """``document`` validated as ``model`` under the element limits, then priced and charged."""
    with decoding(budget_for(settings)):
        try:
            validated = model.model_validate(document, from_attributes=True)
        except ValidationError as exc:
            problems = exc.errors(include_url=False, include_input=False)
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in problems]
            ) from None
    cost = budget.charge(validated, settings.max_work, settings.max_work_bytes)
    if ticket is not None:
        ticket.reserve(cost.bytes)
    return validated


def write_response(result: Any, binary: bool) -> Response:
    """A response model -> JSON bytes (orjson, arrays written directly), or a safetensors
    body: every array under its dot-joined path, the rest in ``__metadata__["json"]``."""
    if not isinstance(result, BaseModel):
        return result
    dumped = result.model_dump()
    if not binary:
        return JSONResponse(dumped)
    tensors, rest = safetensors.flatten(dumped)
    metadata = {"json": orjson.dumps(rest, option=orjson.OPT_SERIALIZE_NUMPY).decode()}
    return PartsResponse(safetensors.parts(tensors, metadata), media_type=SAFETENSORS)


class PartsResponse(Response):
    """A response whose body is sent as the given pieces (each array's own bytes), with
    its Content-Length, instead of being copied into one buffer first."""

    def __init__(self, pieces: list[Any], media_type: str) -> None:
        self.pieces = [piece for piece in pieces if len(piece)]  # the header is never empty
        super().__init__(b"", media_type=media_type)
        self.headers["content-length"] = str(sum(len(piece) for piece in self.pieces))

    @property
    def content(self) -> bytes:
        """The whole body (for tests and middleware that read it)."""
        return b"".join(self.pieces)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        last = len(self.pieces) - 1
        for i, piece in enumerate(self.pieces):
            await send({"type": "http.response.body", "body": piece, "more_body": i < last})


def _model_route(endpoint: Callable[..., Any]) -> tuple[str, type[BaseModel]] | None:
    """``(name, model)`` for ``def endpoint(name: Model)``; None for any other signature."""
    params = list(inspect.signature(endpoint).parameters.values())
    if len(params) != 1 or inspect.iscoroutinefunction(endpoint):
        return None
    hint = typing.get_type_hints(endpoint).get(params[0].name)
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return params[0].name, hint
    return None


def _as_json(scope: Any) -> Any:
    """``scope`` declaring a JSON body: FastAPI's handler then takes ``json()`` (the
    document :func:`parse_body` made, safetensors ones included) instead of raw bytes."""
    headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
    return {**scope, "headers": [*headers, (b"content-type", b"application/json")]}


class ParsedRequest(Request):
    """A request whose ``json()`` is the body :class:`WireRoute` parsed."""

    parsed: Any = None

    async def json(self) -> Any:
        return self.parsed


class WireRoute(APIRoute):
    """An APIRoute with jiter/safetensors bodies, element limits and NumPy-aware responses."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        self.compute = endpoint

        @functools.wraps(endpoint)
        def rendered(*args: Any, **kw: Any) -> Any:  # FastAPI's path (other signatures)
            return write_response(endpoint(*args, **kw), wire.RAW_TENSORS.get())

        super().__init__(path, rendered, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        has_body = self.body_field is not None
        # dependencies (the route's or an including router's) need FastAPI's handler
        self.model_route = None if self.dependant.dependencies else _model_route(self.compute)
        direct = self.model_route is not None and not _included_dependencies(self)

        async def route_handler(request: Request) -> Response:
            if direct:
                return await self.respond(request.scope, request.receive)
            settings: Settings = request.app.state.settings
            binary = wants_safetensors(request.headers.get("accept", ""))
            kind = body_format(request.headers.get("content-type")) if has_body else "json"
            request = ParsedRequest(_as_json(request.scope), request.receive)
            if has_body:
                body = await request.body()
                model = self.body_field.field_info.annotation if self.body_field is not None else None
                if body:  # parsed, validated and priced off the event loop when it is large
                    work = functools.partial(self.prepare, body, kind, model, settings,
                                             request.scope.get(budget.SCOPE_KEY))
                    request.parsed = work() if len(body) <= settings.inline_body_bytes else await run_in_threadpool(work)
            token = wire.RAW_TENSORS.set(binary)
            try:
                with decoding(budget_for(settings)):
                    return await handler(request)
            finally:
                wire.RAW_TENSORS.reset(token)

        return route_handler

    @staticmethod
    def prepare(body: bytes, kind: str, model: Any, settings: Settings, ticket: budget.Ticket | None) -> Any:
        """FastAPI's path: the parsed body; when the route's body is one model, validated and
        priced here (FastAPI then receives the validated model and passes it through)."""
        document = parse_body(body, kind, model, settings)
        if document is None or not (isinstance(model, type) and issubclass(model, BaseModel)):
            return document
        return validate(document, model, settings, ticket)

    async def respond(self, scope: Any, receive: Any) -> Response:
        """One request of a ``def route(request: Model)`` route: read, compute, write,
        on the event loop for a small body, in one threadpool call for a large one, in the
        process pool for a large JSON body."""
        settings: Settings = scope["app"].state.settings
        binary = wants_safetensors(header(scope, b"accept"))  # raw headers: no Headers object
        kind = body_format(header(scope, b"content-type"))
        body = await _read_body(receive)  # over the size limit: a 413 here
        if kind == "json" and not binary and offload.wanted(body, settings):
            return await self.offloaded(body, settings)
        ticket = scope.get(budget.SCOPE_KEY)
        work = functools.partial(self.run, body, kind, settings, binary, ticket)
        return work() if len(body) <= settings.inline_body_bytes else await run_in_threadpool(work)

    async def offloaded(self, body: bytes, settings: Settings) -> Response:
        """The whole request served in ``service.offload``'s process pool."""
        where = (self.compute.__module__, self.compute.__name__)
        status, content, headers, code, trace = await offload.serve(where, body, settings)
        if code is not None:
            for hook in errors.ON_ERROR:
                hook(code, status)
        if trace:
            errors.logger.error("unhandled error on POST %s (in the process pool)\n%s", self.path_format, trace)
        return Response(content, status, headers, media_type="application/json")

    def run(
        self, body: bytes, kind: str, settings: Settings, binary: bool, ticket: budget.Ticket | None = None
    ) -> Response:
        """Read, compute, write: one request of a ``def route(request: Model)`` route."""
        assert self.model_route is not None
        name, model = self.model_route
        request = read_request(body, kind, model, settings, ticket)
        token = wire.RAW_TENSORS.set(binary)
        try:
            return write_response(self.compute(**{name: request}), binary)
        finally:
            wire.RAW_TENSORS.reset(token)


class FastLane:
    """ASGI middleware: a POST to a ``def route(request: Model)`` :class:`WireRoute` (without
    dependencies) goes straight to it, past the framework's router.

    Matching a path through the included routers, and the per-request wrappers around a
    route, cost several times a small request's own work (``bench/transport.py``, small
    requests).  The lane keeps what matters: it sits inside every other middleware added
    after it (body limit, admission control), and an error the route raises is answered by
    the app's own exception handler for it (an unexpected one propagates, as it would).
    Any other request passes through untouched.  Install it innermost: add it to the app
    before any other middleware.
    """

    def __init__(self, app: Any, service: Any) -> None:
        self.app = app
        self.service = service
        self._table: dict[str, WireRoute] | None = None

    def table(self) -> dict[str, WireRoute]:
        if self._table is None:
            self._table = dict(_fast_routes(self.service.router.routes, ""))
        return self._table

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        route = self.table().get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route  # as the router would set it (metrics and access logs read it)
        try:
            response = await route.respond(scope, receive)
        except Exception as exc:
            handler = _handler_for(self.service.exception_handlers, exc)
            if handler is None:
                raise
            response = handler(Request(scope, receive), exc)
            if inspect.isawaitable(response):
                response = await response
            _forget_frames(exc)  # answered: its frames (the body among their locals) can go now
        await response(scope, receive, send)


def _forget_frames(exc: BaseException) -> None:
    """Drop the tracebacks of an answered error and of the errors it chains: an exception
    raised in the threadpool is referenced from frames its traceback holds, a cycle that
    would keep the request's body and arrays alive until the cyclic garbage collector ran."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        error.__traceback__ = None
        error = error.__cause__ or error.__context__


async def _read_body(receive: Any) -> bytes:
    """The whole request body, as ``Request.body()`` reads it (a disconnect raises
    ``ClientDisconnect``), without the request object and its stream generator."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()


def _fast_routes(routes: Any, prefix: str) -> Iterator[tuple[str, WireRoute]]:
    for route in routes:
        inner = getattr(route, "original_router", None)  # a router included lazily
        if inner is not None:
            context = getattr(route, "include_context", None)
            if getattr(context, "dependencies", None):
                continue
            yield from _fast_routes(inner.routes, prefix + (getattr(context, "prefix", "") or ""))
        elif (isinstance(route, WireRoute) and route.model_route is not None
              and "POST" in (route.methods or ()) and "{" not in route.path):
            yield prefix + route.path, route


def _included_dependencies(route: APIRoute) -> bool:
    """Does the router that includes ``route`` add dependencies (which FastAPI's handler
    runs)?  FastAPI builds an included route's handler under that inclusion's context."""
    context_var = getattr(fastapi.routing, "_effective_route_context_var", None)
    context = context_var.get() if context_var is not None else None
    if context is None or getattr(context, "original_route", None) is not route:
        return False
    dependant = getattr(context, "dependant", None)
    return dependant is None or bool(dependant.dependencies)


def _handler_for(handlers: dict[Any, Any], exc: Exception) -> Callable[..., Any] | None:
    """The app's handler for ``exc`` (nearest class first); None for the catch-all ones,
    which the server-error middleware applies when the exception propagates."""
    for cls in type(exc).__mro__:
        if cls in (Exception, BaseException):
            return None
        if cls in handlers:
            handler: Callable[..., Any] = handlers[cls]
            return handler
    return None
