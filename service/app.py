"""Application factory: routes, error handlers, limits, admission, operations, offline docs.

``uvicorn --factory service.app:create_app`` (what ``python -m service`` runs) builds
the app from the environment; tests pass their own :class:`Settings`.

Middleware, outermost first (each pure ASGI: nothing is buffered, streams stream):
request id + metrics + access log (``service.observability``, outside even Starlette's
error middleware, so a 500 has its id too), CORS (when origins are set), API keys,
the body limit and read timeout (a declared oversize body is a 413 before admission),
admission control (``service.budget``), the routes.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import types
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from service import __version__, budget, errors, observability, offload, runtime
from service.api import router
from service.api.routing import FastLane
from service.config import Settings, get_settings

STATIC = Path(__file__).with_name("static")

DESCRIPTION = """\
Keras 3.15's regularization penalties (L1, L2, L1L2, orthogonal) and their gradients,
one Dense layer's or a Dense stack's every loss term and every term's gradient, computed
exactly as Keras does.

Tensors are nested JSON arrays, `{"shape", "datatype", "data"}` or `{"shape", "datatype",
"b64"}` (FP16, FP32, FP64; FP32 by default). Every error is
`{"error": {"code", "message", "details"}}`.
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """At startup, move everything built so far (modules, schemas, the app) out of the
    cyclic garbage collector's view: it lives as long as the process, and a request that
    builds many response objects would otherwise pay for traversing all of it in each
    collection it triggers."""
    gc.collect()
    gc.freeze()
    yield
    offload.shutdown()
    observability.mark_worker_dead()


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with a 413, before they are parsed.

    A declared ``Content-Length`` over the limit is answered at once, without reading
    the body; otherwise the bytes are counted as they arrive and the read that crosses
    the limit raises :class:`~service.errors.PayloadTooLarge`.  A body that stops
    arriving for ``read_timeout`` seconds is a 408 (uvicorn itself has no read timeout).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, read_timeout: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout

    def _too_large(self, size: str) -> errors.PayloadTooLarge:
        return errors.PayloadTooLarge(
            f"the body has {size} bytes; the limit is {self.max_bytes}: send smaller tensors, "
            "b64 instead of JSON numbers, or split the request"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = budget.declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            exc = self._too_large(str(declared))
            response = errors.error_response(exc.status_code, exc.code, exc.message)
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            waiting, message = receive(), None
            if inspect.iscoroutine(waiting):
                try:
                    waiting = _resumed(waiting, waiting.send(None))
                except StopIteration as done:  # the chunk had arrived: no timer is needed
                    message = done.value
            if message is None:
                try:
                    async with asyncio.timeout(self.read_timeout):  # no task per chunk, unlike wait_for
                        message = await waiting
                except TimeoutError:
                    raise errors.RequestTimeout(
                        f"no part of the body arrived for {self.read_timeout} s ({received} bytes read)"
                    ) from None
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise self._too_large(f"more than {self.max_bytes}")
            return message

        await self.app(scope, counted, send)


@types.coroutine
def _resumed(coroutine: Any, pending: Any) -> Generator[Any, Any, Any]:
    """The rest of ``coroutine``, which ran up to its first suspension and yielded
    ``pending`` there: what the event loop sends or throws (a cancellation, the read
    timeout's included) goes on into it, and its result is this one's.

    :class:`BodyLimit` steps a ``receive()`` once itself and arms its timer only when the
    chunk has not arrived yet: a timer per chunk costs more than reading a small body.
    """
    try:
        while True:
            try:
                sent = yield pending
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as exc:  # every one is the coroutine's to see
                pending = coroutine.throw(exc)
            else:
                pending = coroutine.send(sent)
    except StopIteration as done:
        return done.value


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service, configured by ``settings`` (the environment's when omitted)."""
    settings = settings or get_settings()
    limit_blas_threads(settings)
    runtime.keep_freed_memory(settings.malloc_keep_bytes)
    logging.getLogger("service").setLevel(settings.log_level.upper().replace("TRACE", "DEBUG"))
    app = FastAPI(
        title="penalty-service",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        separate_input_output_schemas=False,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.admission = budget.Admission(
        settings.max_concurrent_requests, settings.max_inflight_bytes, settings.retry_after_seconds
    )
    errors.install(app)
    app.add_middleware(FastLane, service=app)  # first: innermost (see service.api.routing)
    app.add_middleware(
        budget.AdmissionControl, admission=app.state.admission, body_factor=settings.body_memory_factor
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, read_timeout=settings.body_read_timeout)
    app.add_middleware(
        observability.ApiKeys, keys=settings.key_list, metrics=settings.metrics_require_key,
        pages=settings.pages_require_key,
    )
    if settings.origin_list:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.origin_list, allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"], max_age=600,
        )
    app.add_route("/metrics", observability.metrics_endpoint, methods=["GET"], include_in_schema=False)
    app.include_router(router)
    _add_offline_docs(app)
    build_stack = app.build_middleware_stack
    app.build_middleware_stack = lambda: observability.Observability(build_stack())  # type: ignore[method-assign]
    return app


def limit_blas_threads(settings: Settings) -> None:
    """Set this process's BLAS thread pool size (threadpoolctl: OpenBLAS, MKL, BLIS) to
    ``settings.blas_threads``: each worker is one process, so workers × threads is what
    the BLAS may occupy."""
    threadpool_limits(limits=settings.blas_threads, user_api="blas")


def _add_offline_docs(app: FastAPI) -> None:
    """``/docs`` and ``/redoc`` from the assets bundled in ``service/static`` (no CDN)."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def base(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = base(request)
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} — Swagger UI",
            swagger_js_url=f"{root}/static/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/static/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{root}/static/swagger-ui/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None, "defaultModelsExpandDepth": 0},
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = base(request)
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} — ReDoc",
            redoc_js_url=f"{root}/static/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{root}/static/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        )
