"""The HTTP/1.1 protocol ``python -m service`` runs: uvicorn's httptools protocol with the
service's own bound on the header block, and the requests it refuses itself answered in the
service's error envelope.

httptools (llhttp) parses fast but bounds nothing: it accumulates a header name or value
that has not ended yet in Python, without limit, and uvicorn has no setting for it.  This
subclass counts the header block itself, against ``max_header_bytes``
(``PENALTY_MAX_HEADER_BYTES``, carried by :class:`ServiceConfig` so that spawned workers get
it too):

* a block that ends is measured exactly from what the parser reports, in canonical form::

      size = len(method) + 1 + len(target) + 1 + len("HTTP/1.1") + 2     # request line
           + sum(len(name) + 2 + len(value) + 2 for each header)        # "name: value\\r\\n"
           + 2                                                           # blank line

  e.g. ``GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n`` is 16 + 9 + 2 = 27 bytes; for a block
  sent that way (one space after each colon) it is exactly its size on the wire.  A block
  with ``size > max_header_bytes`` is refused before the app sees it;
* a block that has not ended yet is measured by the bytes received for it: every read that
  leaves the headers still incomplete adds its whole length, so a header trickled one byte
  at a time is refused as soon as ``max_header_bytes + 1`` bytes of it have arrived.  The
  read in which a pipelined request begins after the previous one ended counts only what
  the parser reported of the new block (its offset in that read is unknown): at most one
  read (asyncio reads up to 256 KiB) goes uncounted, so memory stays bounded;
* body bytes never count, and each pipelined request gets its own count;
* what a body carries besides its bytes — a chunked body's size lines and its trailer
  fields, which the parser would also accumulate without limit — is bounded the same way
  (``max_header_bytes`` plus 64 bytes per chunk; trailer fields are dropped, not kept).

Refusals are JSON (``error_body``) followed by closing the connection: **431** for a header
block over the bound, **400** for anything the parser rejects (uvicorn would answer plain
text).  If another response is owed first on the connection (an earlier pipelined request
still being answered, or the app already answering a request whose body then turns out
malformed), the connection is only closed: a response written then would answer the wrong
request.  Everything else — keep-alive, ``limit_concurrency``, graceful shutdown, the
absent ``Server`` header — is uvicorn's own.  There is still no timeout on reading a header
block (uvicorn's keep-alive timer runs only between requests).
"""

from __future__ import annotations

from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

MESSAGES = {
    431: "the request's header block is larger than the server accepts (PENALTY_MAX_HEADER_BYTES)",
    400: "the request is not valid HTTP/1.1",
}


def error_body(status: int) -> bytes:
    code = "request_header_fields_too_large" if status == 431 else "bad_request"
    return orjson.dumps({"error": {"code": code, "message": MESSAGES[status], "details": []}})


