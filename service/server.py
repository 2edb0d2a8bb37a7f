"""The HTTP/1.1 protocol ``python -m service`` runs: uvicorn's h11 protocol, with the
requests it refuses itself answered in the service's error envelope.

uvicorn answers a request it cannot parse (a malformed request line or header, a
header block over ``h11_max_incomplete_event_size``) with a plain-text 400 before any
application code runs.  This subclass keeps uvicorn's behaviour (close the connection)
but writes ``{"error": {...}}`` as JSON, with h11's status hint: **431** for a header
block over ``PENALTY_MAX_HEADER_BYTES``, 400 otherwise.  The h11 protocol is used (not
httptools) because only h11 bounds the header block: httptools reads headers of any size.
"""

from __future__ import annotations

from typing import Any

import h11
import orjson
from uvicorn.protocols.http.h11_impl import H11Protocol

MESSAGES = {
    431: "the request's header block is larger than the server accepts (PENALTY_MAX_HEADER_BYTES)",
    400: "the request is not valid HTTP/1.1",
}


class _HintedConnection(h11.Connection):
    """An ``h11.Connection`` that remembers the status hint of the last protocol error."""

    last_status = 400

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.last_status = exc.error_status_hint if exc.error_status_hint in MESSAGES else 400
            raise


def error_body(status: int) -> bytes:
    code = "request_header_fields_too_large" if status == 431 else "bad_request"
    return orjson.dumps({"error": {"code": code, "message": MESSAGES[status], "details": []}})


class ServiceH11Protocol(H11Protocol):
    """uvicorn's h11 protocol whose own error responses are the JSON envelope."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _HintedConnection(h11.SERVER, self.config.h11_max_incomplete_event_size or 16384)

    def send_400_response(self, msg: str) -> None:
        status = self.conn.last_status if isinstance(self.conn, _HintedConnection) else 400
        body = error_body(status)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            for event in (h11.Response(status_code=status, headers=headers), h11.Data(data=body), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
        self.transport.close()
