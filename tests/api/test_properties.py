"""Property-based run of the whole API (schemathesis, in-process): no 5xx, every response in schema.

Schemathesis generates bodies from the OpenAPI document — valid ones and, in negative
mode, ones that break it — and checks each answer: not a server error, a documented
status code and content type, and a body that matches the documented response schema
(the error envelope included).  The client raises any server-side exception, so a 500
cannot slip through as a mere status code.  The example count is bounded to keep the run
well under a minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import create_app
from tests.conftest import make_settings

EXAMPLES_PER_OPERATION = 100
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(make_settings()))
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], deterministic=True, database="none"
)


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_every_response_in_schema(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=CHECKS)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
VALID = {
    "/v1/penalty": {"tensor": [[1.0, -2.0]], "regularizer": "l1"},
    "/v1/penalties": {"weights": {"w": {"tensor": [1.0], "regularizer": "l2"}}},
    "/v1/dense": {"inputs": [[1.0, 2.0]], "kernel": [[1.0], [1.0]], "bias": [0.5], "activation": "relu",
                  "kernel_regularizer": "l1", "bias_regularizer": "l2", "activity_regularizer": "l1"},
    "/v1/network": {"inputs": [[1.0, 2.0]], "targets": [[1.0]], "loss": "mse",
                    "layers": [{"kernel": [[1.0], [1.0]], "bias": [0.5], "activation": "sigmoid"}]},
}
FIELDS = [(path, field) for path, body in VALID.items() for field in [*body, "encoding", "return_gradients"]]


@pytest.fixture(scope="module")
def fuzz_client() -> Iterator[TestClient]:
    with TestClient(create_app(make_settings()), raise_server_exceptions=True) as client:
        yield client


@pytest.mark.parametrize(("path", "field"), FIELDS, ids=[f"{p}:{f}" for p, f in FIELDS])
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=JSON)
def test_any_json_in_any_field_is_answered_without_a_server_error(
    fuzz_client: TestClient, path: str, field: str, value: Any
) -> None:
    response = fuzz_client.post(path, json={**VALID[path], field: value})
    assert response.status_code in (200, 400, 413, 422), response.text
    assert response.status_code == 200 or set(response.json()) == {"error"}
