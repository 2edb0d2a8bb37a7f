"""The header-block bound and the envelope refusals of ``service.server.ServiceProtocol``
on a real ``python -m service`` (loopback subprocess, PENALTY_MAX_HEADER_BYTES=2048).

A block's size is counted in canonical form (request line, ``name: value\\r\\n`` lines, the
blank line): the blocks built here are sent that way, so it is their size on the wire."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.test_server import Server, start, stop

BOUND = 2048
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start(tmp_path_factory.mktemp("protocol"), PENALTY_MAX_HEADER_BYTES=str(BOUND))
    yield s
    stop(s)


def block(size: int, *, close: bool = True, start: bytes = b"GET /healthz HTTP/1.1\r\n") -> bytes:
    """A complete header block of exactly ``size`` bytes (padded by an X-Pad header)."""
    fixed = start + b"Host: x\r\n" + (b"Connection: close\r\n" if close else b"") + b"X-Pad: \r\n\r\n"
    assert size >= len(fixed)
    return fixed[:-4] + b"p" * (size - len(fixed)) + b"\r\n\r\n"


def responses(data: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each HTTP/1.1 response in ``data`` (every one has a Content-Length)."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(int(v) for k, _, v in (line.partition(b": ") for line in lines[1:]) if k.lower() == b"content-length")
        out.append((int(lines[0].split()[1]), rest[:length]))
        data = rest[length:]
    return out


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_one(sock: socket.socket) -> bytes:
    """Exactly one response (its head and its Content-Length body) off ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "closed before a response"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(rest) < length:
        rest += sock.recv(65536)
    assert len(rest) == length, "more than one response"
    return head + b"\r\n\r\n" + rest


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def is_431(answer: list[tuple[int, bytes]]) -> bool:
    return len(answer) == 1 and answer[0][0] == 431 and json.loads(answer[0][1]) == {"error": {
        "code": "request_header_fields_too_large",
        "message": "the request's header block is larger than the server accepts (PENALTY_MAX_HEADER_BYTES)",
        "details": []}}


def test_a_block_trickled_byte_by_byte_is_refused_at_one_byte_past_the_bound(server: Server) -> None:
    """The block never ends: after BOUND bytes the connection is still open and unanswered;
    byte BOUND + 1 brings the 431 and the close."""
    never_ending = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * BOUND
    with connect(server) as sock:
        for i in range(BOUND):
            sock.send(never_ending[i:i + 1])
        time.sleep(0.3)
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(1)
        sock.settimeout(10)
        sock.send(never_ending[BOUND:BOUND + 1])
        assert is_431(responses(read_all(sock)))


@pytest.mark.parametrize("piece", [BOUND + 1, 100, 1], ids=["whole", "100-byte pieces", "1-byte pieces"])
def test_a_block_exactly_at_the_bound_passes_and_one_byte_more_is_431(server: Server, piece: int) -> None:
    for size, ok in ((BOUND, True), (BOUND + 1, False)):
        data = block(size)
        with connect(server) as sock:
            for i in range(0, len(data), piece):
                sock.send(data[i:i + piece])
            answer = responses(read_all(sock))
        if ok:
            assert [status for status, _ in answer] == [200]
        else:
            assert is_431(answer)


