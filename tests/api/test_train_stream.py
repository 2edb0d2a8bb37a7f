"""A streamed run over a real socket: a client that disconnects stops the run.

Measured, not assumed: the server runs in this process (uvicorn in a thread), so the
process's CPU time shows whether the training loop is still running.  While the client
reads, the run burns CPU; once it has disconnected, the process goes idle.
"""

from __future__ import annotations

import io
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn

from service.app import create_app
from service.client import __main__ as cli
from service.client import training as client_training
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


# --------------------------------------------------------------------------- the client and its CLI


def small_run() -> dict:
    return {"inputs": [[1.0, 2.0], [2.0, 1.0], [0.0, 1.0], [1.0, 0.0]], "targets": [[1.0], [2.0], [0.5], [0.5]],
            "layers": [{"kernel": [[0.5], [-0.5]], "bias": [0.0], "kernel_regularizer": {"type": "l1", "l1": 0.01}}],
            "loss": "mse", "optimizer": {"name": "sgd", "learning_rate": 0.05}, "epochs": 30, "batch_size": 2}


def test_client_yields_progress_and_returns_the_json_answer(base_url: str) -> None:
    seen: list[dict] = []
    result = client_training.train(base_url, small_run(), on_progress=seen.append)
    plain = httpx.post(f"{base_url}/v1/train", json=small_run()).json()
    assert result == plain
    assert seen and seen[0]["step"] == 1 and seen[-1]["step"] == seen[-1]["steps"] == 60
    with pytest.raises(client_training.TrainError) as err:
        client_training.train(base_url, {**small_run(), "optimizer": "adamm"})
    assert err.value.status == 422 and err.value.error["code"] == "invalid_spec"


def test_client_class_trains_on_its_connection_and_raises_service_errors(base_url: str) -> None:
    from service.client import Client, ServiceError

    seen: list[dict] = []
    with Client(base_url) as client:
        result = client.train(small_run(), on_progress=seen.append)
        assert result == httpx.post(f"{base_url}/v1/train", json=small_run()).json()
        assert [p["step"] for p in seen][-1] == 60
        with pytest.raises(ServiceError) as err:
            client.train({**small_run(), "batch_size": 0})
    assert err.value.status == 422 and err.value.code == "validation_error" and "batch_size" in err.value.message


def test_cli_writes_the_result_and_a_plot(base_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    req = tmp_path / "request.json"
    req.write_text(json.dumps(small_run()))
    out, png = tmp_path / "result.json", tmp_path / "curves.png"
    assert cli.main(["train", str(req), "--url", base_url, "--out", str(out), "--plot", str(png)]) == 0
    assert json.loads(out.read_text())["steps"] == 60
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli.main(["train", str(req), "--url", base_url]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 60
    req.write_text(json.dumps({**small_run(), "epochs": 0}))
    assert cli.main(["train", str(req), "--url", base_url]) == 1
    assert "422 validation_error" in capsys.readouterr().err


def test_cli_plot_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the `plot` extra were not installed
    assert cli.main(["train", "unused.json", "--plot", str(tmp_path / "x.png")]) == 2
    assert "penalty-service[plot]" in capsys.readouterr().err


def test_progress_bar_draws_only_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    for out in (tty, pipe):
        bar = cli.Bar(out)
        bar({"step": 15, "steps": 30, "epoch": 2, "losses": {"total": 0.5}})
        bar.close()
    assert tty.getvalue() == "\r[" + "#" * 15 + "." * 15 + "] 15/30 epoch 2 loss 0.5  \n"
    assert pipe.getvalue() == ""


def test_cli_reports_unreadable_requests_and_unreachable_services(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["train", str(tmp_path / "missing.json")]) == 2
    assert "cannot read the request" in capsys.readouterr().err
    req = tmp_path / "request.json"
    req.write_text(json.dumps(small_run()))
    assert cli.main(["train", str(req), "--url", f"http://127.0.0.1:{_free_port()}"]) == 1
    assert "error: http://127.0.0.1:" in capsys.readouterr().err