class ServiceConfig(uvicorn.Config):
    """uvicorn's ``Config`` plus ``max_header_bytes``, the bound :class:`ServiceProtocol`
    puts on each request's header block (pickled with the config into spawned workers)."""

    def __init__(self, app: Any, *, max_header_bytes: int, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.max_header_bytes = max_header_bytes


#: Bytes of framing a chunk may carry beyond ``max_header_bytes`` per body: its size line
#: (up to 16 hex digits and CRLF) and the CRLF after its data, with room to spare.
FRAMING_PER_CHUNK = 64


class BodyChunks(list[bytes]):
    """A request's body bytes received and not yet taken by the app, kept as the parser's
    own pieces.  uvicorn appends every piece to a ``bytearray`` and its ``receive`` copies
    that into a ``bytes``: two copies of every body byte before the app joins its
    messages.  Here a piece is kept as it is, and ``bytes()`` of it (what ``receive`` does)
    is the piece itself when it is the only one, else one join."""

    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def add(self, piece: bytes) -> None:
        self.append(piece)
        self.size += len(piece)

    def __bytes__(self) -> bytes:
        return self[0] if len(self) == 1 and type(self[0]) is bytes else b"".join(self)


class _HeaderBlockTooLarge(Exception):
    """Raised from a parser callback to stop parsing a block over the bound."""


class ServiceProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bounded header block and JSON error responses."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        if not isinstance(config, ServiceConfig):
            raise TypeError("ServiceProtocol needs a ServiceConfig (it carries max_header_bytes)")
        super().__init__(config, *args, **kwargs)
        self.max_header_bytes = config.max_header_bytes
        self.refusal = 400          # the status send_400_response answers with
        self.head_open = True       # the current (or next) request's headers have not ended
        self.head_bytes = 0         # bytes received for that header block so far
        self.message_begun = False  # the parser has begun a request since the last one ended
        self.message_ended = False  # a request ended during the current read
        self.framing_bytes = 0      # bytes of the current body that are not body: chunk lines, trailers
        self.chunks = 0             # chunks of the current body so far
        self.read_body = 0          # body bytes the parser reported during the current read
        self.head_ended = False     # the current request's header block ended during the current read

    def data_received(self, data: bytes) -> None:
        self.message_ended, self.read_body, self.head_ended = False, 0, False
        super().data_received(data)
        if self.transport.is_closing():
            return
        if not self.head_open:
            self.count_framing(len(data))
            return
        if self.message_ended:
            self.head_bytes = self.reported_head_bytes() if self.message_begun else 0
        else:
            self.head_bytes += len(data)
        if self.head_bytes > self.max_header_bytes:
            self.logger.warning("Unfinished header block over %d bytes.", self.max_header_bytes)
            self.refusal = 431
            self.send_400_response("")

    def count_framing(self, received: int) -> None:
        """Bound what a body carries besides its bytes: a chunked body's size lines and its
        trailer fields, which the parser would otherwise accumulate without limit.  A read
        adds what it held beyond the body bytes the parser reported; past
        ``max_header_bytes`` plus :data:`FRAMING_PER_CHUNK` per chunk it is a 431.  The read
        in which the header block ended is not counted (its header bytes were): one read of
        slack, as for a pipelined request."""
        if self.head_ended:
            return
        self.framing_bytes += received - self.read_body
        if self.framing_bytes > self.max_header_bytes + FRAMING_PER_CHUNK * self.chunks:
            self.logger.warning("Chunk framing and trailers over %d bytes.", self.max_header_bytes)
            self.refusal = 431
            self.send_400_response("")

    def on_body(self, body: bytes) -> None:
        """uvicorn's, with the body kept in :class:`BodyChunks` (the same wake-up per piece
        and the same pause past ``HIGH_WATER_LIMIT`` buffered bytes)."""
        self.read_body += len(body)
        cycle = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        chunks: Any = cycle.body
        if not isinstance(chunks, BodyChunks):  # uvicorn's empty bytearray, set after each receive
            chunks = BodyChunks()
            cycle.body = chunks  # receive() takes bytes() of it
        chunks.add(body)
        if chunks.size > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_chunk_header(self) -> None:
        self.chunks += 1

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_open:  # a trailer field after a chunked body: counted, not kept
            super().on_header(name, value)

    def reported_head_bytes(self) -> int:
        """The header block's canonical size as far as the parser has reported it (the
        method and the ``HTTP/1.1`` only once known)."""
        lines = sum(len(name) + len(value) for name, value in self.headers) + 4 * len(self.headers)
        return len(self.url) + lines

    def on_message_begin(self) -> None:
        self.message_begun = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        size = len(self.parser.get_method()) + 12 + self.reported_head_bytes() + 2
        if size > self.max_header_bytes:
            self.logger.warning("Header block of %d bytes, over %d.", size, self.max_header_bytes)
            self.refusal = 431
            raise _HeaderBlockTooLarge  # feed_data raises it as an HttpParserError: send_400_response
        self.head_open, self.head_ended = False, True
        self.framing_bytes = self.chunks = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.head_open, self.head_bytes = True, 0
        self.message_begun, self.message_ended = False, True
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """Answer ``self.refusal`` (400 unless a bound set 431) in the envelope and close;
        only close if another response is owed first on this connection."""
        cycle = self.cycle
        if self.head_open:  # a new request's header block: no earlier response may be owed
            free = cycle is None or cycle.response_complete
        else:  # the current request's body: its own response must not have begun
            free = cycle is None or (not cycle.response_started and not self.pipeline)
        if free:
            body = error_body(self.refusal)
            content = [STATUS_LINE[self.refusal]]
            for name, value in self.server_state.default_headers:
                content += [name, b": ", value, b"\r\n"]
            content += [b"content-type: application/json\r\ncontent-length: ", str(len(body)).encode(),
                        b"\r\nconnection: close\r\n\r\n", body]
            self.transport.write(b"".join(content))
        self.transport.close()
