"""Operating the service: request ids, JSON logs, Prometheus metrics, API keys.

* **Request id** — every response carries ``X-Request-ID``: the client's own when it
  sent a sane one (1–128 of ``A-Z a-z 0-9 . _ -``), else a new uuid4 hex.  It is in
  :data:`REQUEST_ID` while the request runs, so every log line written meanwhile has it.
* **Logs** — with ``PENALTY_LOG_JSON`` (the default) every line is one JSON object
  (``time, level, logger, message, request_id`` and any fields), uvicorn's included; the
  access log (``service.access``) has ``method, path, route, status, duration_ms,
  bytes_in, bytes_out, client``.
* **Metrics** — ``GET /metrics`` (Prometheus text format): ``penalty_requests_total``
  {route, method, status}, ``penalty_request_duration_seconds`` {route} (histogram),
  ``penalty_request_bytes_total`` / ``penalty_response_bytes_total`` {route},
  ``penalty_rejections_total`` {reason} (every error envelope, by its code),
  ``penalty_requests_in_flight`` and ``penalty_admitted_bytes`` (gauges).  ``route`` is
  the route's template (``/v1/penalty``), ``unmatched`` otherwise, so labels stay few.
  With more than one worker, ``python -m service`` points ``PROMETHEUS_MULTIPROC_DIR`` at
  a fresh directory (:func:`prepare_metrics_dir`) and ``/metrics`` adds up all workers.
* **API keys** — with ``PENALTY_API_KEYS`` set, ``/v1/*`` needs one, as
  ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``, compared in constant time
  against every key; else 401 with ``WWW-Authenticate``.  ``/healthz`` and ``/readyz``
  never need one; ``/metrics`` does unless ``PENALTY_METRICS_REQUIRE_KEY=false``; pages
  (``/docs``, ``/redoc``, ``/openapi.json``, ``/static``, ``/playground``, any other
  ``GET`` page) and the discovery routes (:data:`DISCOVERY`) only with
  ``PENALTY_PAGES_REQUIRE_KEY=true`` (they hold no data, and a browser cannot send a
  header when it opens a page).

Both middlewares are pure ASGI and pass every message through as it comes: a
streaming response (server-sent events) is never buffered.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import errors

REQUEST_ID: ContextVar[str | None] = ContextVar("penalty_request_id", default=None)
_SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

access_log = logging.getLogger("service.access")

REQUESTS = Counter("penalty_requests", "Requests answered", ["route", "method", "status"])
DURATION = Histogram(
    "penalty_request_duration_seconds", "Time from the request's arrival to its last byte", ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BYTES_IN = Counter("penalty_request_bytes", "Request body bytes received", ["route"])
BYTES_OUT = Counter("penalty_response_bytes", "Response body bytes sent", ["route"])
REJECTIONS = Counter("penalty_rejections", "Error responses, by the envelope's code", ["reason"])
IN_FLIGHT = Gauge("penalty_requests_in_flight", "Requests being served", multiprocess_mode="livesum")
ADMITTED_BYTES = Gauge(
    "penalty_admitted_bytes", "Bytes reserved by admitted requests", multiprocess_mode="livesum"
)


def _count_rejection(code: str, status: int) -> None:
    REJECTIONS.labels(code).inc()


errors.ON_ERROR.append(_count_rejection)


# --------------------------------------------------------------------------- metrics


def prepare_metrics_dir(workers: int) -> None:
    """With several workers, metrics go through files in ``PROMETHEUS_MULTIPROC_DIR`` (set
    here to a fresh temporary directory unless given; emptied at start either way)."""
    if workers <= 1 and not os.environ.get(MULTIPROC_ENV):
        return
    path = os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="penalty-metrics-")
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.makedirs(path)
    os.environ[MULTIPROC_ENV] = path


def metrics_endpoint(_: Request) -> Response:
    """The Prometheus exposition of this process, or of all workers in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        data = generate_latest(registry)
    else:
        data = generate_latest()
    return Response(data, media_type=CONTENT_TYPE_LATEST)


