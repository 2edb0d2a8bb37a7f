"""Static checks of the container files (no Docker engine runs here).

hadolint lints the Dockerfile in `make lint`; these tests check what hadolint cannot: that the
image runs as non-root with a tool-free healthcheck, that compose and nginx agree with the
Dockerfile on names and ports, and that `.dockerignore` keeps what the build copies.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.deploy import dockerfile

ROOT = dockerfile.ROOT
COMPOSE = ROOT / "docker-compose.yml"
NGINX = ROOT / "deploy" / "nginx.conf"


@pytest.fixture(scope="module")
def stages() -> list[dockerfile.Stage]:
    return dockerfile.load()[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def container_port(stages: list[dockerfile.Stage]) -> str:
    return stages[-1].env()["PENALTY_PORT"]


# --- Dockerfile -----------------------------------------------------------------------------


def test_two_stages_and_the_runtime_gets_only_the_wheel(stages: list[dockerfile.Stage]) -> None:
    assert len(stages) >= 2
    build, runtime = stages[0], stages[-1]
    assert build.name == "build" and runtime.name == "runtime"
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", runtime.image), runtime.image
    assert any("--wheel-dir /dist" in run for run in build.all("RUN"))
    # Nothing from the build context reaches the runtime: the wheel comes from the build stage.
    assert not runtime.all("COPY") and not runtime.all("ADD")
    installs = [run for run in runtime.all("RUN") if "pip install" in run]
    assert len(installs) == 1
    assert "from=build" in installs[0] and installs[0].endswith("/dist/*.whl")
    runtime_text = " ".join(args for _, args in runtime.instructions)
    for banned in ("apt-get", "gcc", "build-essential", "[dev]", "requirements"):
        assert banned not in runtime_text


def test_runtime_is_non_root_and_exposes_the_port(stages: list[dockerfile.Stage]) -> None:
    runtime = stages[-1]
    user = runtime.last("USER").split(":")[0]
    assert user not in {"root", "0"}
    # The uid exists in the image (created with a fixed uid, no login shell).
    creates = " ".join(runtime.all("RUN"))
    assert re.search(rf"useradd .*--uid {user}\b.*--shell /usr/sbin/nologin", creates)
    assert runtime.last("EXPOSE") == container_port(stages) == "8000"
    assert runtime.env()["PENALTY_HOST"] == "0.0.0.0"


def test_cmd_and_healthcheck_need_only_python(stages: list[dockerfile.Stage]) -> None:
    runtime = stages[-1]
    assert dockerfile.exec_form(runtime.last("CMD")) == ["python", "-m", "service"]
    check = dockerfile.healthcheck_cmd(runtime.last("HEALTHCHECK"))
    assert check[:2] == ["python", "-c"]
    assert "/healthz" in check[2] and "PENALTY_PORT" in check[2]
    # The probe is valid Python that any slim image can run.
    compile(check[2], "<healthcheck>", "exec")


def test_settings_in_env_are_all_penalty_prefixed(stages: list[dockerfile.Stage]) -> None:
    settings = {k for k in stages[-1].env() if not k.startswith(("PYTHON", "PIP_"))}
    assert settings and all(k.startswith("PENALTY_") for k in settings)
    assert {"PENALTY_HOST", "PENALTY_PORT", "PENALTY_WORKERS", "PENALTY_LOG_LEVEL"} <= settings


def _glob(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex; matching a directory also matches its contents."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            j = pattern.index("]", i)
            out, i = out + pattern[i : j + 1], j + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + "(?:/.*)?")


def _dockerignore_keeps(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path (or a parent of it) wins."""
    kept = True
    for pattern in patterns:
        if _glob(pattern.lstrip("!").strip("/")).fullmatch(path.strip("/")):
            kept = pattern.startswith("!")
    return kept


def test_dockerignore_keeps_what_the_build_copies(stages: list[dockerfile.Stage]) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = [
        src
        for stage in stages
        for args in stage.all("COPY")
        if not args.startswith("--from")
        for src in args.split()[:-1]
    ]
    assert copied, "the build stage copies the sources it builds the wheel from"
    for src in copied:
        assert (ROOT / src).exists(), src
        assert _dockerignore_keeps(src, patterns), f".dockerignore drops {src}"
    for junk in (".git", ".venv", "tests", "service/__pycache__", "service/core/x.pyc"):
        assert not _dockerignore_keeps(junk, patterns), f".dockerignore keeps {junk}"


# --- docker-compose.yml ----------------------------------------------------------------------


