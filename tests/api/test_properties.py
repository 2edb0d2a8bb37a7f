"""Property-based run of the whole API (schemathesis, in-process): no 5xx, every response in schema.

Schemathesis generates bodies from the OpenAPI document — valid ones and, in negative
mode, ones that break it — and checks each answer: not a server error, a documented
status code and content type, and a body that matches the documented response schema
(the error envelope included).  The client raises any server-side exception, so a 500
cannot slip through as a mere status code.  The example count is bounded to keep the run
well under a minute.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
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
