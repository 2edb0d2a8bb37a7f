"""One small request through the app in process, layer by layer: what each middleware costs.

    .venv/bin/python -m bench.stack [--requests 4000] [--rounds 7]

The small-request body of ``bench/transport.py`` (``/v1/penalty``, L1 on a 2×2 tensor) is
sent as ASGI calls, with no server and no socket, to each layer of the middleware stack in
turn, from the app (everything) down to the route's own lane (``FastLane``); the layers take
turns in each round and the report is the median µs per request of each, and the
difference between neighbours: what that layer adds.  The event loop is uvloop, as under
``python -m service``; the logs are at ``warning``, as in ``bench/transport.py``.
"""

from __future__ import annotations

import argparse
import json
import logging.config
import statistics
import time
from typing import Any

import uvloop

from service.app import create_app
from service.config import Settings
from service.observability import log_config

BODY = json.dumps({"tensor": [[1.0, -2.0], [3.0, 4.0]], "regularizer": {"type": "l1", "l1": 0.01}}).encode()
HEADERS = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
           (b"content-length", str(len(BODY)).encode())]
#: The first layer that is not measured: the framework's own routing below the lane.
STOP = ("ExceptionMiddleware",)


def layers(app: Any) -> list[tuple[str, Any]]:
    """``(name, asgi app)`` from the whole app down to the route's lane."""
    app.middleware_stack = app.build_middleware_stack()
    out: list[tuple[str, Any]] = [("the app (FastAPI.__call__)", app)]
    layer = app.middleware_stack
    while layer is not None and type(layer).__name__ not in STOP:
        out.append((type(layer).__name__, layer))
        layer = getattr(layer, "app", None)
    return out


async def per_request_us(target: Any, app: Any, n: int) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    start = time.perf_counter()
    for _ in range(n):
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/v1/penalty", "raw_path": b"/v1/penalty", "query_string": b"",
                 "root_path": "", "headers": list(HEADERS), "client": ("127.0.0.1", 50000),
                 "server": ("127.0.0.1", 8000), "state": {}, "app": app}
        await target(scope, receive, send)
    elapsed = time.perf_counter() - start
    assert statuses == [200] * n, set(statuses)
    return elapsed / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000, help="per layer and round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    settings = Settings(log_level="warning")
    logging.config.dictConfig(log_config(settings))
    app = create_app(settings)
    stack = layers(app)

    async def run() -> dict[str, float]:
        times: dict[str, list[float]] = {name: [] for name, _ in stack}
        for _, target in stack:
            await per_request_us(target, app, 200)
        for _ in range(args.rounds):
            for name, target in stack:
                times[name].append(await per_request_us(target, app, args.requests))
        return {name: statistics.median(t) for name, t in times.items()}

    us = uvloop.run(run())
    print(f"bench.stack: median µs per small request of {args.rounds} interleaved rounds of "
          f"{args.requests}\n\n| from this layer down | µs per request | this layer adds |\n|---|---:|---:|")
    names = list(us)
    for i, name in enumerate(names):
        below = us[names[i + 1]] if i + 1 < len(names) else 0.0
        print(f"| {name} | {us[name]:.1f} | {us[name] - below:.1f} |")


if __name__ == "__main__":
    main()
