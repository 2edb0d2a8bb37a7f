"""Every route's safetensors answer equals its JSON answer bit for bit, over the Keras
reference vectors (tests/reference/vectors/*.json).

Each request goes twice: as JSON with ``"encoding": "b64"`` (the answer's bytes are the
arrays' own), and as a safetensors body (tensors named by their JSON path, read by the
independent ``safetensors`` package's writer) with ``Accept: application/x-safetensors``.
The two answers must hold the same tensors (same names, dtypes, shapes, bytes) and the
same non-tensor fields; and the binary answer must also match Keras (within the wire
test's tolerance), so that the comparison is not between two equal wrongs.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from tests.api.test_reference_vectors import assert_activation_close, assert_close
from tests.reference import vectors

BINARY = "application/x-safetensors"
DTYPES = {"FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}


def split(obj: Any, path: str, tensors: dict[str, np.ndarray]) -> Any:
    """A reference request with its tensors moved out (named by dot-joined path)."""
    if vectors.is_tensor(obj):
        tensors[path] = vectors.tensor(obj)
        return None
    if isinstance(obj, dict):
        kept = {k: split(v, f"{path}.{k}" if path else k, tensors) for k, v in obj.items()}
        return {k: v for k, v in kept.items() if not vectors.is_tensor(obj[k])}
    if isinstance(obj, list):
        return [split(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def json_answer(client: TestClient, path: str, request: dict[str, Any]) -> tuple[dict[str, np.ndarray], Any]:
    """The JSON (b64) answer as ``(tensors by path, the rest)``."""
    response = client.post(path, json={**request, "encoding": "b64"})
    assert response.status_code == 200, response.text
    tensors: dict[str, np.ndarray] = {}

    def take(obj: Any, where: str) -> Any:
        if isinstance(obj, dict) and "b64" in obj:
            raw = base64.b64decode(obj["b64"])
            tensors[where] = np.frombuffer(raw, DTYPES[obj["datatype"]]).reshape(obj["shape"])
            return None
        if isinstance(obj, dict):
            kept = {k: take(v, f"{where}.{k}" if where else k) for k, v in obj.items()}
            return {k: v for k, v in kept.items() if not (isinstance(obj[k], dict) and "b64" in obj[k])}
        return obj

    return tensors, take(response.json(), "")


def binary_answer(client: TestClient, path: str, request: dict[str, Any]) -> tuple[dict[str, np.ndarray], Any]:
    tensors: dict[str, np.ndarray] = {}
    rest = split(request, "", tensors)
    body = st_save(tensors, metadata={"json": json.dumps(rest)})
    response = client.post(path, content=body, headers={"Content-Type": BINARY, "Accept": BINARY})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == BINARY
    answer = st_load(response.content)
    metadata = json.loads(_metadata(response.content)["json"])
    return answer, metadata


def _metadata(body: bytes) -> dict[str, str]:
    n = int.from_bytes(body[:8], "little")
    return dict(json.loads(body[8 : 8 + n]).get("__metadata__", {}))


def assert_same(path: str, request: dict[str, Any], client: TestClient) -> dict[str, np.ndarray]:
    j_tensors, j_rest = json_answer(client, path, request)
    b_tensors, b_rest = binary_answer(client, path, request)
    assert sorted(b_tensors) == sorted(j_tensors)
    for name, expected in j_tensors.items():
        got = b_tensors[name]
        assert (got.dtype, got.shape) == (expected.dtype.newbyteorder("="), expected.shape), name
        assert got.tobytes() == expected.tobytes(), f"{name} differs"
    assert b_rest == j_rest
    return b_tensors


ROUTE_CASES = [
    pytest.param(path, case, id=f"{family}-{case['id']}")
    for family, path in [("regularizers", "/v1/penalty"), ("dense", "/v1/dense"), ("network", "/v1/network")]
    for case in vectors.cases(family)
]


@pytest.mark.parametrize(("path", "case"), ROUTE_CASES)
def test_binary_answer_is_the_json_answer_bit_for_bit(client: TestClient, path: str, case: dict[str, Any]) -> None:
    tensors = assert_same(path, case["request"], client)
    expected = vectors.arrays(case["expected"])
    for name, value in expected.items():  # and it is Keras's answer
        if isinstance(value, np.ndarray):
            assert_close(tensors[name], value, f"{case['id']}.{name}")


@pytest.mark.parametrize("case", vectors.cases("activations"), ids=lambda c: c["id"])
def test_binary_activation_answers_through_an_identity_dense_layer(client: TestClient, case: dict[str, Any]) -> None:
    x = case["x"]
    units = x["shape"][-1]
    identity = {"shape": [units, units], "datatype": x["datatype"], "data": np.eye(units).reshape(-1).tolist()}
    request = {"inputs": x, "kernel": identity, "activation": case["activation"], "return_gradients": False}
    tensors = assert_same("/v1/dense", request, client)
    assert_activation_close(tensors["outputs"], case)


def test_penalties_with_dotted_weight_names(client: TestClient) -> None:
    """A weight name holding dots still names its field (the shortest key that reaches a tensor)."""
    request = {"weights": {
        "block.1/kernel": {"tensor": {"shape": [2], "datatype": "FP64", "data": [1.5, -2.0]}, "regularizer": "l1"},
        "dense/bias": {"tensor": {"shape": [3], "datatype": "FP16", "data": [0.5, 0.25, -1]}, "regularizer": "l2"},
    }}
    tensors = assert_same("/v1/penalties", request, client)
    assert sorted(tensors) == ["gradients.block.1/kernel", "gradients.dense/bias"]
