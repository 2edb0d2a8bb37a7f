"""Large bodies are served in a process pool, so the event loop never waits on them.

A thread does not free the event loop from a large JSON body of numbers: parsing it
(``jiter``), turning lists into arrays and writing the answer (``orjson``) each hold the
GIL for the whole call — 0.7 s, 0.2 s and 0.4 s for a 64 MiB body — and ``/healthz``
would wait as long.  A JSON body of at least ``PENALTY_OFFLOAD_BYTES`` (1 MiB) that holds
numbers in bulk (:func:`wanted`) is therefore sent to one of
``PENALTY_OFFLOAD_PROCESSES`` worker processes, which parse, validate, price, compute and
encode it exactly as the threadpool path does (the same :class:`~service.api.routing.WireRoute`
code) and send back the finished response bytes; error responses are rendered there by
the same handlers (:func:`service.errors.render`).  Smaller bodies, and bodies whose
tensors are ``b64`` strings (one JSON value each: they parse at memory speed and the
arrays are views of their decoded bytes), stay in the threadpool: a round trip to a
process, copying the body there and the answer back, costs more than they hold the GIL.

Memory: a request served here holds its body in the worker process (reserved by
admission control, ``service.budget``) and its parse, work and answer in a pool process;
at most ``PENALTY_OFFLOAD_PROCESSES`` such requests run at once, the others wait with
only their bodies.  The pool is one per worker process, started on first use (``spawn``:
nothing of the parent's state is shared) and shut down with the app.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import multiprocessing
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from service.config import Settings

logger = logging.getLogger("service")

#: (status, body, headers, error code or None, traceback text or None)
Result = tuple[int, bytes, dict[str, str], str | None, str | None]

_pool: ProcessPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()


#: Bytes of each window of a body :func:`wanted` samples.
SAMPLE_BYTES = 1 << 16
#: A window holding at least one comma per this many bytes is a body of JSON numbers.
BYTES_PER_VALUE = 64


def wanted(body: bytes, settings: Settings) -> bool:
    """Serve this JSON body in the pool?  When it has ``PENALTY_OFFLOAD_BYTES`` or more and
    holds JSON numbers in bulk: one of three 64 KiB windows (start, middle, end) has a
    comma per :data:`BYTES_PER_VALUE` bytes or more.  A body whose tensors are ``b64``
    strings has a handful of commas in all; sampling keeps the check off the body's size."""
    n = len(body)
    if not settings.offload_bytes or n < settings.offload_bytes:
        return False
    for start in (0, n // 2, max(0, n - SAMPLE_BYTES)):
        window = body[start:start + SAMPLE_BYTES]
        if window.count(b",") * BYTES_PER_VALUE >= len(window):
            return True
    return False


def pool(processes: int) -> ProcessPoolExecutor:
    """This worker's process pool (started on first use)."""
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != processes:
            if _pool is not None:
                _pool.shutdown(wait=False, cancel_futures=True)
            _pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))
            _pool_size = processes
        return _pool


def shutdown() -> None:
    global _pool
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=True, cancel_futures=True)
            _pool = None


async def serve(endpoint: tuple[str, str], body: bytes, settings: Settings) -> Result:
    """Serve ``body`` with the route function ``endpoint`` (module, name) in the pool."""
    loop = asyncio.get_running_loop()
    call = functools.partial(_serve, endpoint, body, settings)
    executor = pool(settings.offload_processes)
    try:
        return await loop.run_in_executor(executor, call)
    except BrokenProcessPool:
        # A pool process died (killed for memory, say): start a new pool for the next
        # request; this one is refused like any request the worker cannot take now.
        _discard(executor)
        logger.error("a process of the offload pool died; the pool is restarted")
        from service import errors

        message = f"the request could not be served (a worker process died); retry after {settings.retry_after_seconds} s"
        headers = {"Retry-After": str(settings.retry_after_seconds)}
        answer = errors.JSONResponse(errors.envelope("overloaded", message)).body  # counted by the caller
        return 503, bytes(answer), headers, "overloaded", None


def _discard(executor: ProcessPoolExecutor) -> None:
    global _pool
    with _lock:
        if _pool is executor:
            _pool = None
    executor.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------- in the pool process


@functools.cache
def _endpoint(module: str, name: str) -> tuple[Callable[..., Any], str, type]:
    """The route function (a ``def route(request: Model)``), its body parameter and model."""
    from service.api.routing import _model_route

    function = getattr(importlib.import_module(module), name)
    found = _model_route(function)
    assert found is not None, f"{module}.{name} is not a def route(request: Model)"
    parameter, model = found
    return function, parameter, model


def _serve(endpoint: tuple[str, str], body: bytes, settings: Settings) -> Result:
    from service import errors
    from service.api.routing import read_request, write_response
    from service.schemas import budget_for, decoding

    try:
        function, parameter, model = _endpoint(*endpoint)
        validated = read_request(body, "json", model, settings)
        with decoding(budget_for(settings)):
            response = write_response(function(**{parameter: validated}), binary=False)
        return response.status_code, bytes(response.body), {}, None, None
    except Exception as exc:
        rendered, code = errors.render(exc)
        trace = None if code != "internal_error" else traceback.format_exc()
        headers = {k: v for k, v in rendered.headers.items() if k.lower() not in ("content-length", "content-type")}
        return rendered.status_code, bytes(rendered.body), headers, code, trace
