"""The client's HTTP/1.1 transport: ``httpx.Client``'s API, the standard library's ``http.client``
underneath for ``http://`` URLs.

httpx's own transport reads an answer in 64 KiB pieces, each passed through httpcore and h11
and the pieces joined at the end; a Dense call with its 4.7 MB safetensors answer took 14.7 ms
that way against 10.6 ms on this transport, and 11.1 ms for a raw socket client sending the
same bytes (``python -m bench.client``).
``http.client`` reads a body of known length with one buffered read straight into the bytes
object it returns, and a request goes out as its pieces with ``sendall`` (a large array from its
own memory).  Everything above the bytes stays httpx's: timeouts, event hooks, redirects,
``Response`` objects, content decoding.

* Keep-alive: idle connections are kept per host and port (at most ``max_idle`` each); one
  whose socket has become readable while idle (the server closed it, or sent something
  unasked) is dropped before use.  A request on a reused connection that the server closed
  before answering is sent once more on a new one, if its body can be sent again (bytes, or
  pieces in a list): every route of the service is a function of its body, so resending
  cannot do anything twice.
* A body of known length (``Content-Length``) is read whole on the first read of the stream;
  any other body (chunked, e.g. ``/v1/train``'s Server-Sent Events) is read as it arrives.
* A request may carry the extension :data:`READ_INTO`: a function that takes the answer's
  length and returns a writable memoryview of that many bytes; a body of known length is
  then read into that memory and yielded as the view itself (the JSON client's kept buffer,
  :mod:`service.client.jsonbody`).  Read it with ``iter_bytes`` or ``iter_raw``: ``read()``
  copies the view into new bytes.
* ``https://`` URLs go to httpx's own transport (``fallback``).
* Errors are httpx's: ``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``, ``WriteError``,
  ``ReadError``, ``RemoteProtocolError``.
"""

from __future__ import annotations

import http.client
import select
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx

Timeouts = dict[str, float | None]
#: The request extension naming where a body of known length is read (see above).
READ_INTO = "penalty_service.read_into"
#: Bytes per ``sendall``: httpx's write timeout bounds each write, not a whole large array.
WRITE_BYTES = 1 << 20


class _Body(httpx.SyncByteStream):
    """An answer's body; the connection goes back to the pool once the body is read whole."""

    def __init__(self, response: http.client.HTTPResponse, release: Any, into: Any = None) -> None:
        self.response = response
        self.release = release
        self.into = into

    def __iter__(self) -> Iterator[bytes]:
        try:
            length = self.response.length
            if length is not None and not self.response.chunked:
                if self.into is not None and length:
                    yield self._read_into(self.into(length))
                    return
                data = self.response.read()  # one buffered read of exactly Content-Length bytes
                if data:
                    yield data
                return
            while chunk := self.response.read1(1 << 16):
                yield chunk
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out reading the answer") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise httpx.ReadError(f"reading the answer failed: {exc!r}") from exc

    def _read_into(self, view: memoryview) -> Any:
        got = 0
        while got < len(view):
            n = self.response.readinto(view[got:])
            if not n:
                raise http.client.IncompleteRead(bytes(view[:0]), len(view) - got)
            got += n
        return view

    def close(self) -> None:
        self.release(self.response)


