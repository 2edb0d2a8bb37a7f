"""Operating the service: request ids, JSON logs, Prometheus metrics, API keys.

* **Request id** — every response carries ``X-Request-ID``: the client's own when it
  sent a sane one (1–128 of ``A-Z a-z 0-9 . _ -``), else a new one of 32 hex digits
  (:func:`new_request_id`).  It is in
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
  the route's template (``/v1/penalty``), ``unmatched`` otherwise, and ``method`` a
  standard method or ``other``, so labels stay few whatever clients send.
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
import itertools
import logging
import os
import re
import secrets
import shutil
import tempfile
import time
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
from starlette.datastructures import Headers
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


def _new_prefix() -> None:
    global _ID_PREFIX, _ids
    _ID_PREFIX = secrets.token_hex(8)
    _ids = itertools.count()


_ID_PREFIX = ""
_ids = itertools.count()
_new_prefix()
os.register_at_fork(after_in_child=_new_prefix)  # a forked worker draws its own prefix


def new_request_id() -> str:
    """32 hex digits, unique: this process's random 64-bit prefix and a counter (drawn
    again in a forked child), e.g. ``"9f1c0b7e5a2d4c83" "0000000000000007"``: as unique as
    a uuid4 across workers, without reading the OS's random source for every request."""
    return f"{_ID_PREFIX}{next(_ids):016x}"


def header(scope: Scope, name: bytes) -> str:
    """The first value of header ``name`` (lower-case bytes) in ``scope``, or ``""``:
    one pass over the raw list, without building a ``Headers`` object."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def _set_request_id(message: Message, request_id: bytes) -> None:
    """``X-Request-ID: request_id`` on a response start message, replacing one already set."""
    headers = message["headers"] = list(message.get("headers", ()))
    for i, (key, _) in enumerate(headers):
        if key == b"x-request-id":
            headers[i] = (key, request_id)
            return
    headers.append((b"x-request-id", request_id))


class _RouteMetrics:
    """The metric children of one route (``labels()`` looks them up under a lock each time)."""

    __slots__ = ("bytes_in", "bytes_out", "duration", "requests", "route")

    def __init__(self, route: str) -> None:
        self.route = route
        self.duration = DURATION.labels(route)
        self.bytes_in = BYTES_IN.labels(route)
        self.bytes_out = BYTES_OUT.labels(route)
        self.requests: dict[tuple[str, int], Any] = {}

    def count(self, method: str, status: int) -> None:
        if method not in METHODS:  # the client names the method: its values must stay few
            method = "other"
        child = self.requests.get((method, status))
        if child is None:
            child = self.requests[method, status] = REQUESTS.labels(self.route, method, str(status))
        child.inc()


#: The ``method`` label's values; any other method a client sends counts as ``other``.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})
#: route template -> its metric children (a few routes; "unmatched" for the rest).
_METRICS: dict[str, _RouteMetrics] = {}


def _metrics_of(route: str) -> _RouteMetrics:
    metrics = _METRICS.get(route)
    if metrics is None:
        metrics = _METRICS[route] = _RouteMetrics(route)
    return metrics


class Observability:
    """ASGI middleware: request id, metrics and one access-log line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent_id = header(scope, b"x-request-id")
        request_id = sent_id if sent_id and _SANE_ID.fullmatch(sent_id) else new_request_id()
        encoded_id = request_id.encode("latin-1")
        token = REQUEST_ID.set(request_id)
        start = time.perf_counter()
        status, bytes_in, bytes_out = 500, 0, 0

        async def counted_receive() -> Message:
            nonlocal bytes_in
            message = await receive()
            bytes_in += len(message.get("body", b""))
            return message

        async def tagged_send(message: Message) -> None:
            nonlocal status, bytes_out
            if message["type"] == "http.response.body":
                bytes_out += len(message.get("body", b""))
            elif message["type"] == "http.response.start":
                status = message["status"]
                _set_request_id(message, encoded_id)
            await send(message)

        IN_FLIGHT.inc()
        try:
            await self.app(scope, counted_receive, tagged_send)
        finally:
            IN_FLIGHT.dec()
            elapsed = time.perf_counter() - start
            metrics = _metrics_of(_route_of(scope))
            metrics.count(scope["method"], status)
            metrics.duration.observe(elapsed)
            metrics.bytes_in.inc(bytes_in)
            metrics.bytes_out.inc(bytes_out)
            if access_log.isEnabledFor(logging.INFO):  # the fields are built only to be written
                _log_access(scope, request_id, metrics.route, status, elapsed, bytes_in, bytes_out)
            REQUEST_ID.reset(token)


def _log_access(
    scope: Scope, request_id: str, route: str, status: int, elapsed: float, bytes_in: int, bytes_out: int
) -> None:
    client = scope.get("client")
    path = errors.clip(scope["path"], 200)
    access_log.info(
        "%s %s %s", scope["method"], path, status,
        extra={"fields": {
            "request_id": request_id, "method": scope["method"], "path": path, "route": route,
            "status": status, "duration_ms": round(elapsed * 1000, 3),
            "bytes_in": bytes_in, "bytes_out": bytes_out,
            "client": f"{client[0]}:{client[1]}" if client else None,
        }},
    )


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
