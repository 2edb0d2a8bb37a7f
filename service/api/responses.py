"""The error responses the POST routes document in OpenAPI (every body is the one envelope)."""

from typing import Any

from service.schemas import ErrorResponse


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


POST_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("Well-formed, but cannot be computed: shape_mismatch, non_finite_result."),
    413: _error("Over a limit: payload_too_large, too_many_elements, too_many_layers."),
    415: _error("The body is not declared as JSON: unsupported_media_type."),
    422: _error(
        "Schema errors: invalid_json, unknown_field, invalid_tensor, invalid_spec, validation_error."
    ),
}