class SocketTransport(httpx.BaseTransport):
    """``httpx.BaseTransport`` over ``http.client`` connections with ``TCP_NODELAY``."""

    def __init__(self, *, max_idle: int = 4, fallback: httpx.BaseTransport | None = None) -> None:
        self.max_idle = max_idle
        self.fallback = fallback if fallback is not None else httpx.HTTPTransport()
        self._idle: dict[tuple[str, int], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------- httpx API

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "http":
            return self.fallback.handle_request(request)
        address = (request.url.host, request.url.port or 80)
        chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
        response, release = self._round_trip(
            address, request.method, request.url.raw_path.decode("ascii"), request.headers.raw,
            request.stream, chunked=chunked, replayable=_replayable(request.stream),
            timeouts=request.extensions.get("timeout", {}))
        return httpx.Response(
            status_code=response.status,
            headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.getheaders()],
            stream=_Body(response, release, request.extensions.get(READ_INTO)),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": response.reason.encode("latin-1")},
        )

    def post(self, address: tuple[str, int], target: str, headers: list[tuple[bytes, bytes]],
             pieces: list[Any], timeouts: Timeouts, into: Any = None) -> tuple[int, str, dict[str, str], Any]:
        """A POST of ``pieces`` (their total as ``Content-Length``, which ``headers`` must
        hold) without httpx's per-request machinery (URL merging, cookies, hooks, the request
        and response objects: 0.2–0.6 ms of client CPU a Dense call, ``python -m
        bench.client``): ``(status, reason, headers by lower-case name, body)``, the body read
        whole (into ``into``'s memory as :data:`READ_INTO` says, when given).  Errors are the
        same httpx exceptions."""
        response, release = self._round_trip(address, "POST", target, headers, pieces, chunked=False,
                                             replayable=True, timeouts=timeouts)
        body = _Body(response, release, into)
        try:
            chunks = list(body)
        finally:
            body.close()
        return response.status, response.reason, {k.lower(): v for k, v in response.getheaders()}, joined(chunks)

    def _round_trip(self, address: tuple[str, int], method: str, target: str, headers: Any, body: Any, *,
                    chunked: bool, replayable: bool, timeouts: Timeouts) -> tuple[http.client.HTTPResponse, Any]:
        """Send a request and read its answer's head: ``(answer, release)``, ``release(answer)``
        once its body has been read.  A request the server dropped on a reused connection is
        sent once more on a new one if ``replayable``."""
        conn, reused = self._take(address, timeouts)
        while True:
            try:
                response, reusable = self._exchange(conn, method, target, headers, body, chunked, timeouts)
                break
            except _Closed as exc:
                conn.close()
                if not (reused and replayable):
                    raise httpx.RemoteProtocolError(
                        f"the server closed the connection without answering ({exc.__cause__!r})") from exc
                conn, reused = self._connect(address, timeouts), False  # it had closed the idle connection
            except BaseException:
                conn.close()
                raise
        return response, lambda r: self._release(address, conn, r, reusable)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()
        self.fallback.close()

    # ----------------------------------------------------------------------- connections

    def _take(self, address: tuple[str, int], timeouts: Timeouts) -> tuple[http.client.HTTPConnection, bool]:
        while True:
            with self._lock:
                conns = self._idle.get(address)
                conn = conns.pop() if conns else None
            if conn is None:
                return self._connect(address, timeouts), False
            if conn.sock is not None and not _readable(conn.sock):
                return conn, True
            conn.close()  # closed by the server while idle (readable: EOF), or in a bad state

    @staticmethod
    def _connect(address: tuple[str, int], timeouts: Timeouts) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(*address, timeout=timeouts.get("connect"))
        try:
            conn.connect()
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {address[0]}:{address[1]} timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {address[0]}:{address[1]}: {exc}") from exc
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _release(self, address: tuple[str, int], conn: http.client.HTTPConnection,
                 response: http.client.HTTPResponse, reusable: bool) -> None:
        """Back to the pool if the request went out whole, the answer was read whole and
        the connection stays open."""
        if not reusable or not response.isclosed() or response.will_close or conn.sock is None:
            conn.close()
            return
        with self._lock:
            conns = self._idle.setdefault(address, [])
            if len(conns) < self.max_idle:
                conns.append(conn)
                return
        conn.close()

    # ----------------------------------------------------------------------- one exchange

    @staticmethod
    def _exchange(conn: http.client.HTTPConnection, method: str, target: str, headers: Any, body: Any,
                  chunked: bool, timeouts: Timeouts) -> tuple[http.client.HTTPResponse, bool]:
        """Send the request, read the answer's head: ``(answer, connection reusable)``.

        A server may answer before the body has gone out (a 413 or 503 decided from the
        headers) and close: a failed send is followed by reading that answer, as httpx does."""
        assert conn.sock is not None
        sock = conn.sock
        sock.settimeout(timeouts.get("write"))
        failed: OSError | None = None
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            conn.endheaders()
            for piece in body:
                data = memoryview(piece).cast("B")
                if data.nbytes and chunked:
                    sock.sendall(b"%x\r\n" % data.nbytes)
                for start in range(0, data.nbytes, WRITE_BYTES):  # the write timeout applies per slice
                    sock.sendall(data[start:start + WRITE_BYTES])
                if data.nbytes and chunked:
                    sock.sendall(b"\r\n")
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except TimeoutError as exc:
            raise httpx.WriteTimeout(str(exc) or "timed out sending the request") from exc
        except OSError as exc:
            failed = exc
        sock.settimeout(timeouts.get("read"))
        try:
            return conn.getresponse(), failed is None
        except TimeoutError as exc:
            if failed is not None:
                raise httpx.WriteError(f"sending the request failed: {failed!r}") from failed
            raise httpx.ReadTimeout(str(exc) or "timed out waiting for the answer") from exc
        except (http.client.RemoteDisconnected, ConnectionError) as exc:
            raise _Closed() from exc
        except http.client.HTTPException as exc:
            raise httpx.RemoteProtocolError(f"the answer is not valid HTTP/1.1: {exc!r}") from exc
        except OSError as exc:
            raise httpx.ReadError(f"reading the answer failed: {exc!r}") from exc


def joined(pieces: list[Any]) -> Any:
    """A body read in pieces: one piece as it is (bytes, or the view :data:`READ_INTO`
    gave), none or several joined into bytes."""
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _replayable(stream: Any) -> bool:
    """Can the request's body be sent again?  Bytes can; so can httpx's stream over a list
    or tuple of pieces (what :class:`~service.client.Client` sends); an iterator or a
    generator cannot."""
    if isinstance(stream, httpx.ByteStream):
        return True
    return isinstance(getattr(stream, "_stream", None), list | tuple)


def _readable(sock: socket.socket) -> bool:
    """Has an idle connection something to read (the server's close, or bytes nobody asked
    for)?  ``poll`` where there is one: ``select`` fails on descriptors past 1023."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([sock], [], [], 0)[0])


class _Closed(Exception):
    """The server closed the connection without an answer."""
