"""The client's transport (``service.client.transport.SocketTransport``) against scripted
HTTP/1.1 peers on loopback: keep-alive, a connection the server closed, an answer before the
body, chunked bodies both ways, timeouts.  (``test_client.py`` runs it against the real
service.)"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pytest

from service.client import http_client
from service.client.transport import READ_INTO, SocketTransport

Script = Callable[[socket.socket, int], None]


class Peer:
    """A loopback server running ``script(conn, n)`` for its n-th accepted connection."""

    def __init__(self, script: Script) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.script = script
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                try:
                    self.script(conn, self.accepted)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def peer() -> Iterator[Callable[[Script], Peer]]:
    peers: list[Peer] = []

    def start(script: Script) -> Peer:
        peers.append(Peer(script))
        return peers[-1]

    yield start
    for p in peers:
        p.close()


def read_request(conn: socket.socket, buffer: bytearray) -> bytes:
    """One request with a Content-Length body (or none) off ``conn``; b"" at EOF."""
    while b"\r\n\r\n" not in buffer:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        buffer += chunk
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(buffer) < end + length:
        buffer += conn.recv(65536)
    request = bytes(buffer[: end + length])
    del buffer[: end + length]
    return request


def answer(body: bytes, *extra: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), b"".join(e + b"\r\n" for e in extra), body)


def client(port: int, timeout: float = 5.0) -> httpx.Client:
    return http_client(f"http://127.0.0.1:{port}", timeout=timeout)


def test_keep_alive_reuses_one_connection(peer: Callable[[Script], Peer]) -> None:
    def echo(conn: socket.socket, _: int) -> None:
        buffer = bytearray()
        while request := read_request(conn, buffer):
            conn.sendall(answer(request.split(b"\r\n\r\n", 1)[1]))

    p = peer(echo)
    with client(p.port) as http:
        bodies = [http.post("/x", content=b"a" * n).content for n in (0, 5, 300_000)]
    assert [len(b) for b in bodies] == [0, 5, 300_000]
    assert p.accepted == 1


def test_the_request_goes_out_with_nagle_disabled_and_its_pieces_in_order(peer: Callable[[Script], Peer]) -> None:
    seen: list[bytes] = []
    nodelay: list[int] = []

    def record(conn: socket.socket, _: int) -> None:
        seen.append(read_request(conn, bytearray()))
        conn.sendall(answer(b"ok"))

    p = peer(record)
    transport = SocketTransport()
    with httpx.Client(base_url=f"http://127.0.0.1:{p.port}", transport=transport) as http:
        pieces = [b"head", memoryview(np.arange(70_000, dtype=np.float32)).cast("B"), b"tail"]
        response = http.post("/v1/penalty?x=1", content=pieces, headers={"Content-Length": str(4 + 280_000 + 4)})
        idle = transport._idle[("127.0.0.1", p.port)]
        assert idle[0].sock is not None
        nodelay.append(idle[0].sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    assert response.content == b"ok"
    head, body = seen[0].split(b"\r\n\r\n", 1)
    assert head.startswith(b"POST /v1/penalty?x=1 HTTP/1.1\r\n")
    assert body == b"head" + np.arange(70_000, dtype=np.float32).tobytes() + b"tail"
    assert nodelay == [1]


def test_a_connection_the_server_closed_while_idle_is_replaced(peer: Callable[[Script], Peer]) -> None:
    def once(conn: socket.socket, _: int) -> None:  # answers one request, then closes
        read_request(conn, bytearray())
        conn.sendall(answer(b"ok"))

    p = peer(once)
    with client(p.port) as http:
        assert [http.post("/x", content=b"1").content for _ in range(3)] == [b"ok"] * 3
    assert p.accepted == 3


def test_a_request_the_server_drops_on_a_reused_connection_is_sent_once_more(peer: Callable[[Script], Peer]) -> None:
    """The server reads the second request and closes without answering (the race the idle
    check cannot see): the request goes out again on a new connection."""
    def drop_second(conn: socket.socket, n: int) -> None:
        buffer = bytearray()
        read_request(conn, buffer)
        conn.sendall(answer(b"first" if n == 1 else b"again"))
        if n == 1:
            read_request(conn, buffer)  # and close: no answer

    p = peer(drop_second)
    with client(p.port) as http:
        assert http.post("/x", content=b"1").content == b"first"
        assert http.post("/x", content=b"2").content == b"again"
    assert p.accepted == 2


def test_a_body_that_cannot_be_sent_again_is_not_resent(peer: Callable[[Script], Peer]) -> None:
    """The same drop with an iterator body: it is spent, so the request is an error rather
    than an empty body sent again on a new connection."""
    def drop_second(conn: socket.socket, n: int) -> None:
        buffer = bytearray()
        read_request(conn, buffer)
        conn.sendall(answer(b"first"))
        while b"\r\n\r\n" not in buffer:  # the second request's head, then close
            buffer += conn.recv(65536)

    p = peer(drop_second)
    with client(p.port) as http:
        assert http.post("/x", content=b"1").content == b"first"
        with pytest.raises(httpx.RemoteProtocolError, match="without answering"):
            http.post("/x", content=iter([b"payload-1", b"payload-2"]))
    assert p.accepted == 1


def test_chunk_sizes_count_bytes_of_any_buffer(peer: Callable[[Script], Peer]) -> None:
    """A float32 memoryview piece in a chunked body is framed by its byte count."""
    received: list[bytes] = []

    def record(conn: socket.socket, _: int) -> None:
        buffer = bytearray()
        while not buffer.endswith(b"0\r\n\r\n"):
            buffer += conn.recv(65536)
        received.append(bytes(buffer).split(b"\r\n\r\n", 1)[1])
        conn.sendall(answer(b"ok"))

    p = peer(record)
    floats = np.arange(3, dtype=np.float32)
    with client(p.port) as http:
        assert http.post("/x", content=iter([memoryview(floats)])).content == b"ok"
    assert received == [b"c\r\n" + floats.tobytes() + b"\r\n0\r\n\r\n"]


def test_a_new_connection_closed_without_an_answer_is_an_error(peer: Callable[[Script], Peer]) -> None:
    p = peer(lambda conn, _: read_request(conn, bytearray()) and None)
    with client(p.port) as http, pytest.raises(httpx.RemoteProtocolError, match="without answering"):
        http.post("/x", content=b"1")
    assert p.accepted == 1


@pytest.mark.parametrize("drain", [True, False])
def test_an_answer_sent_before_the_body_is_read(peer: Callable[[Script], Peer], drain: bool) -> None:
    """A 413 decided from the headers and sent while the body is still going out; the server
    then either reads (and drops) the rest, as the service does, or closes with it unread,
    so that the kernel resets the connection under the client's send.  Either way the
    client sees the 413, not a broken pipe, and does not reuse the connection."""
    def refuse(conn: socket.socket, _: int) -> None:
        buffer = bytearray()
        while b"\r\n\r\n" not in buffer:
            buffer += conn.recv(65536)
        conn.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!")
        if drain:
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(2)
            try:
                while conn.recv(65536):
                    pass
            except OSError:
                pass

    p = peer(refuse)
    transport = SocketTransport()
    with httpx.Client(base_url=f"http://127.0.0.1:{p.port}", transport=transport, timeout=5) as http:
        response = http.post("/x", content=bytes(32 << 20))
        assert (response.status_code, response.content) == (413, b"big!")
        assert transport._idle.get(("127.0.0.1", p.port), []) == []


def test_chunked_bodies_both_ways(peer: Callable[[Script], Peer]) -> None:
    received: list[bytes] = []

    def chunked(conn: socket.socket, _: int) -> None:
        buffer = bytearray()
        while not buffer.endswith(b"0\r\n\r\n"):
            buffer += conn.recv(65536)
        received.append(bytes(buffer).split(b"\r\n\r\n", 1)[1])
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n")
        for line in (b"event: progress\n", b"data: 1\n\n", b"event: result\ndata: 2\n\n"):
            conn.sendall(b"%x\r\n%s\r\n" % (len(line), line))
        conn.sendall(b"0\r\n\r\n")

    p = peer(chunked)
    with client(p.port) as http, http.stream("POST", "/x", content=iter([b"ab", b"", b"cde"])) as response:
        lines = list(response.iter_lines())
    assert received == [b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"]
    assert lines == ["event: progress", "data: 1", "", "event: result", "data: 2", ""]


def test_timeouts_and_a_refused_connection_are_httpx_errors(peer: Callable[[Script], Peer]) -> None:
    silent = threading.Event()
    p = peer(lambda conn, _: silent.wait(5) and None)
    with client(p.port, timeout=0.3) as http, pytest.raises(httpx.ReadTimeout):
        http.post("/x", content=b"1")
    silent.set()
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with client(port) as http, pytest.raises(httpx.ConnectError, match=f"127.0.0.1:{port}"):
        http.post("/x", content=b"1")


def test_https_goes_to_the_fallback_transport() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(200, content=b"tls")

    with httpx.Client(transport=SocketTransport(fallback=httpx.MockTransport(handler))) as http:
        assert http.get("https://example.test/healthz").content == b"tls"
    assert calls == ["https://example.test/healthz"]



def test_an_idle_connection_is_checked_with_poll_past_descriptor_1023() -> None:
    """The idle check must work for a socket whose descriptor is past select()'s 1023."""
    import os
    import resource

    from service.client.transport import _readable

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1100:
        pytest.skip(f"the descriptor limit ({hard}) is below 1100")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1100), hard))
    a, b = socket.socketpair()
    high = socket.socket(fileno=os.dup2(a.fileno(), 1050))
    try:
        assert _readable(high) is False
        b.sendall(b"x")
        assert _readable(high) is True
    finally:
        for s in (high, a, b):
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_an_answer_is_read_into_the_memory_the_request_names(peer: Callable[[Script], Peer]) -> None:
    """READ_INTO: the body is read into the caller's view and yielded as that view; the
    connection then goes back to the pool as after any answer read whole."""
    def echo(conn: socket.socket, _: int) -> None:
        buffer = bytearray()
        while request := read_request(conn, buffer):
            conn.sendall(answer(request.split(b"\r\n\r\n", 1)[1]))

    kept = bytearray(400_000)
    asked: list[int] = []

    def into(n: int) -> memoryview:
        asked.append(n)
        return memoryview(kept)[:n]

    p = peer(echo)
    body = np.arange(75_000, dtype=np.float32).tobytes()
    with client(p.port) as http:
        with http.stream("POST", "/x", content=body, extensions={READ_INTO: into}) as response:
            pieces = list(response.iter_bytes())
        assert len(pieces) == 1 and isinstance(pieces[0], memoryview) and pieces[0].obj is kept
        assert bytes(pieces[0]) == body and asked == [300_000]
        assert http.post("/x", content=b"again", extensions={READ_INTO: into}).content == b"again"  # read() copies
    assert p.accepted == 1


