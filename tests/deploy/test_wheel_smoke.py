"""Replay the image without Docker: build the wheel as the Dockerfile's build stage does,
install it into a fresh virtual environment with runtime dependencies only (as the runtime
stage does), start it exactly as the image's CMD with the image's ENV (plus the `api`
service's compose environment), and call every route once.

This catches what unit tests cannot: a module or a static asset (the offline docs) missing
from the wheel, a runtime dependency listed only in the dev extra, a CMD that does not start.

Differences from the image, on purpose: the server listens on 127.0.0.1 and a free port
instead of 0.0.0.0:8000, and pip keeps its cache (`--no-cache-dir` is dropped) so a rerun
does not download the same wheels again.
"""

from __future__ import annotations

import glob
import json
import re
import shlex
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.deploy import dockerfile, server
from tests.reference import vectors

pytestmark = pytest.mark.slow

ROOT = dockerfile.ROOT
SEED = [[[3.0] * 4] * 2] * 2  # ones((2, 2, 4)) * 3


def _pip_args(run: str, dist: Path) -> list[str]:
    """A Dockerfile `RUN pip …` as arguments for `python -m pip`, with /dist → dist."""
    argv = [a for a in shlex.split(run) if not a.startswith("--mount=")]
    assert argv[0] == "pip", run
    argv = [a for a in argv[1:] if a != "--no-cache-dir"]
    out: list[str] = []
    for arg in (a.replace("/dist", str(dist)) for a in argv):
        matches = sorted(glob.glob(arg)) if "*" in arg else []
        out.extend(matches or [arg])
    return out


def _run(argv: list[str], cwd: Path) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"{argv}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Build and install like the Dockerfile; return the venv python, CMD and ENV."""
    _, stages = dockerfile.load()
    build, runtime = stages[0], stages[-1]
    work = tmp_path_factory.mktemp("image")
    context, dist, venv = work / "src", work / "dist", work / "venv"

    # Build stage: COPY the build inputs (nothing else: as .dockerignore), then RUN pip wheel.
    context.mkdir()
    for args in build.all("COPY"):
        *sources, dest = args.split()
        for src in sources:
            target = context / dest / (Path(src).name if dest.endswith("/") else "")
            if (ROOT / src).is_dir():
                shutil.copytree(
                    ROOT / src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
                )
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / src, target)
    (run,) = [r for r in build.all("RUN") if r.startswith("pip wheel")]
    _run([sys.executable, "-m", "pip", *_pip_args(run, dist)], cwd=context)
    assert [p.name for p in dist.iterdir()] == ["penalty_service-0.1.0-py3-none-any.whl"]

    # Runtime stage: a fresh interpreter environment that gets the wheel and its dependencies.
    _run([sys.executable, "-m", "venv", str(venv)], cwd=work)
    python = venv / "bin" / "python"
    (run,) = [r for r in runtime.all("RUN") if "pip install" in r]
    _run([str(python), "-m", "pip", "install", "-q", *_pip_args(run, dist)[1:]], cwd=work)

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = {**runtime.env(), **compose["services"]["api"].get("environment", {})}
    return {
        "python": python,
        "cmd": dockerfile.exec_form(runtime.last("CMD")),
        "healthcheck": dockerfile.healthcheck_cmd(runtime.last("HEALTHCHECK")),
        "env": {k: str(v) for k, v in env.items()},
        "cwd": work,
    }


def _in_venv(image: dict[str, Any], argv: list[str]) -> list[str]:
    assert argv[0] == "python"
    return [str(image["python"]), *argv[1:]]


def test_the_wheel_installs_runtime_dependencies_only(image: dict[str, Any]) -> None:
    probe = (
        "import importlib.util as u, json, service; "
        "print(json.dumps({'service': service.__file__, "
        "'dev': [m for m in ('pytest', 'ruff', 'mypy', 'hypothesis', 'build', 'yaml') "
        "if u.find_spec(m)]}))"
    )
    found = json.loads(_run([str(image["python"]), "-c", probe], cwd=image["cwd"]))
    assert "site-packages" in found["service"], "the service must come from the wheel"
    # PyYAML arrives with uvicorn[standard]; the dev tools must not.
    assert set(found["dev"]) <= {"yaml"}, found["dev"]
    _run([str(image["python"]), "-m", "pip", "check"], cwd=image["cwd"])


