"""The Keras 3.15 reference vectors (tests/reference/vectors) sent over HTTP in every tensor form.

Each request is posted three times: tensors as nested arrays, as flat ``data``, and as
``b64`` (with ``"encoding": "b64"`` so the answer comes back as bytes too).  Results are
compared with rtol 1e-5 and atol 1e-6 × the largest expected magnitude: the core's own
test (tests/core/test_keras_reference.py) holds the tight per-family tolerances; this one
shows that nothing is lost or rounded on the way through the wire.

Activation cases go through ``/v1/dense`` with an identity kernel (``x · I`` is exact),
so their ``y`` is checked over HTTP as well.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.reference import vectors

FORMS = ("nested", "flat", "b64")
RTOL, ATOL = 1e-5, 1e-6


def as_form(obj: Any, form: str) -> Any:
    """A copy of a request with every wire tensor in ``form``."""
    if vectors.is_tensor(obj):
        x = vectors.tensor(obj)
        if form == "flat":
            return obj
        if form == "b64":
            raw = x.astype(x.dtype.newbyteorder("<")).tobytes()
            return {"shape": obj["shape"], "datatype": obj["datatype"], "b64": base64.b64encode(raw).decode()}
        nested = x.tolist()
        if obj["datatype"] == "FP32" and x.ndim and x.size:
            return nested  # a bare nested array is FP32
        return {"shape": obj["shape"], "datatype": obj["datatype"], "data": nested}
    if isinstance(obj, dict):
        return {k: as_form(v, form) for k, v in obj.items()}
    if isinstance(obj, list):
        return [as_form(v, form) for v in obj]
    return obj


def received(obj: Any) -> Any:
    """A response with every tensor (``data`` or ``b64``) turned into an ndarray."""
    if isinstance(obj, dict) and "shape" in obj and "datatype" in obj:
        dtype = np.dtype(vectors.DTYPES[obj["datatype"]])
        if "b64" in obj:
            flat = np.frombuffer(base64.b64decode(obj["b64"]), dtype.newbyteorder("<"))
        else:
            flat = np.asarray(obj["data"], dtype)
        return flat.astype(dtype).reshape(obj["shape"])
    if isinstance(obj, dict):
        return {k: received(v) for k, v in obj.items()}
    return obj


def assert_close(actual: Any, expected: Any, where: str) -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), (
            f"{where}: keys {sorted(actual) if isinstance(actual, dict) else actual} != {sorted(expected)}")
        for key in expected:
            assert_close(actual[key], expected[key], f"{where}.{key}")
        return
    expected = np.asarray(expected)
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, f"{where}: shape {actual.shape} != {expected.shape}"
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL * max(scale, 1e-30), err_msg=where)


def post(client: TestClient, path: str, request: dict[str, Any], form: str) -> Any:
    body = as_form(request, form)
    if form == "b64":
        body["encoding"] = "b64"
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    return received(response.json())


ROUTE_FAMILIES = [("regularizers", "/v1/penalty"), ("dense", "/v1/dense"), ("network", "/v1/network")]
ROUTE_CASES = [
    pytest.param(path, case, form, id=f"{family}-{case['id']}-{form}")
    for family, path in ROUTE_FAMILIES
    for case in vectors.cases(family)
    for form in FORMS
]


@pytest.mark.parametrize(("path", "case", "form"), ROUTE_CASES)
def test_reference_case_over_http(client: TestClient, path: str, case: dict[str, Any], form: str) -> None:
    answer = post(client, path, case["request"], form)
    expected = vectors.arrays(case["expected"])
    assert_close({k: answer[k] for k in expected}, expected, case["id"])


ACTIVATION_CASES = [
    pytest.param(case, form, id=f"{case['id']}-{form}") for case in vectors.cases("activations") for form in FORMS
]


@pytest.mark.parametrize(("case", "form"), ACTIVATION_CASES)
def test_reference_activation_through_an_identity_dense_layer(
    client: TestClient, case: dict[str, Any], form: str
) -> None:
    x = case["x"]
    units = x["shape"][-1]
    identity = {"shape": [units, units], "datatype": x["datatype"],
                "data": np.eye(units).reshape(-1).tolist()}
    request = {"inputs": x, "kernel": identity, "activation": case["activation"], "return_gradients": False}
    answer = post(client, "/v1/dense", request, form)
    assert_activation_close(answer["outputs"], case)


def assert_activation_close(outputs: np.ndarray, case: dict[str, Any]) -> None:
    """An activation case's answer against Keras: :func:`assert_close`, or for FP16 (Keras's
    half kernels vs float32-then-rounded) the README's FP16 bound."""
    expected = vectors.tensor(case["expected"]["y"])
    if case["x"]["datatype"] == "FP16":
        assert outputs.dtype == np.float16 and outputs.shape == expected.shape
        bound = 2.1e-3 * np.maximum(1.0, np.abs(expected.astype(np.float64)))
        assert np.all(np.abs(outputs.astype(np.float64) - expected) <= bound), case["id"]
        return
    assert_close(outputs, expected, case["id"])


def test_reference_losses_over_network_with_an_identity_layer(client: TestClient) -> None:
    """Every loss case with 2-D tensors through /v1/network (identity kernel, linear): the data
    loss is Keras's value and its kernel gradient is inputs^T·(Keras's gradient wrt y_pred)."""
    checked = 0
    for case in vectors.cases("losses"):
        c = vectors.arrays(case)
        y_pred = c["y_pred"]
        value = np.asarray(c["expected"]["value"])
        if y_pred.ndim != 2 or value.ndim:
            continue
        units = y_pred.shape[-1]
        request: dict[str, Any] = {
            "inputs": case["y_pred"], "targets": case["y_true"], "loss": case["loss"],
            "layers": [{"kernel": {"shape": [units, units], "datatype": case["y_pred"]["datatype"],
                                   "data": np.eye(units).reshape(-1).tolist()}}],
        }
        if "sample_weight" in case:
            request["sample_weight"] = case["sample_weight"]
        answer = post(client, "/v1/network", request, "flat")
        assert_close(answer["losses"]["data_loss"], value, case["id"])
        expected_grad = y_pred.T @ c["expected"]["gradient"]
        assert_close(answer["gradients"]["dense/kernel"]["data_loss"], expected_grad, case["id"])
        checked += 1
    assert checked >= 99  # every 2-D case with a scalar value
