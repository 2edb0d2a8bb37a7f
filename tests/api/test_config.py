"""Settings from the environment, ``python -m service``, and the last-resort 500 handler."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.app import create_app
from service.config import Settings
from tests.conftest import make_settings
from tests.deploy.server import clean_env, free_port, serve

ROOT = Path(__file__).resolve().parents[2]


def test_defaults() -> None:
    assert Settings.model_construct().model_dump() == {
        "host": "127.0.0.1", "port": 8000, "workers": 1, "log_level": "info",
        "max_body_bytes": 67108864, "max_tensor_elements": 16777216, "max_request_elements": 33554432,
        "max_layers": 64, "max_nesting_depth": 32,
        "log_json": True, "max_work": 4_000_000_000, "max_work_bytes": 268435456,
        "max_concurrent_requests": 64, "max_inflight_bytes": 1073741824, "body_memory_factor": 7,
        "retry_after_seconds": 1, "offload_bytes": 1048576, "offload_processes": 2, "max_header_bytes": 65536, "timeout_keep_alive": 5, "body_read_timeout": 30.0,
        "timeout_graceful_shutdown": 20, "limit_concurrency": 256, "api_keys": "",
        "metrics_require_key": True, "pages_require_key": False, "cors_origins": "",
        "max_train_work": 20_000_000_000, "max_train_steps": 100_000, "max_train_seconds": 60.0,
        "max_train_history": 4_000_000,
        "max_safetensors_header_bytes": 1048576, "inline_body_bytes": 4096, "blas_threads": 1,
        "malloc_keep_bytes": 67108864,
    }


def test_environment_with_the_penalty_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PENALTY_MAX_BODY_BYTES", "1024")
    monkeypatch.setenv("PENALTY_WORKERS", "3")
    monkeypatch.setenv("PENALTY_LOG_LEVEL", "debug")
    settings = Settings()
    assert (settings.max_body_bytes, settings.workers, settings.log_level) == (1024, 3, "debug")


def test_make_run_host_and_port_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("PORT", "9001")
    assert (Settings().host, Settings().port) == ("0.0.0.0", 9001)
    monkeypatch.setenv("PENALTY_PORT", "9002")
    assert Settings().port == 9002


@pytest.mark.parametrize(("name", "value"), [("PENALTY_MAX_LAYERS", "0"), ("PENALTY_PORT", "70000"),
                                             ("PENALTY_LOG_LEVEL", "loud"), ("PENALTY_MAX_NESTING_DEPTH", "65")])
def test_invalid_settings_are_refused_at_start(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_the_last_resort_handler_logs_and_answers_with_the_envelope(caplog: pytest.LogCaptureFixture) -> None:
    """No client input reaches it (see test_properties.py); a bug would be answered like this."""
    app = create_app(make_settings())

    def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/broken", broken)
    with caplog.at_level(logging.ERROR, logger="service"), TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/broken")
    assert (response.status_code, response.json()) == (500, {"error": {
        "code": "internal_error", "message": "internal error; it has been logged", "details": []}})
    assert "unhandled error on GET /broken" in caplog.text and "RuntimeError: a bug" in caplog.text


def test_python_m_service_help() -> None:
    result = subprocess.run([sys.executable, "-m", "service", "--help"], capture_output=True, text=True,
                            check=True, cwd=ROOT)
    assert "--host" in result.stdout and "--port" in result.stdout and "--workers" in result.stdout


@pytest.mark.slow
def test_python_m_service_serves_with_two_workers(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "service", "--port", str(port), "--workers", "2", "--log-level", "warning"]
    env = clean_env({"PYTHONPATH": str(ROOT), "PENALTY_MAX_LAYERS": "1"})
    with serve(argv, env, tmp_path, port) as base:
        body = json.dumps({"inputs": [[1]], "targets": [[1]], "layers": [{"kernel": [[1]]}] * 2}).encode()
        request = urllib.request.Request(f"{base}/v1/network", data=body, headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 413  # PENALTY_MAX_LAYERS reached every worker
        seed = json.dumps({"tensor": [[[3] * 4] * 2] * 2, "regularizer": {"type": "l1", "l1": 0.1}}).encode()
        request = urllib.request.Request(f"{base}/v1/penalty", data=seed, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read())["penalty"] == 4.8
        for _ in range(6):  # spread over both workers
            urllib.request.urlopen(f"{base}/healthz", timeout=10).close()
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        # multiprocess mode: whichever worker answers, /metrics adds up both
        assert 'penalty_requests_total{method="POST",route="/v1/network",status="413"} 1.0' in metrics
        assert 'penalty_requests_total{method="POST",route="/v1/penalty",status="200"} 1.0' in metrics
        healthz = [line for line in metrics.splitlines() if line.startswith('penalty_requests_total{method="GET",route="/healthz"')]
        assert len(healthz) == 1 and float(healthz[0].split()[-1]) >= 6