def test_many_small_headers_adding_up_past_the_bound_are_431(server: Server) -> None:
    headers = b"".join(b"X-%d: v\r\n" % i for i in range(400))
    assert len(headers) > BOUND and all(len(line) < 12 for line in headers.split(b"\r\n"))
    assert is_431(responses(server.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")))


def test_a_large_body_sent_with_its_headers_does_not_count_toward_the_bound(server: Server) -> None:
    n = 20000
    body = json.dumps({"tensor": {"shape": [n], "datatype": "FP64", "data": [1] * n},
                       "regularizer": {"type": "l1", "l1": 1.0}, "return_gradient": False}).encode()
    head = (b"POST /v1/penalty HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    assert len(body) > 10 * BOUND
    [(status, answer)] = responses(server.raw(head + body))  # one send: the first read holds both
    assert (status, json.loads(answer)["penalty"]) == (200, n)


def test_pipelined_requests_are_each_answered_and_each_counted_on_its_own(server: Server) -> None:
    """Two blocks of exactly BOUND bytes in one send (4096 bytes together): both answered."""
    answer = responses(server.raw(block(BOUND, close=False) + block(BOUND)))
    assert [status for status, _ in answer] == [200, 200]


def test_a_pipelined_request_over_the_bound_is_431_after_the_first_is_answered(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(block(100, close=False))
        first = read_one(sock)  # the first request is answered before the second is sent
        sock.sendall(block(BOUND + 1))
        answer = responses(first + read_all(sock))
    assert answer[0][0] == 200 and is_431(answer[1:])



def test_a_block_begun_in_the_read_that_ended_the_previous_request(server: Server) -> None:
    """The second block starts in the first's send: at the bound it passes; never ending, it
    is refused within one read's slack (counting resumes with the next read)."""
    second = block(BOUND)
    with connect(server) as sock:
        sock.sendall(block(BOUND, close=False) + second[:BOUND // 2])  # 3072 bytes, one read
        time.sleep(0.3)
        sock.sendall(second[BOUND // 2:])
        assert [status for status, _ in responses(read_all(sock))] == [200, 200]
    never_ending = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * (2 * BOUND)
    with connect(server) as sock:
        sock.sendall(block(100, close=False) + never_ending[:BOUND // 2])
        time.sleep(0.3)
        first = sock.recv(65536)  # the first request's answer, already here
        for i in range(BOUND // 2, len(never_ending), 64):
            sock.send(never_ending[i:i + 64])
            if select.select([sock], [], [], 0.02)[0]:  # answered: send no more (no reset)
                break
        answer = responses(first + read_all(sock))
    assert answer[0][0] == 200 and is_431(answer[1:])


CHUNKED = (b"POST /v1/penalty HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n")


def chunked(body: bytes, size: int) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size))


def send_until_answered(sock: socket.socket, data: bytes, piece: int = 256) -> bytes:
    """Send ``data`` in pieces, stopping once an answer is readable (no reset); the answer."""
    for i in range(0, len(data), piece):
        sock.send(data[i:i + piece])
        if select.select([sock], [], [], 0.01)[0]:
            break
    return read_all(sock)


@pytest.mark.parametrize("trailer", [b"".join(b"t%d: v\r\n" % i for i in range(2000)), b"X-T: " + b"a" * 20000],
                         ids=["many trailer lines", "one endless trailer value"])
def test_trailers_after_a_chunked_body_are_bounded(server: Server, trailer: bytes) -> None:
    """A chunked body's trailer fields are header fields the parser would otherwise keep
    without limit: past the bound they are a 431, long before they end."""
    body = json.dumps({"tensor": [1.0, -2.0], "regularizer": "l1"}).encode()
    with connect(server) as sock:
        answer = send_until_answered(sock, CHUNKED + chunked(body, 8) + b"0\r\n" + trailer)
    assert is_431(responses(answer))


def test_a_body_of_many_small_chunks_and_short_trailers_is_served(server: Server) -> None:
    """Framing grows with the chunks (64 bytes each are allowed beyond the bound): 1,260
    chunks of 8 bytes carry 6.3 KB of size lines and CRLFs, three times the bound, and pass;
    trailer fields within the bound are accepted and dropped."""
    n = 2000
    body = json.dumps({"tensor": [1.0] * n, "regularizer": {"type": "l1", "l1": 1.0}, "return_gradient": False}).encode()
    framed = chunked(body, 8)
    assert len(framed) - len(body) > 3 * BOUND
    with connect(server) as sock:
        sock.sendall(CHUNKED + framed + b"0\r\nX-Checksum: abc\r\n\r\n")
        [(status, answer)] = responses(read_all(sock))
    assert (status, json.loads(answer)["penalty"]) == (200, n)


@pytest.mark.parametrize("data", [
    b"GET /healthz HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    b"GET /healthz HTTP/7.7\r\nHost: x\r\n\r\n",
    b"G(T /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nBad Header: x\r\n\r\n",
    b"POST /v1/penalty HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}",
], ids=["request line", "version", "method", "header name", "two lengths"])
def test_malformed_requests_are_400_in_the_envelope(server: Server, data: bytes) -> None:
    assert responses(server.raw(data)) == [(400, b'{"error":{"code":"bad_request","message":'
                                                  b'"the request is not valid HTTP/1.1","details":[]}}')]


def test_the_bound_reaches_every_worker(tmp_path: Path) -> None:
    """Spawned workers get the bound with their config (``--workers 2``: every worker is a
    spawned process, whichever of them takes each connection)."""
    s = start(tmp_path, PENALTY_MAX_HEADER_BYTES=str(BOUND), PENALTY_WORKERS="2")
    try:
        for _ in range(4):
            assert [status for status, _ in responses(s.raw(block(BOUND)))] == [200]
            assert is_431(responses(s.raw(block(BOUND + 1))))
    finally:
        stop(s)


def test_body_pieces_are_handed_over_without_copies() -> None:
    """What uvicorn's ``receive`` takes, ``bytes(cycle.body)``, is the parser's own piece when
    it is the only one buffered, and one join of the pieces otherwise (uvicorn appended
    each piece to a bytearray and copied that again)."""
    from service.server import BodyChunks

    piece = b"x" * 100_000
    one = BodyChunks()
    one.add(piece)
    assert bytes(one) is piece and one.size == 100_000
    several = BodyChunks()
    for part in (b"ab", b"", b"cd" * 40_000):
        several.add(part)
    assert bytes(several) == b"ab" + b"cd" * 40_000 and several.size == 80_002
    assert bytes(BodyChunks()) == b""


def test_a_large_body_in_many_reads_arrives_whole(server: Server) -> None:
    """A 3 MB body sent in uneven pieces (the server reads it over many reads, pausing past
    64 KiB buffered) is parsed exactly: the answer's gradient is the sent tensor's sign."""
    import numpy as np
    import orjson

    from service.wire import safetensors

    tensor = np.random.default_rng(7).normal(size=750_000).astype(np.float32)
    tensors, rest = safetensors.flatten({"tensor": tensor, "regularizer": {"type": "l1", "l1": 1.0}})
    body = b"".join(bytes(p) for p in safetensors.parts(tensors, {"json": orjson.dumps(rest).decode()}))
    head = (b"POST /v1/penalty HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: %s\r\nAccept: %s\r\n"
            b"Content-Length: %d\r\n\r\n" % (safetensors.MEDIA_TYPE.encode(), safetensors.MEDIA_TYPE.encode(), len(body)))
    with connect(server) as sock:
        sock.sendall(head)
        at, size = 0, 1
        while at < len(body):
            sock.sendall(body[at:at + size])
            at, size = at + size, min(size * 3, 300_000)
        answer = read_all(sock)
    status, payload = responses(answer)[0]
    assert status == 200
    gradient = safetensors.read(payload)[0]["gradient"]
    assert gradient.tobytes() == np.sign(tensor).tobytes()