def _get(base: str, path: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(base + path, timeout=30) as response:
        return response.status, response.headers.get("content-type", ""), response.read()


def _post(base: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        base + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        result = json.loads(response.read())
    assert isinstance(result, dict)
    return result


KERNEL = np.arange(12.0).reshape(4, 3) / 10 - 0.5
BIAS = np.array([0.1, -0.2, 0.3])


def test_every_route_answers_as_the_image_would(image: dict[str, Any]) -> None:
    port = server.free_port()
    env = server.clean_env({**image["env"], "PENALTY_HOST": "127.0.0.1", "PENALTY_PORT": str(port)})
    with server.serve(_in_venv(image, image["cmd"]), env, image["cwd"], port) as base:
        # The image's HEALTHCHECK, run as Docker would run it.
        check = subprocess.run(
            _in_venv(image, image["healthcheck"]), env=env, cwd=image["cwd"], timeout=10
        )
        assert check.returncode == 0

        for path in ("/healthz", "/readyz"):
            status, _, body = _get(base, path)
            assert (status, json.loads(body)) == (200, {"status": "ok"})
        for path in ("/v1/regularizers", "/v1/activations", "/v1/losses"):
            status, kind, body = _get(base, path)
            assert status == 200 and kind.startswith("application/json") and json.loads(body)

        status, _, body = _get(base, "/openapi.json")
        paths = json.loads(body)["paths"]
        for route in ("/v1/penalty", "/v1/penalties", "/v1/dense", "/v1/network"):
            assert "post" in paths[route]

        # Offline docs: every asset the pages load comes from the service itself, and is there.
        for page in ("/docs", "/redoc"):
            status, kind, body = _get(base, page)
            assert status == 200 and kind.startswith("text/html")
            html = body.decode()
            urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html)
            assets = [u for u in urls if not u.startswith(("#", "data:"))]
            assert assets, f"{page} loads no assets"
            for url in assets:
                assert not re.match(r"(https?:)?//", url), f"{page} loads {url} from outside"
                status, _, content = _get(base, url if url.startswith("/") else "/" + url)
                assert status == 200 and content, url

        out = _post(base, "/v1/penalty", {"tensor": SEED, "regularizer": {"type": "l1", "l1": 0.1}})
        assert out["penalty"] == pytest.approx(4.8, rel=1e-6)
        np.testing.assert_allclose(
            vectors.tensor(out["gradient"]), np.full((2, 2, 4), 0.1), rtol=1e-6
        )

        out = _post(
            base,
            "/v1/penalties",
            {
                "weights": {
                    "dense/kernel": {"tensor": KERNEL.tolist(), "regularizer": "l2"},
                    "dense/bias": {"tensor": BIAS.tolist(), "regularizer": "l1"},
                }
            },
        )
        expected = {"dense/kernel": 0.01 * (KERNEL**2).sum(), "dense/bias": 0.01 * abs(BIAS).sum()}
        assert out["penalties"] == pytest.approx(expected, rel=1e-6)
        assert out["total"] == pytest.approx(sum(expected.values()), rel=1e-6)

        x = np.full((2, 2, 4), 3.0)
        out = _post(
            base,
            "/v1/dense",
            {
                "inputs": x.tolist(),
                "kernel": KERNEL.tolist(),
                "bias": BIAS.tolist(),
                "kernel_regularizer": {"type": "l1", "l1": 0.1},
                "bias_regularizer": {"type": "l2", "l2": 0.1},
                "activity_regularizer": {"type": "l1", "l1": 0.1},
            },
        )
        y = x @ KERNEL + BIAS
        np.testing.assert_allclose(vectors.tensor(out["outputs"]), y, rtol=1e-6)
        assert out["losses"] == pytest.approx(
            {
                "kernel_regularizer": 0.1 * abs(KERNEL).sum(),
                "bias_regularizer": 0.1 * (BIAS**2).sum(),
                "activity_regularizer": 0.1 * abs(y).sum() / 2,
                "total": 0.1 * (abs(KERNEL).sum() + (BIAS**2).sum() + abs(y).sum() / 2),
            },
            rel=1e-6,
        )

        inputs, targets = np.array([[1.0, 2.0]]), np.array([[1.0]])
        out = _post(
            base,
            "/v1/network",
            {
                "inputs": inputs.tolist(),
                "targets": targets.tolist(),
                "layers": [{"kernel": [[0.5], [0.25]], "kernel_regularizer": "l2"}],
                "loss": "mean_squared_error",
            },
        )
        assert out["losses"] == pytest.approx(
            {"data_loss": 0.0, "dense/kernel_regularizer": 0.003125, "total": 0.003125}, rel=1e-6
        )
        assert set(out["gradients"]) == {"dense/kernel"}
