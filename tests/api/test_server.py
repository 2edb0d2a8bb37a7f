"""``python -m service`` as a real server: flags, its own protocol errors, work that is
refused without being done, JSON logs, graceful shutdown (subprocesses on loopback)."""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.deploy.server import clean_env, free_port

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


def run_main(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service", *argv], capture_output=True, text=True, cwd=ROOT,
                          env=clean_env({"PYTHONPATH": str(ROOT), **env}), timeout=60)


@pytest.mark.parametrize(("argv", "env", "line"), [
    (["--port", "70000"], {}, "python -m service: invalid settings: --port=70000: Input should be less than or equal to 65535"),
    (["--port", "http"], {}, "python -m service: invalid settings: --port=http: Input should be a valid integer, "
                             "unable to parse string as an integer"),
    (["--workers", "0"], {}, "python -m service: invalid settings: --workers=0: Input should be greater than or equal to 1"),
    (["--log-level", "loud"], {}, "python -m service: invalid settings: --log-level=loud: Input should be 'critical', "
                                  "'error', 'warning', 'info', 'debug' or 'trace'"),
    ([], {"PENALTY_MAX_LAYERS": "0"}, "python -m service: invalid settings: PENALTY_MAX_LAYERS=0: Input should be "
                                      "greater than or equal to 1"),
    ([], {"PENALTY_PORT": "0"}, "python -m service: invalid settings: PENALTY_PORT=0: Input should be greater "
                                "than or equal to 1"),
    ([], {"PENALTY_MAX_BODY_BYTES": str(200 * MiB)}, "python -m service: invalid settings: settings: "
     "PENALTY_MAX_INFLIGHT_BYTES (1073741824) is below one largest body's memory, PENALTY_MAX_BODY_BYTES × "
     "PENALTY_BODY_MEMORY_FACTOR = 1468006400: no such request could ever be admitted"),
])
def test_a_bad_flag_or_variable_exits_2_with_one_line(argv: list[str], env: dict[str, str], line: str) -> None:
    result = run_main(*argv, **env)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", line + "\n")


# --- one server for the rest -----------------------------------------------------------------


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], base: str, port: int, log: Path) -> None:
        self.proc, self.base, self.port, self.log = proc, base, port, log

    def peak_rss(self) -> int:
        """VmHWM: the process's peak resident memory so far, in bytes."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM")

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(self.base + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def raw(self, data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(data)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


def start(tmp: Path, **env: str) -> Server:
    port = free_port()
    log = tmp / f"server-{port}.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "service", "--port", str(port)], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env=clean_env({"PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1", **env}))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2):
                return Server(proc, base, port, log)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)


def stop(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start(tmp_path_factory.mktemp("server"), PENALTY_MAX_HEADER_BYTES="8192", PENALTY_MAX_LAYRES="3")
    yield s
    stop(s)


def b64_tensor(x: np.ndarray) -> dict[str, Any]:
    return {"shape": list(x.shape), "datatype": "FP32", "b64": base64.b64encode(x.tobytes()).decode()}


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(20000, 3), (10**6, 2)])
def test_expensive_orthogonal_is_413_without_the_memory(server: Server, shape: tuple[int, int]) -> None:
    body = {"tensor": b64_tensor(np.ones(shape, np.float32)), "regularizer": "orthogonal_regularizer"}
    before = server.peak_rss()
    status, answer = server.post("/v1/penalty", body)
    assert (status, answer["error"]["code"]) == (413, "too_expensive")
    assert server.peak_rss() - before < 100 * MiB


@pytest.mark.slow
@pytest.mark.parametrize("n", [20000, 10**6])
def test_one_column_orthogonal_is_answered_without_the_n_by_n_matrix(server: Server, n: int) -> None:
    x = np.where(np.arange(n) % 2 == 0, 1.5, -0.5).astype(np.float32).reshape(n, 1)
    body = {"tensor": b64_tensor(x), "regularizer": {"type": "orthogonal", "factor": 1.0}, "encoding": "b64"}
    before = server.peak_rss()
    status, answer = server.post("/v1/penalty", body)
    assert (status, answer["penalty"]) == (200, pytest.approx(1.0, rel=1e-6))
    gradient = np.frombuffer(base64.b64decode(answer["gradient"]["b64"]), np.float32)
    assert gradient.shape == (n,) and np.all(np.abs(gradient) < 1e-6)
    assert server.peak_rss() - before < 100 * MiB


@pytest.mark.slow
def test_an_oversized_header_block_is_431_in_the_envelope(server: Server) -> None:
    """40 KB of a block not yet ended is refused as soon as they arrive, so a 128 MiB
    header is never read (tests/api/test_protocol.py: the exact accounting)."""
    answer = server.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ")
    assert json.loads(body)["error"]["code"] == "request_header_fields_too_large"


@pytest.mark.slow
def test_malformed_http_is_400_in_the_envelope(server: Server) -> None:
    head, _, body = server.raw(b"NOT HTTP AT ALL\r\n\r\n").partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(body) == {"error": {"code": "bad_request", "message": "the request is not valid HTTP/1.1",
                                          "details": []}}


@pytest.mark.slow
def test_logs_are_json_lines_with_request_ids_and_unknown_variables_reported(server: Server) -> None:
    request = urllib.request.Request(server.base + "/healthz", headers={"X-Request-ID": "from-the-test"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.headers["X-Request-ID"] == "from-the-test"
        assert response.headers.get("server") is None
    time.sleep(0.3)
    lines = server.log.read_text().splitlines()
    assert "python -m service: warning: PENALTY_MAX_LAYRES is not a setting (ignored); see README 'Operating it'" in lines
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    access = [e for e in entries if e["logger"] == "service.access" and e["request_id"] == "from-the-test"]
    assert len(access) == 1 and access[0]["route"] == "/healthz" and access[0]["status"] == 200
    assert any(e["logger"] == "uvicorn.error" for e in entries)


@pytest.mark.slow
def test_sigterm_with_a_slow_client_connected_exits_within_the_grace_period(tmp_path: Path) -> None:
    server = start(tmp_path, PENALTY_TIMEOUT_GRACEFUL_SHUTDOWN="2")
    slow = socket.create_connection(("127.0.0.1", server.port))
    slow.sendall(b"POST /v1/penalty HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
    time.sleep(0.5)
    server.proc.send_signal(signal.SIGTERM)
    try:
        # uvicorn re-raises the signal once shut down: "killed by SIGTERM" is a clean exit here
        assert server.proc.wait(timeout=15) == -signal.SIGTERM
        assert "Cancel 1 running task(s), timeout graceful shutdown exceeded" in server.log.read_text()
    finally:
        slow.close()
        stop(server)
