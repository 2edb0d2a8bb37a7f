"""Operations: request ids, metrics, JSON logs, API keys, CORS (``service.observability``)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.observability import JsonFormatter, log_config
from tests.conftest import make_settings

MakeClient = Callable[..., TestClient]
SEED = {"tensor": [[[3, 3, 3, 3], [3, 3, 3, 3]], [[3, 3, 3, 3], [3, 3, 3, 3]]], "regularizer": {"type": "l1", "l1": 0.1}}


# --- request id ------------------------------------------------------------------------------


def test_a_request_id_is_generated_for_every_response(client: TestClient) -> None:
    ids = {client.get(path).headers["x-request-id"] for path in ("/healthz", "/nowhere", "/healthz")}
    assert len(ids) == 3 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert re.fullmatch(r"[0-9a-f]{32}", client.post("/v1/penalty", json={"tensor": "x"}).headers["x-request-id"])


def test_a_sane_request_id_is_echoed_an_insane_one_replaced(client: TestClient) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123.X_y"}).headers["x-request-id"] == "abc-123.X_y"
    for bad in ("a" * 129, "has space", "semi;colon"):
        echoed = client.get("/healthz", headers={"X-Request-ID": bad}).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", echoed)


def test_a_500_has_a_request_id_too() -> None:
    from service.app import create_app

    app = create_app(make_settings())

    def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/broken", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/broken", headers={"X-Request-ID": "r-500"})
    assert (response.status_code, response.headers["x-request-id"]) == (500, "r-500")


# --- access log and JSON lines ---------------------------------------------------------------


def test_one_access_log_line_per_request_with_its_fields(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="service.access"):
        client.post("/v1/penalty", json=SEED, headers={"X-Request-ID": "log-1"})
    records = [r for r in caplog.records if r.name == "service.access"]
    assert len(records) == 1
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["request_id"] == "log-1"
    fields = records[0].fields  # type: ignore[attr-defined]
    assert {k: fields[k] for k in ("method", "path", "route", "status")} == {
        "method": "POST", "path": "/v1/penalty", "route": "/v1/penalty", "status": 200}
    assert fields["bytes_in"] > 50 and fields["bytes_out"] > 50 and fields["duration_ms"] > 0
    assert fields["request_id"] == "log-1"


def test_json_formatter_writes_one_object_per_line() -> None:
    record = logging.LogRecord("service", logging.WARNING, __file__, 1, "hello %s", ("world",), None)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert (entry["level"], entry["logger"], entry["message"]) == ("warning", "service", "hello world")


def test_log_config_covers_uvicorn_and_the_service() -> None:
    config = log_config(make_settings(log_level="trace"))
    assert set(config["loggers"]) == {"uvicorn", "uvicorn.error", "uvicorn.access", "service"}
    assert config["loggers"]["service"]["level"] == "DEBUG"
    assert config["formatters"]["default"] == {"()": "service.observability.JsonFormatter"}
    plain = log_config(make_settings(log_json=False))
    assert "format" in plain["formatters"]["default"]


# --- metrics ---------------------------------------------------------------------------------


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if match and match[1] == name and dict(re.findall(r'(\w+)="([^"]*)"', match[2] or "")) == labels:
            return float(match[3])
    return 0.0


def test_metrics_count_requests_bytes_latency_and_rejections(client: TestClient) -> None:
    before = client.get("/metrics").text
    client.post("/v1/penalty", json=SEED)
    client.post("/v1/penalty", json={"tensor": [1], "regularizer": "l3"})
    client.get("/nowhere")
    after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text

    def grew(name: str, **labels: str) -> float:
        return sample(text, name, **labels) - sample(before, name, **labels)

    assert grew("penalty_requests_total", route="/v1/penalty", method="POST", status="200") == 1
    assert grew("penalty_requests_total", route="/v1/penalty", method="POST", status="422") == 1
    assert grew("penalty_requests_total", route="unmatched", method="GET", status="404") == 1
    assert grew("penalty_rejections_total", reason="invalid_spec") == 1
    assert grew("penalty_rejections_total", reason="not_found") == 1
    assert grew("penalty_request_duration_seconds_count", route="/v1/penalty") == 2
    assert grew("penalty_request_bytes_total", route="/v1/penalty") > 100
    assert grew("penalty_response_bytes_total", route="/v1/penalty") > 100
    assert sample(text, "penalty_requests_in_flight") == 1  # this /metrics request


# --- API keys --------------------------------------------------------------------------------


def test_without_keys_nothing_needs_one(client: TestClient) -> None:
    assert client.post("/v1/penalty", json=SEED).status_code == 200


def test_keys_guard_the_api(make_client: MakeClient) -> None:
    client = make_client(api_keys="k1, second-key")
    missing = client.post("/v1/penalty", json=SEED)
    assert (missing.status_code, missing.headers["www-authenticate"]) == (401, 'Bearer realm="penalty-service"')
    assert missing.json() == {"error": {"code": "unauthorized", "message": (
        "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"), "details": []}}
    wrong = client.post("/v1/penalty", json=SEED, headers={"Authorization": "Bearer k2"})
    assert (wrong.status_code, wrong.json()["error"]["message"]) == (401, "the API key is not valid")
    assert wrong.headers["www-authenticate"] == 'Bearer realm="penalty-service", error="invalid_token"'
    assert client.post("/v1/penalty", json=SEED, headers={"X-API-Key": ""}).status_code == 401
    assert client.post("/v1/penalty", json=SEED, headers={"Authorization": "Basic k1"}).status_code == 401
    for headers in ({"Authorization": "Bearer k1"}, {"authorization": "bearer second-key"}, {"X-API-Key": "k1"}):
        response = client.post("/v1/penalty", json=SEED, headers=headers)
        assert (response.status_code, response.json()["penalty"]) == (200, 4.8)


def test_probes_and_pages_are_open_metrics_configurable(make_client: MakeClient) -> None:
    client = make_client(api_keys="k1")
    for path in ("/healthz", "/readyz", "/docs", "/openapi.json", "/v1/nowhere" * 0 + "/redoc"):
        assert client.get(path).status_code == 200, path
    assert client.head("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"X-API-Key": "k1"}).status_code == 200
    for path in ("/v1/regularizers", "/v1/activations", "/v1/losses", "/v1/optimizers", "/v1/conventions"):
        assert client.get(path).status_code == 200, path  # discovery: documentation, like /openapi.json
    assert client.post("/v1/penalty", json=SEED).status_code == 401
    assert make_client(api_keys="k1", metrics_require_key=False).get("/metrics").status_code == 200
    locked = make_client(api_keys="k1", pages_require_key=True)
    assert locked.get("/docs").status_code == 401 and locked.get("/healthz").status_code == 200
    assert locked.get("/v1/regularizers").status_code == 401


# --- CORS ------------------------------------------------------------------------------------


def test_cors_only_for_configured_origins(make_client: MakeClient) -> None:
    client = make_client(cors_origins="https://app.example, https://b.example", api_keys="k1")
    preflight = client.options("/v1/penalty", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code == 200  # a preflight carries no key and needs none
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    response = client.post("/v1/penalty", json=SEED, headers={"Origin": "https://b.example", "X-API-Key": "k1"})
    assert response.headers["access-control-allow-origin"] == "https://b.example"
    assert "X-Request-ID" in response.headers["access-control-expose-headers"]
    other = client.post("/v1/penalty", json=SEED, headers={"Origin": "https://evil.example", "X-API-Key": "k1"})
    assert "access-control-allow-origin" not in other.headers
    plain = make_client().post("/v1/penalty", json=SEED, headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in plain.headers


def test_generated_request_ids_are_unique_and_a_forked_worker_draws_its_own_prefix() -> None:
    import os

    from service.observability import new_request_id

    ids = [new_request_id() for _ in range(1000)]
    assert len(set(ids)) == 1000 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert re.fullmatch(r"[0-9a-f]{32}", child) and child[:16] != ids[0][:16]


def test_the_fast_lane_reads_a_body_as_starlette_does() -> None:
    """Chunks are joined, messages of other types skipped, a disconnect is ClientDisconnect."""
    import asyncio

    from starlette.requests import ClientDisconnect

    from service.api.routing import _read_body

    def feeder(*messages: dict[str, Any]) -> Callable[[], Any]:
        queue = list(messages)

        async def receive() -> dict[str, Any]:
            return queue.pop(0)

        return receive

    chunks = feeder({"type": "http.request", "body": b"ab", "more_body": True}, {"type": "other"},
                    {"type": "http.request", "body": b"", "more_body": True}, {"type": "http.request", "body": b"c"})
    assert asyncio.run(_read_body(chunks)) == b"abc"
    with pytest.raises(ClientDisconnect):
        asyncio.run(_read_body(feeder({"type": "http.request", "body": b"a", "more_body": True},
                                      {"type": "http.disconnect"})))


def test_a_method_of_the_clients_own_is_counted_as_other(client: TestClient) -> None:
    """The client names the method: arbitrary names must not grow the metric series."""
    before = client.get("/metrics").text
    for method in ("FOO1", "FOO2"):
        client.request(method, "/nowhere")
    after = client.get("/metrics").text
    grew = sample(after, "penalty_requests_total", route="unmatched", method="other", status="404") - sample(
        before, "penalty_requests_total", route="unmatched", method="other", status="404")
    assert grew == 2 and "FOO1" not in after