def mark_worker_dead() -> None:
    """At a worker's shutdown: drop its live gauges from the multiprocess files."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(os.getpid())


# --------------------------------------------------------------------------- request id, metrics, access log


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class Observability:
    """ASGI middleware: request id, metrics and one access-log line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent_id = Headers(scope=scope).get("x-request-id", "")
        request_id = sent_id if _SANE_ID.fullmatch(sent_id) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        start = time.perf_counter()
        state = {"status": 500, "in": 0, "out": 0}

        async def counted_receive() -> Message:
            message = await receive()
            state["in"] += len(message.get("body", b""))
            return message

        async def tagged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            elif message["type"] == "http.response.body":
                state["out"] += len(message.get("body", b""))
            await send(message)

        IN_FLIGHT.inc()
        try:
            await self.app(scope, counted_receive, tagged_send)
        finally:
            IN_FLIGHT.dec()
            elapsed = time.perf_counter() - start
            route = _route_of(scope)
            REQUESTS.labels(route, scope["method"], str(state["status"])).inc()
            DURATION.labels(route).observe(elapsed)
            BYTES_IN.labels(route).inc(state["in"])
            BYTES_OUT.labels(route).inc(state["out"])
            client = scope.get("client")
            access_log.info(
                "%s %s %s", scope["method"], errors.clip(scope["path"], 200), state["status"],
                extra={"fields": {
                    "request_id": request_id, "method": scope["method"], "path": errors.clip(scope["path"], 200), "route": route,
                    "status": state["status"], "duration_ms": round(elapsed * 1000, 3),
                    "bytes_in": state["in"], "bytes_out": state["out"],
                    "client": f"{client[0]}:{client[1]}" if client else None,
                }},
            )
            REQUEST_ID.reset(token)


# --------------------------------------------------------------------------- API keys

PROBES = frozenset({"/healthz", "/readyz"})
#: The discovery routes: open like the documentation (the playground reads them before any key).
DISCOVERY = frozenset({"/v1/regularizers", "/v1/activations", "/v1/losses", "/v1/optimizers", "/v1/conventions"})


class ApiKeys:
    """ASGI middleware: the API-key check described in the module docstring."""

    def __init__(self, app: ASGIApp, keys: list[str], metrics: bool, pages: bool) -> None:
        self.app = app
        self.keys = [k.encode() for k in keys]
        self.metrics = metrics
        self.pages = pages

    def protects(self, path: str, method: str) -> bool:
        if not self.keys or path in PROBES or method == "OPTIONS":
            return False
        if path == "/metrics":
            return self.metrics
        if method in ("GET", "HEAD") and path in DISCOVERY:
            return self.pages  # what is supported: the same facts as /openapi.json
        return path.startswith("/v1/") or method not in ("GET", "HEAD") or self.pages

    def valid(self, headers: Headers) -> bool:
        presented = headers.get("x-api-key", "")
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            presented = presented or credentials.strip()
        given = presented.encode("utf-8", "replace")
        matched = False
        for key in self.keys:  # every key is compared: the time does not depend on which matched
            matched |= hmac.compare_digest(given, key)
        return matched and bool(given)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.protects(scope["path"], scope["method"]):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self.valid(headers):
            await self.app(scope, receive, send)
            return
        sent = "x-api-key" in headers or "authorization" in headers
        message = (
            "the API key is not valid" if sent
            else "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
        )
        challenge = 'Bearer realm="penalty-service"' + (', error="invalid_token"' if sent else "")
        response = errors.error_response(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})
        await response(scope, receive, send)


# --------------------------------------------------------------------------- logs


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": REQUEST_ID.get(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def log_config(settings: Any) -> dict[str, Any]:
    """uvicorn's ``log_config``: JSON lines for every logger, or uvicorn's own format."""
    formatter = (
        {"()": "service.observability.JsonFormatter"} if settings.log_json
        else {"format": "%(levelname)s:     %(name)s %(message)s"}
    )
    level = settings.log_level.upper().replace("TRACE", "DEBUG")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}},
        "loggers": {
            name: {"handlers": ["default"], "level": level, "propagate": False}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "service")
        },
    }