def test_every_service_names_an_image_a_healthcheck_and_a_port(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert service.get("build") or service.get("image"), name
        test = service.get("healthcheck", {}).get("test")
        assert isinstance(test, list) and test[0] == "CMD" and "/healthz" in " ".join(test), name
        assert service.get("ports") or service.get("expose"), name


def test_service_healthcheck_is_the_dockerfile_one(
    compose: dict[str, Any], stages: list[dockerfile.Stage]
) -> None:
    probe = dockerfile.healthcheck_cmd(stages[-1].last("HEALTHCHECK"))
    built = {n: s for n, s in compose["services"].items() if s.get("build")}
    assert set(built) == {"api", "replica"}
    for name, service in built.items():
        assert service["build"] == "."
        assert service["healthcheck"]["test"] == ["CMD", *probe], name
        assert all(k.startswith("PENALTY_") for k in service.get("environment", {})), name


def test_single_instance_starts_by_default_on_the_container_port(
    compose: dict[str, Any], stages: list[dockerfile.Stage]
) -> None:
    api = compose["services"]["api"]
    assert "profiles" not in api
    port = container_port(stages)
    assert api["ports"] == [f"${{PENALTY_PUBLISH_ADDRESS:-127.0.0.1}}:${{PENALTY_PUBLISH_PORT:-{port}}}:{port}"]


def test_scaled_setup_is_replicas_behind_nginx(compose: dict[str, Any]) -> None:
    services = compose["services"]
    replica, lb = services["replica"], services["lb"]
    assert replica["profiles"] == lb["profiles"] == ["scale"]
    assert replica["deploy"]["replicas"] >= 2
    assert "ports" not in replica, "replicas publish no host port, so any number can run"
    assert lb["depends_on"] == {"replica": {"condition": "service_healthy"}}
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in lb["volumes"]
    assert lb["image"].startswith("nginx:")


# --- deploy/nginx.conf -----------------------------------------------------------------------


def _nginx_version(image: str) -> tuple[int, ...]:
    match = re.fullmatch(r"nginx:(\d+)\.(\d+)(?:\.(\d+))?(?:-\w+)?", image)
    assert match, f"pin nginx to a version: {image}"
    return tuple(int(g or 0) for g in match.groups())


def test_nginx_balances_over_the_replica_service(
    compose: dict[str, Any], stages: list[dockerfile.Stage]
) -> None:
    conf = NGINX.read_text()
    upstream = re.search(r"upstream\s+(\w+)\s*\{(.*?)\}", conf, re.S)
    assert upstream, "nginx.conf defines an upstream"
    name, body = upstream.groups()
    servers = re.findall(r"^\s*server\s+([\w.-]+):(\d+)([^;]*);", body, re.M)
    assert len(servers) == 1
    host, port, options = servers[0]
    services = compose["services"]
    assert host == "replica" and host in services
    assert port == container_port(stages)
    assert port in [str(p) for p in services[host]["expose"]]
    assert "PENALTY_PORT" not in services[host].get("environment", {})
    assert f"proxy_pass http://{name};" in conf

    lb = services["lb"]
    listen = re.search(r"^\s*listen\s+(\d+);", conf, re.M)
    assert listen
    assert lb["ports"] == [f"${{PENALTY_PUBLISH_ADDRESS:-127.0.0.1}}:${{PENALTY_LB_PORT:-{listen.group(1)}}}:{listen.group(1)}"]
    assert f"http://127.0.0.1:{listen.group(1)}/healthz" in lb["healthcheck"]["test"]

    if "resolve" in options.split():
        # Re-resolving upstream names is in open-source nginx from 1.27.3; it needs a zone
        # and Docker's embedded DNS server.
        assert _nginx_version(lb["image"]) >= (1, 27, 3)
        assert re.search(r"^\s*zone\s+\w+\s+\d+[km];", body, re.M)
        assert re.search(r"^\s*resolver\s+127\.0\.0\.11\b", conf, re.M)


# --- settings ---------------------------------------------------------------------------------


def test_every_penalty_variable_is_a_setting(
    compose: dict[str, Any], stages: list[dockerfile.Stage]
) -> None:
    from service.config import Settings

    prefix = Settings.model_config.get("env_prefix", "")
    fields = {prefix + name.upper() for name in Settings.model_fields}
    named = {k for k in stages[-1].env() if k.startswith("PENALTY_")}
    for service in compose["services"].values():
        named |= set(service.get("environment", {}))
    assert named and named <= fields, sorted(named - fields)
    # The values the image and compose set are valid settings.
    for service in compose["services"].values():
        env = {**stages[-1].env(), **{k: str(v) for k, v in service.get("environment", {}).items()}}
        if any(k.startswith("PENALTY_") for k in service.get("environment", {})):
            Settings(
                **{
                    k.removeprefix(prefix).lower(): v
                    for k, v in env.items()
                    if k.startswith(prefix)
                }
            )


def test_nginx_limits_bodies_like_the_service() -> None:
    """nginx refuses a body over the service's limit itself, in the service's envelope."""
    from service.config import Settings
    from service.errors import PayloadTooLarge

    conf = NGINX.read_text()
    match = re.search(r"client_max_body_size\s+(\d+)([kmg]?);", conf)
    assert match
    size = int(match.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2)]
    assert size == Settings().max_body_bytes
    page = re.search(r"error_page\s+413\s+(@\w+);", conf)
    assert page
    body = re.search(rf"location\s+{page.group(1)}\s*\{{.*?return\s+413\s+'(.*?)';", conf, re.S)
    assert body
    envelope = json.loads(body.group(1))
    assert envelope["error"]["code"] == PayloadTooLarge.code
    assert str(size) in envelope["error"]["message"]
    assert envelope["error"]["details"] == []
