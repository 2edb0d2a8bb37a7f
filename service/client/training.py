"""Training runs from Python: ``POST /v1/train`` streamed as Server-Sent Events.

    >>> result = train("http://127.0.0.1:8000", request,                # doctest: +SKIP
    ...                on_progress=lambda p: print(p["step"], p["steps"]))
    >>> result["epoch_losses"]["total"]                                 # doctest: +SKIP

``stream(...)`` is the same run as a generator: it yields each ``progress`` event's data
and returns the ``result`` event's body (``StopIteration.value``).  An ``error`` event or
an error response raises :class:`TrainError` (a :class:`~service.client.ServiceError`)
carrying the error envelope.  Only httpx is needed (no server code is imported).
:meth:`service.client.Client.train` is the same call on a client's connection.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

import httpx

from service.client import ServiceError

Progress = dict[str, Any]
Result = dict[str, Any]


class TrainError(ServiceError):
    """The service refused or stopped the run; ``error`` is the envelope's ``error`` object
    (``code``, ``message`` and ``details`` as on every :class:`ServiceError`)."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(status, {"error": error})
        self.error = error


def events(lines: Iterable[str]) -> Iterator[tuple[str, Any]]:
    """``(event, data)`` pairs of an SSE stream given line by line (data decoded as JSON)."""
    name, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
    if data:
        yield name, json.loads("\n".join(data))


def _error_of(response: httpx.Response) -> TrainError:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        error = {"code": "http_error", "message": response.text[:500], "details": []}
    return TrainError(response.status_code, error)


def stream(base_url: str, request: dict[str, Any], *, http: httpx.Client | None = None,
           timeout: float = 300.0) -> Generator[Progress, None, Result]:
    """Yield the run's progress events; return its result."""
    own = http is None
    client = http if http is not None else httpx.Client(timeout=timeout)
    try:
        url = base_url.rstrip("/") + "/v1/train"
        with client.stream("POST", url, json=request, headers={"Accept": "text/event-stream"}) as response:
            if response.status_code != 200:
                response.read()
                raise _error_of(response)
            for name, data in events(response.iter_lines()):
                if name == "progress":
                    yield data
                elif name == "result":
                    result: Result = data
                    return result
                elif name == "error":
                    raise TrainError(200, data["error"])
        raise TrainError(200, {"code": "incomplete_stream", "message": "the stream ended without a result",
                               "details": []})
    finally:
        if own:
            client.close()


def train(base_url: str, request: dict[str, Any], *, on_progress: Callable[[Progress], None] | None = None,
          http: httpx.Client | None = None) -> Result:
    """Run ``request`` on the service at ``base_url``; call ``on_progress`` with each progress
    event; return the result (the same body ``POST /v1/train`` answers as JSON)."""
    run = stream(base_url, request, http=http)
    while True:
        try:
            progress = next(run)
        except StopIteration as done:
            result: Result = done.value
            return result
        if on_progress is not None:
            on_progress(progress)