def test_an_answer_cut_short_while_read_into_memory_is_a_read_error(peer: Callable[[Script], Peer]) -> None:
    def short(conn: socket.socket, _: int) -> None:
        read_request(conn, bytearray())
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 600)

    p = peer(short)
    with client(p.port) as http, pytest.raises(httpx.ReadError, match="IncompleteRead"):
        http.post("/x", content=b"1", extensions={READ_INTO: lambda n: memoryview(bytearray(n))})


# --------------------------------------------------------------------------- Client's direct POSTs


def test_the_client_posts_directly_on_its_own_transport(peer: Callable[[Script], Peer]) -> None:
    """``Client(base)`` sends its POSTs through the transport itself, past httpx.Client:
    the same request line and headers a server needs (the base URL's path kept), one
    keep-alive connection, and the answer read as before."""
    import orjson

    from service.client import Client
    from service.wire import safetensors

    seen: list[bytes] = []
    answer_body = b"".join(bytes(p) for p in safetensors.parts(
        {"gradient": np.arange(3, dtype=np.float32)},
        {"json": orjson.dumps({"penalty": 1.5, "regularizer": {"type": "l1", "l1": 0.5}}).decode()}))

    def record(conn: socket.socket, _: int) -> None:
        buffer = bytearray()
        while request := read_request(conn, buffer):
            seen.append(request)
            conn.sendall(answer(answer_body, b"Content-Type: " + safetensors.MEDIA_TYPE.encode()))

    p = peer(record)
    with Client(f"http://127.0.0.1:{p.port}/prefix/") as client:
        assert client._direct is not None
        results = [client.penalty(np.ones(3, np.float32), {"type": "l1", "l1": 0.5}) for _ in range(3)]
    assert p.accepted == 1 and len(seen) == 3
    assert [r.penalty for r in results] == [1.5] * 3
    assert results[0].gradient is not None and results[0].gradient.tolist() == [0.0, 1.0, 2.0]
    head, body = seen[0].split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /prefix/v1/penalty HTTP/1.1"
    fields = {k.lower(): v for k, _, v in (line.partition(b": ") for line in lines[1:])}
    assert fields[b"host"] == b"127.0.0.1:%d" % p.port
    assert fields[b"content-type"] == fields[b"accept"] == safetensors.MEDIA_TYPE.encode()
    assert int(fields[b"content-length"]) == len(body)
    tensors, metadata = safetensors.read(body)
    assert tensors["tensor"].tolist() == [1.0, 1.0, 1.0] and "regularizer" in metadata["json"]


