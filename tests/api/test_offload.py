"""Bodies over ``PENALTY_OFFLOAD_BYTES`` are served in a process pool: the same answers,
errors included, as the threadpool path gives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

MakeClient = Callable[..., TestClient]
SEED = {"tensor": [[[3, 3, 3, 3], [3, 3, 3, 3]], [[3, 3, 3, 3], [3, 3, 3, 3]]], "regularizer": {"type": "l1", "l1": 0.1}}

CASES: list[tuple[str, dict[str, Any]]] = [
    ("/v1/penalty", SEED),
    ("/v1/penalty", {**SEED, "encoding": "b64"}),
    ("/v1/penalties", {"weights": {"a": SEED, "b": {"tensor": [[1.0, 0.0], [0.5, 0.5]], "regularizer": "orthogonal_regularizer"}}}),
    ("/v1/dense", {"inputs": [[1.0, 2.0]], "kernel": [[0.5], [-0.5]], "activation": "tanh", "kernel_regularizer": "l2"}),
    ("/v1/network", {"inputs": [[1.0, 2.0]], "targets": [[1.0]], "layers": [{"kernel": [[0.5], [-0.5]]}], "loss": "mse"}),
    ("/v1/penalty", {"tensor": [1, "x"], "regularizer": "l1"}),                                   # 422 invalid_tensor
    ("/v1/penalty", {"tensor": [1], "regularizer": "l3"}),                                        # 422 invalid_spec
    ("/v1/penalty", {"tensor": [[1.0]] * 3, "regularizer": "l1", "typo": 1}),                     # 422 unknown_field
    ("/v1/penalty", {"tensor": [1.0, 2.0], "regularizer": "orthogonal_regularizer"}),             # 400 shape_mismatch
    ("/v1/penalty", {"tensor": {"shape": [20000, 3], "data": [1.0]}, "regularizer": "orthogonal_regularizer"}),
    ("/v1/dense", {"inputs": [[1.0, 2.0]], "kernel": [[0.5], [-0.5], [1.0]]}),                    # 400 shape_mismatch
]


@pytest.fixture(scope="module")
def both() -> Any:
    from service.app import create_app
    from tests.conftest import make_settings

    with TestClient(create_app(make_settings())) as threads, \
            TestClient(create_app(make_settings(offload_bytes=1, offload_processes=1))) as processes:
        yield threads, processes


@pytest.mark.parametrize(("path", "body"), CASES, ids=[f"{i}-{p}" for i, (p, _) in enumerate(CASES)])
def test_the_process_pool_answers_as_the_threadpool(both: Any, path: str, body: dict[str, Any]) -> None:
    threads, processes = both
    expected, got = threads.post(path, json=body), processes.post(path, json=body)
    assert (got.status_code, got.json()) == (expected.status_code, expected.json())
    assert got.headers["content-type"] == "application/json"


def test_errors_in_the_pool_are_counted_in_this_process(both: Any) -> None:
    _, processes = both
    before = processes.get("/metrics").text.count("\n")
    processes.post("/v1/penalty", json={"tensor": [1], "regularizer": "l3"})
    text = processes.get("/metrics").text
    assert 'penalty_rejections_total{reason="invalid_spec"}' in text and text.count("\n") >= before


def test_small_bodies_stay_in_the_threadpool(make_client: MakeClient) -> None:
    from service import offload

    offload.shutdown()
    client = make_client(offload_bytes=10_000)
    assert client.post("/v1/penalty", json=SEED).json()["penalty"] == 4.8
    assert offload._pool is None  # no process was started for it


def test_only_bodies_of_json_numbers_go_to_the_pool() -> None:
    """Over the size threshold, a body of JSON numbers is offloaded and a body whose tensor
    is one b64 string is not (it parses at memory speed); under it, neither."""
    import base64

    import numpy as np

    from service.offload import wanted
    from tests.conftest import make_settings

    settings = make_settings(offload_bytes=100_000)
    x = np.linspace(-1, 1, 60_000, dtype=np.float32)
    numbers = orjson.dumps({"tensor": x.tolist(), "regularizer": "l1"})
    b64 = orjson.dumps({"tensor": {"shape": [60_000], "b64": base64.b64encode(x.tobytes()).decode()},
                        "regularizer": "l1"})
    assert len(numbers) > 100_000 and len(b64) > 100_000
    assert wanted(numbers, settings) and not wanted(b64, settings)
    mixed = orjson.dumps({"inputs": {"shape": [60_000], "b64": base64.b64encode(x.tobytes()).decode()},
                          "targets": x.tolist()})  # numbers at the end only
    assert wanted(mixed, settings)
    assert not wanted(numbers, make_settings(offload_bytes=len(numbers) + 1))
    assert not wanted(numbers, make_settings(offload_bytes=0))


def test_a_dead_pool_process_is_a_503_and_the_pool_restarts(make_client: MakeClient) -> None:
    import os
    import signal

    from service import offload

    offload.shutdown()
    client = make_client(offload_bytes=1, offload_processes=1)
    assert client.post("/v1/penalty", json=SEED).status_code == 200
    pool = offload._pool
    assert pool is not None
    for pid in list(pool._processes):  # the pool's process dies, as if killed for memory
        os.kill(pid, signal.SIGKILL)
    response = client.post("/v1/penalty", json=SEED)
    assert (response.status_code, response.json()["error"]["code"]) == (503, "overloaded")
    assert response.headers["retry-after"] == "1"
    assert offload._pool is None
    assert client.post("/v1/penalty", json=SEED).json()["penalty"] == 4.8  # a new pool
