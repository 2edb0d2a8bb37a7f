"""A streamed run over a real socket: a client that disconnects stops the run.

Measured, not assumed: the server runs in this process (uvicorn in a thread), so the
process's CPU time shows whether the training loop is still running.  While the client
reads, the run burns CPU; once it has disconnected, the process goes idle.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import uvicorn

from service.app import create_app
from tests.conftest import make_settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    port = _free_port()
    app = create_app(make_settings(max_train_steps=10_000_000, max_train_seconds=30.0))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def long_run() -> dict:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8))
    return {"inputs": x.tolist(), "targets": (x[:, :1] * 2).tolist(),
            "layers": [{"kernel": rng.normal(size=(8, 4)).tolist(), "activation": "tanh"},
                       {"kernel": rng.normal(size=(4, 1)).tolist()}],
            "optimizer": {"name": "sgd", "learning_rate": 0.01}, "batch_size": 1, "epochs": 5000,
            "record": {"every": 1000}}


def cpu_over(seconds: float) -> float:
    start = time.process_time()
    time.sleep(seconds)
    return time.process_time() - start


def test_disconnect_stops_the_run(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        with http.stream("POST", "/v1/train", json=long_run(), headers={"Accept": "text/event-stream"}) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            seen = 0
            for line in lines:
                if line.startswith("event: progress"):
                    seen += 1
                    if seen == 3:
                        break
            busy = cpu_over(1.0)  # the run goes on while the client is connected
        # the `with` block closed the connection
        time.sleep(0.3)  # the step in flight, and the server noticing the disconnect
        idle = cpu_over(1.0)
        assert http.get("/healthz").status_code == 200
    # 2 shared cores: a busy run gets well above 0.1 CPU-s per second even under load;
    # an idle uvicorn process uses a few milliseconds.
    assert busy > 0.1, f"the run should be busy while the client reads (CPU {busy:.2f} s in 1 s)"
    assert idle < 0.05 < busy / 2, f"the run kept working after the disconnect (CPU {idle:.2f} s in 1 s)"