@pytest.mark.parametrize(("status", "body", "code", "message"), [
    (422, b'{"error": {"code": "invalid_spec", "message": "no such regularizer", "details": []}}',
     "invalid_spec", "no such regularizer"),
    (502, b"upstream went away", "http_error", "upstream went away"),
    (503, b"", "http_error", "Service Unavailable"),
])
def test_an_error_answer_on_the_direct_path_raises_service_error(
        peer: Callable[[Script], Peer], status: int, body: bytes, code: str, message: str) -> None:
    from service.client import Client, ServiceError

    def refuse(conn: socket.socket, _: int) -> None:
        read_request(conn, bytearray())
        reason = {422: b"Unprocessable Entity", 502: b"Bad Gateway", 503: b"Service Unavailable"}[status]
        conn.sendall(b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\n\r\n%s" % (status, reason, len(body), body))

    p = peer(refuse)
    for form in ("safetensors", "json"):
        with Client(f"http://127.0.0.1:{p.port}", format=form) as client, pytest.raises(ServiceError) as caught:  # type: ignore[arg-type]
            client.penalty(np.ones(2, np.float32), "l1")
        assert (caught.value.status, caught.value.code, caught.value.message) == (status, code, message)


def test_the_direct_path_keeps_the_clients_timeout(peer: Callable[[Script], Peer]) -> None:
    from service.client import Client

    def silent(conn: socket.socket, _: int) -> None:
        read_request(conn, bytearray())
        conn.recv(1)  # holds the connection open and answers nothing

    p = peer(silent)
    with Client(f"http://127.0.0.1:{p.port}", timeout=0.3) as client, pytest.raises(httpx.ReadTimeout):
        client.penalty(np.ones(2, np.float32), "l1")


def test_an_https_base_url_or_a_given_http_client_goes_through_httpx() -> None:
    from service.client import Client, http_client

    assert Client("https://example.invalid")._direct is None
    assert Client(http=http_client("http://127.0.0.1:1"))._direct is None
    assert Client("http://127.0.0.1:1")._direct is not None
