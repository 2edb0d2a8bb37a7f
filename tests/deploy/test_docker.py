"""The image, built and run for real by a Docker engine (``@pytest.mark.docker``).

Builds the Dockerfile, runs the image as compose does (read-only root, tmpfs /tmp, all
capabilities dropped, no-new-privileges, memory and pids limits, two workers), waits for
Docker's own HEALTHCHECK to report ``healthy``, checks the uid, the seed answer 4.8,
``/metrics`` across both workers and that the root filesystem is read-only, then removes
the container.

Skipped, with the reason, when no engine answers ``docker info``.  On a machine without
a registry, start one with ``ENGINE_ONLY=1 bash ../shared/tools/docker-local.sh``: it
makes the base image ``local/python:3.11-slim-bookworm``, used here when present
(``PENALTY_DOCKER_BASE`` names another).  The Debian client ``/usr/bin/docker`` is
preferred (``DOCKER`` names another).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence

import pytest

from tests.deploy.server import free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE = "penalty-service:docker-test"
LOCAL_BASE = "local/python:3.11-slim-bookworm"
SEED = {"tensor": [[[3, 3, 3, 3], [3, 3, 3, 3]], [[3, 3, 3, 3], [3, 3, 3, 3]]], "regularizer": {"type": "l1", "l1": 0.1}}


def docker_binary() -> str | None:
    for candidate in (os.environ.get("DOCKER"), "/usr/bin/docker", shutil.which("docker")):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def run(argv: Sequence[str], timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=check)


@pytest.fixture(scope="module")
def docker() -> str:
    binary = docker_binary()
    if binary is None:
        pytest.skip("no docker client found (set DOCKER, or install docker.io)")
    try:
        info = run([binary, "info", "--format", "{{.ServerVersion}}"], timeout=20, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip("the Docker engine did not answer `docker info` within 20 s")
    if info.returncode != 0:
        pytest.skip(f"no Docker engine reachable ({info.stderr.strip().splitlines()[-1] if info.stderr.strip() else 'docker info failed'}); "
                    "start one with `ENGINE_ONLY=1 bash ../shared/tools/docker-local.sh`")
    return binary


@pytest.fixture(scope="module")
def image(docker: str) -> str:
    base = os.environ.get("PENALTY_DOCKER_BASE") or (
        LOCAL_BASE if run([docker, "image", "inspect", LOCAL_BASE], check=False).returncode == 0 else ""
    )
    argv = [docker, "build", "--network", "host", "-t", IMAGE]
    if base:
        argv += ["--build-arg", f"PYTHON_IMAGE={base}"]
    build = subprocess.run([*argv, ROOT], capture_output=True, text=True, timeout=900,
                           env={**os.environ, "DOCKER_BUILDKIT": "1"})
    assert build.returncode == 0, f"docker build failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}"
    return IMAGE


@pytest.fixture(scope="module")
def container(docker: str, image: str) -> Iterator[tuple[str, str]]:
    name, port = f"penalty-docker-test-{os.getpid()}", free_port()
    run([docker, "rm", "-f", name], check=False)
    run([docker, "run", "-d", "--name", name, "--network", "host",
         "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
         "--memory", "4096m", "--pids-limit", "256",
         "--health-interval", "2s", "--health-start-period", "2s",
         "-e", "PENALTY_HOST=127.0.0.1", "-e", f"PENALTY_PORT={port}", "-e", "PENALTY_WORKERS=2", image])
    try:
        yield name, f"http://127.0.0.1:{port}"
    finally:
        logs = run([docker, "logs", "--tail", "20", name], check=False)
        print(logs.stdout[-2000:], logs.stderr[-2000:])
        run([docker, "rm", "-f", name], check=False)


def test_the_image_runs_healthy_read_only_as_uid_10001_and_answers_4_8(docker: str, container: tuple[str, str]) -> None:
    name, base = container
    status = ""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = run([docker, "inspect", "-f", "{{.State.Health.Status}}", name]).stdout.strip()
        if status in ("healthy", "unhealthy"):
            break
        time.sleep(1)
    assert status == "healthy", run([docker, "inspect", "-f", "{{json .State.Health}}", name]).stdout

    assert run([docker, "exec", name, "id", "-u"]).stdout.strip() == "10001"
    assert run([docker, "exec", name, "sh", "-c", "touch /probe"], check=False).returncode != 0

    request = urllib.request.Request(f"{base}/v1/penalty", data=json.dumps(SEED).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["penalty"] == 4.8
        assert response.headers["X-Request-ID"]
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:  # multiprocess files in /tmp
        assert 'route="/v1/penalty",status="200"' in response.read().decode()
