"""Malformed requests: each gets a 4xx with the whole error envelope asserted.

Schema errors (422) quote their location and message::

    {"error": {"code": C, "message": "<loc>: <msg>", "details": [{"loc": L, "msg": M, "type": C}]}}

which :func:`invalid` writes out; the other cases spell the whole body.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.core import losses
from service.errors import MAX_MESSAGE, dotted

# the message lists every canonical loss name, then every alias (the list grows with the registry)
LOSS_NAMES = ", ".join(losses.NAMES) + " (aliases: " + ", ".join(
    f"{alias} -> {name}" for alias, name in losses.ALIASES.items() if alias != name
) + ")"
NAN32 = base64.b64encode(struct.pack("<ff", 1.0, float("nan"))).decode()
INF64 = base64.b64encode(struct.pack("<d", float("inf"))).decode()


def envelope(code: str, message: str, details: list[dict[str, Any]]) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def invalid(loc: list[str | int], msg: str, code: str, kind: str | None = None) -> dict[str, Any]:
    """A 422 with one error at ``loc``; ``kind`` is the detail's type when it differs from ``code``."""
    return envelope(code, clipped(f"{dotted(loc)}: {msg}"), [{"loc": loc, "msg": clipped(msg), "type": kind or code}])


def clipped(text: str) -> str:
    """A message as the envelope bounds it (the loss list outgrew MAX_MESSAGE)."""
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "\u2026"


def tensor_error(msg: str) -> dict[str, Any]:
    return invalid(["body", "tensor"], msg, "invalid_tensor")


def spec_error(field: str, msg: str) -> dict[str, Any]:
    return invalid(["body", field], msg, "invalid_spec")


def json_error(msg: str) -> dict[str, Any]:
    return envelope("invalid_json", msg, [{"loc": ["body"], "msg": msg, "type": "invalid_json"}])


def core_error(code: str, loc: list[str | int], msg: str) -> dict[str, Any]:
    return envelope(code, msg, [{"loc": loc, "msg": msg, "type": code}])


def pen(tensor: Any, regularizer: Any = "l1", **fields: Any) -> dict[str, Any]:
    return {"tensor": tensor, "regularizer": regularizer, **fields}


def nested(depth: int) -> Any:
    value: Any = [1.0]
    for _ in range(depth - 1):
        value = [value]
    return value


MUST_BE_NUMBERS = "tensor elements must be JSON numbers"
ONE_OF_DATA_B64 = "a tensor object needs exactly one of data (numbers) and b64 (base64 of little-endian bytes)"
NOT_A_TENSOR = "a tensor is a JSON array of numbers or an object with shape, datatype and data (or b64)"
ONE_LAYER = {"inputs": [[1]], "targets": [[1]], "layers": [{"kernel": [[1]]}]}

# (id, path, JSON body, status, whole expected body)
CASES: list[tuple[str, str, Any, int, dict[str, Any]]] = [
    # -- tensors: 422 invalid_tensor
    ("ragged_rows", "/v1/penalty", pen([[1, 2], [3]]), 422,
     tensor_error("ragged array: [1] has 1 element but [0] has 2; every row must have the same length")),
    ("ragged_depth", "/v1/penalty", pen([[1, 2], [3, [4]]]), 422,
     tensor_error("ragged array: [1][1] is an array but [0][0] is a number; every row must have the same depth")),
    ("row_is_a_number", "/v1/penalty", pen([[1, 2], 3]), 422,
     tensor_error("ragged array: [1] is the number 3 but [0] is an array of 2; every row must have the same length")),
    ("string_element", "/v1/penalty", pen([[1, "2"]]), 422,
     tensor_error(f"[0][1] is a string ('2'); {MUST_BE_NUMBERS}")),
    ("boolean_element", "/v1/penalty", pen([1, True]), 422,
     tensor_error(f"[1] is a boolean (true); {MUST_BE_NUMBERS}")),
    ("null_element", "/v1/penalty", pen([1, None]), 422, tensor_error(f"[1] is null; {MUST_BE_NUMBERS}")),
    ("object_element", "/v1/penalty", pen([1, {}]), 422, tensor_error(f"[1] is an object; {MUST_BE_NUMBERS}")),
    ("fp32_overflow", "/v1/penalty", pen([1, 1e39]), 422,
     tensor_error("[1] = 1e+39 overflows FP32 (largest finite value 3.4028235e+38); "
                  "send it as FP64 or scale the tensor down")),
    ("fp16_overflow", "/v1/penalty", pen({"shape": [1], "datatype": "FP16", "data": [70000]}), 422,
     tensor_error("data[0] = 70000 overflows FP16 (largest finite value 6.55e+04); "
                  "send it as FP64 or scale the tensor down")),
    ("data_count_mismatch", "/v1/penalty", pen({"shape": [2, 2], "data": [1, 2, 3]}), 422,
     tensor_error("data has 3 numbers but shape [2, 2] needs 4")),
    ("nested_data_not_as_shape", "/v1/penalty", pen({"shape": [2, 2], "data": [[1, 2, 3, 4]]}), 422,
     tensor_error("data is nested as [1, 4] but shape is [2, 2]; send data flat in row-major order "
                  "or nested exactly as the shape")),
    ("negative_dimension", "/v1/penalty", pen({"shape": [2, -2], "data": []}), 422,
     tensor_error("shape[1] is the number -2; dimensions are integers >= 0")),
    ("fractional_dimension", "/v1/penalty", pen({"shape": [2.5], "data": [1, 2]}), 422,
     tensor_error("shape[0] is the number 2.5; dimensions are integers >= 0")),
    ("boolean_dimension", "/v1/penalty", pen({"shape": [True], "data": [1]}), 422,
     tensor_error("shape[0] is a boolean (true); dimensions are integers >= 0")),
    ("shape_not_an_array", "/v1/penalty", pen({"shape": 4, "data": [1, 2, 3, 4]}), 422,
     tensor_error("shape must be an array of dimension sizes, got the number 4")),
    ("unknown_datatype", "/v1/penalty", pen({"shape": [1], "datatype": "FP8", "data": [1]}), 422,
     tensor_error("datatype 'FP8' is not supported; use one of FP16, FP32, FP64")),
    ("lowercase_datatype", "/v1/penalty", pen({"shape": [1], "datatype": "fp32", "data": [1]}), 422,
     tensor_error("datatype 'fp32' is not supported; use one of FP16, FP32, FP64")),
    ("unknown_tensor_key", "/v1/penalty", pen({"shape": [1], "dtype": "FP32", "data": [1]}), 422,
     tensor_error("unknown key 'dtype' in a tensor object (did you mean 'datatype'?); "
                  "expected shape, datatype, data, b64")),
    ("data_and_b64", "/v1/penalty", pen({"shape": [1], "data": [1], "b64": "AACAPw=="}), 422,
     tensor_error(f"{ONE_OF_DATA_B64}, got both")),
    ("neither_data_nor_b64", "/v1/penalty", pen({"shape": [1]}), 422,
     tensor_error(f"{ONE_OF_DATA_B64}, got neither")),
    ("b64_without_shape", "/v1/penalty", pen({"b64": "AACAPw=="}), 422,
     tensor_error('a b64 tensor needs its shape, e.g. "shape": [2, 3]')),
    ("b64_invalid_characters", "/v1/penalty", pen({"shape": [1], "b64": "!!!!"}), 422,
     tensor_error("b64 is not valid base64 (Only base64 data is allowed); encode the little-endian "
                  "bytes with the standard alphabet and padding")),
    ("b64_wrong_length", "/v1/penalty", pen({"shape": [1], "b64": "AAAA"}), 422,
     tensor_error("b64 holds 3 bytes but shape [1] in FP32 needs 4 (1 element × 4 bytes)")),
    ("b64_nan", "/v1/penalty", pen({"shape": [2], "b64": NAN32}), 422,
     tensor_error("b64[1] is nan; tensor elements must be finite")),
    ("b64_infinity_fp64", "/v1/penalty", pen({"shape": [1], "datatype": "FP64", "b64": INF64}), 422,
     tensor_error("b64[0] is inf; tensor elements must be finite")),
    ("b64_not_a_string", "/v1/penalty", pen({"shape": [1], "b64": 5}), 422,
     tensor_error("b64 must be a base64 string, got the number 5")),
    ("data_not_an_array", "/v1/penalty", pen({"shape": [1], "data": 5}), 422,
     tensor_error("data must be a JSON array of numbers, got the number 5")),
    ("tensor_is_a_number", "/v1/penalty", pen(5), 422, tensor_error(f"{NOT_A_TENSOR}, got the number 5")),
    ("tensor_is_a_string", "/v1/penalty", pen("[[1, 2]]"), 422,
     tensor_error(f"{NOT_A_TENSOR}, got a string ('[[1, 2]]')")),
    ("tensor_is_null", "/v1/penalty", pen(None), 422, tensor_error(f"{NOT_A_TENSOR}, got null")),
    ("nesting_over_the_rank_limit", "/v1/penalty", pen(nested(33)), 422,
     tensor_error("the array nests more than 32 levels deep; tensors have at most 32 dimensions")),
    ("shape_over_the_rank_limit", "/v1/penalty", pen({"shape": [1] * 33, "data": [1]}), 422,
     tensor_error("shape has 33 dimensions; at most 32 are allowed")),
    # -- regularizer, activation and loss specs: 422 invalid_spec (the core's messages)
    ("unknown_identifier", "/v1/penalty", pen([1], "l3"), 422,
     spec_error("regularizer", "unknown regularizer 'l3'; expected one of l1, l2, l1l2, l1_l2, orthogonal_regularizer, "
                     "L1, L2, L1L2, OrthogonalRegularizer")),
    ("unknown_type", "/v1/penalty", pen([1], {"type": "l3"}), 422,
     spec_error("regularizer", "unknown regularizer type 'l3'; expected one of l1, l2, l1l2, orthogonal")),
    ("negative_factor", "/v1/penalty", pen([1], {"type": "l1", "l1": -0.1}), 422,
     spec_error("regularizer", "l1 must be finite and >= 0, got -0.1")),
    ("string_factor", "/v1/penalty", pen([1], {"type": "l2", "l2": "0.1"}), 422,
     spec_error("regularizer", "l2 must be a number, got '0.1'")),
    ("unknown_parameter", "/v1/penalty", pen([1], {"type": "l1", "l2": 0.1}), 422,
     spec_error("regularizer", "l1: unknown parameter 'l2' for l1; expected l1")),
    ("orthogonal_bad_mode", "/v1/penalty", pen([[1]], {"type": "orthogonal", "mode": "diagonal"}), 422,
     spec_error("regularizer", "mode must be 'rows' or 'columns', got 'diagonal'")),
    ("unknown_keras_class", "/v1/penalty", pen([1], {"class_name": "L3", "config": {}}), 422,
     spec_error("regularizer", "unknown Keras regularizer class 'L3'; expected one of L1, L2, L1L2, "
                               "OrthogonalRegularizer (or their snake_case names)")),
    ("keras_form_extra_key", "/v1/penalty", pen([1], {"class_name": "L1", "config": {}, "name": "x"}), 422,
     spec_error("regularizer", "unknown key 'name' in a Keras regularizer; expected class_name, config, "
                               "module, registered_name")),
    ("spec_without_type", "/v1/penalty", pen([1], {"l1": 0.1}), 422,
     spec_error("regularizer", "a regularizer object needs 'type' (e.g. {\"type\": \"l1\", \"l1\": 0.01}) "
                               "or 'class_name' (Keras serialized form)")),
    ("regularizer_is_a_number", "/v1/penalty", pen([1], 5), 422,
     spec_error("regularizer", "a regularizer is a string or an object, got int")),
    ("activation_unknown_parameter", "/v1/dense",
     {"inputs": [[1]], "kernel": [[1]], "activation": {"name": "leaky_relu", "slope": 0.1}}, 422,
     spec_error("activation", "unknown parameter 'slope' for activation leaky_relu; its parameters are: negative_slope")),
    ("unknown_loss", "/v1/network", {**ONE_LAYER, "loss": "mse2"}, 422,
     spec_error("loss", f"unknown loss 'mse2'; expected one of {LOSS_NAMES}")),
    ("duplicate_layer_names", "/v1/network",
     {**ONE_LAYER, "layers": [{"kernel": [[1]], "name": "a"}, {"kernel": [[1]], "name": "a"}]}, 422,
     core_error("invalid_spec", ["body", "layers", 1, "name"], "layer names must be unique: 'a' names layers 0 and 1")),
    ("layer_name_with_slash", "/v1/network", {**ONE_LAYER, "layers": [{"kernel": [[1]], "name": "a/b"}]}, 422,
     core_error("invalid_spec", ["body", "layers", 0, "name"],
                "layers.0.name must be a non-empty string without '/', got 'a/b'")),
    # -- unknown fields: 422 unknown_field, with the closest known name
    ("typo_return_gradiens", "/v1/penalty", pen([1], return_gradiens=False), 422,
     invalid(["body", "return_gradiens"], "unknown field (did you mean 'return_gradient'?); the fields are "
             "tensor, regularizer, return_gradient, encoding", "unknown_field")),
    ("unknown_field_in_a_weight", "/v1/penalties",
     {"weights": {"w": {"tensor": [1], "regularizer": "l1", "factor": 1}}}, 422,
     invalid(["body", "weights", "w", "factor"], "unknown field; the fields are tensor, regularizer",
             "unknown_field")),
    ("unknown_field_in_a_layer", "/v1/network", {**ONE_LAYER, "layers": [{"kernel": [[1]], "activaton": "relu"}]},
     422, invalid(["body", "layers", 0, "activaton"], "unknown field (did you mean 'activation'?); the fields are "
                  "kernel, bias, activation, kernel_regularizer, bias_regularizer, activity_regularizer, name",
                  "unknown_field")),
    # -- other schema errors: 422 validation_error
    ("missing_tensor", "/v1/penalty", {"regularizer": "l1"}, 422,
     invalid(["body", "tensor"], "Field required", "validation_error", "missing")),
    ("return_gradient_as_string", "/v1/penalty", pen([1], return_gradient="yes"), 422,
     invalid(["body", "return_gradient"], 'a gradient selection must be true, false, "totals" or '
             '{"parameters": [...], "terms": [...]}, got \'yes\'', "invalid_spec")),
    ("unknown_encoding", "/v1/penalty", pen([1], encoding="base64"), 422,
     invalid(["body", "encoding"], "Input should be 'json' or 'b64'", "validation_error", "enum")),
    ("body_is_an_array", "/v1/penalty", [1, 2], 422,
     invalid(["body"], "Input should be a valid dictionary or object to extract fields from", "validation_error",
             "model_attributes_type")),
    ("unknown_activity_normalization", "/v1/dense", {"inputs": [[1]], "kernel": [[1]], "activity_normalization": "sum"},
     422, invalid(["body", "activity_normalization"], "Input should be 'batch' or 'none'", "validation_error", "enum")),
    ("no_layers", "/v1/network", {**ONE_LAYER, "layers": []}, 422,
     invalid(["body", "layers"], "List should have at least 1 item after validation, not 0", "validation_error",
             "too_short")),
    ("weights_not_an_object", "/v1/penalties", {"weights": []}, 422,
     invalid(["body", "weights"], "Input should be a valid dictionary", "validation_error", "dict_type")),
    ("layer_name_not_a_string", "/v1/network", {**ONE_LAYER, "layers": [{"kernel": [[1]], "name": 7}]}, 422,
     invalid(["body", "layers", 0, "name"], "Input should be a valid string", "validation_error", "string_type")),
    ("two_errors_are_both_reported", "/v1/penalty", {"tensor": [[1], [2, 3]], "regularizer": "l3"}, 422,
     envelope("invalid_tensor",
              "body.tensor: ragged array: [1] has 2 elements but [0] has 1; every row must have the same length; "
              "body.regularizer: unknown regularizer 'l3'; expected one of l1, l2, l1l2, l1_l2, "
              "orthogonal_regularizer, L1, L2, L1L2, OrthogonalRegularizer",
              [{"loc": ["body", "tensor"], "type": "invalid_tensor",
                "msg": "ragged array: [1] has 2 elements but [0] has 1; every row must have the same length"},
               {"loc": ["body", "regularizer"], "type": "invalid_spec",
                "msg": "unknown regularizer 'l3'; expected one of l1, l2, l1l2, l1_l2, orthogonal_regularizer, "
                       "L1, L2, L1L2, OrthogonalRegularizer"}])),
    # -- well-formed but cannot be computed: 400
    ("dense_shape_mismatch", "/v1/dense", {"inputs": [[1, 2, 3]], "kernel": [[1], [1]]}, 400,
     core_error("shape_mismatch", ["body", "kernel"], "kernel has 2 rows but inputs have 3 features (last axis)")),
    ("dense_bias_shape_mismatch", "/v1/dense", {"inputs": [[1, 2]], "kernel": [[1], [1]], "bias": [1, 2]}, 400,
     core_error("shape_mismatch", ["body", "bias"],
                "bias has shape [2] but the kernel has 1 units; bias must have shape [1]")),
    ("orthogonal_on_rank_3", "/v1/penalty", pen([[[1]]], "orthogonal_regularizer"), 400,
     core_error("shape_mismatch", ["body", "tensor"], "the orthogonal regularizer takes a rank-2 tensor, got rank 3 "
                "(shape [1, 1, 1]); reshape it to (rows, columns) first")),
    ("l2_overflows_fp32", "/v1/penalty", pen([1e20, 1e20], {"type": "l2", "l2": 1}), 400,
     core_error("non_finite_result", ["result", "penalty"], "penalty is not finite in FP32 (it overflowed the "
                "dtype); use smaller values or a wider datatype such as FP64")),
    ("network_loss_overflows", "/v1/network", {**ONE_LAYER, "layers": [{"kernel": [[1e30]]}], "inputs": [[1e10]]},
     400, core_error("non_finite_result", ["result", "losses", "data_loss"], "losses.data_loss is not finite in FP32 "
                     "(it overflowed the dtype); use smaller values or a wider datatype such as FP64")),
    ("targets_shape_mismatch", "/v1/network", {**ONE_LAYER, "targets": [[1, 2]]}, 400,
     core_error("shape_mismatch", ["body", "targets"],
                "targets have shape [1, 2] but the network outputs shape [1, 1]; they must be equal "
                "(or differ by a trailing axis of size 1)")),
]

# (id, raw body, whole expected body) — sent with Content-Type: application/json
RAW_CASES: list[tuple[str, bytes, dict[str, Any]]] = [
    ("malformed_json", b'{"tensor": [1, 2',
     json_error("the body is not valid JSON (EOF while parsing a list at line 1 column 16); "
                "send a JSON object as API.md describes")),
    ("nan_literal", b'{"tensor": [NaN], "regularizer": "l1"}',
     json_error("the body is not valid JSON (expected value at line 1 column 13); "
                "send a JSON object as API.md describes")),
    ("infinity_literal", b'{"tensor": [Infinity], "regularizer": "l1"}',
     json_error("the body is not valid JSON (expected value at line 1 column 13); "
                "send a JSON object as API.md describes")),
    ("number_overflowing_a_double", b'{"tensor": [1e400], "regularizer": "l1"}',
     tensor_error("[0] is inf; tensor elements must be finite")),
    ("integer_of_five_thousand_digits", b'{"tensor": [' + b"9" * 5000 + b'], "regularizer": "l1"}',
     json_error("the body is not valid JSON (number out of range at line 1 column 4314); "
                "send a JSON object as API.md describes")),
    ("five_thousand_levels_deep", b'{"tensor": ' + b"[" * 5000 + b"]" * 5000 + b', "regularizer": "l1"}',
     json_error("the body nests too deeply (recursion limit exceeded at line 1 column 212); "
                "a tensor has at most 32 dimensions")),
    ("trailing_garbage", b'{"tensor": [1], "regularizer": "l1"} x',
     json_error("the body is not valid JSON (trailing characters at line 1 column 38); "
                "send a JSON object as API.md describes")),
    ("invalid_utf8", b'{"tensor": [1], "regularizer": "\xff"}',
     json_error("the body is not valid JSON (invalid unicode code point at line 1 column 33); "
                "send a JSON object as API.md describes")),
    ("empty_body", b"", invalid(["body"], "Field required", "validation_error", "missing")),
]


@pytest.mark.parametrize(("path", "body", "status", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_request(client: TestClient, path: str, body: Any, status: int, expected: dict[str, Any]) -> None:
    response = client.post(path, json=body)
    assert (response.status_code, response.json()) == (status, expected)


@pytest.mark.parametrize(("raw", "expected"), [c[1:] for c in RAW_CASES], ids=[c[0] for c in RAW_CASES])
def test_malformed_json(client: TestClient, raw: bytes, expected: dict[str, Any]) -> None:
    response = client.post("/v1/penalty", content=raw, headers={"Content-Type": "application/json"})
    assert (response.status_code, response.json()) == (422, expected)


DEEP_FIELDS = [
    ("/v1/network", b'{"inputs": %s}'),
    ("/v1/network", b'{"layers": [{"kernel": %s}]}'),
    ("/v1/penalty", b'{"tensor": [1], "regularizer": {"type": "l1", "l1": %s}}'),
    ("/v1/penalty", b'{"tensor": [1], "regularizer": {"type": %s}}'),
    ("/v1/penalty", b'{"tensor": [1], "regularizer": {"class_name": "L1", "config": {"l1": %s}}}'),
    ("/v1/penalty", b'{"tensor": {"shape": [1], "datatype": %s, "data": [1]}, "regularizer": "l1"}'),
    ("/v1/penalty", b'{"tensor": [1], "regularizer": "l1", "encoding": %s}'),
    ("/v1/dense", b'{"inputs": [[1]], "kernel": [[1]], "activation": {"name": "relu", "max_value": %s}}'),
    ("/v1/network", b'{"inputs": [[1]], "targets": [[1]], "layers": [{"kernel": [[1]]}], "loss": {"name": %s}}'),
]


@pytest.mark.parametrize("depth", [150, 1000, 3000])
@pytest.mark.parametrize(("path", "template"), DEEP_FIELDS)
def test_deep_nesting_in_any_field_is_a_422(client: TestClient, path: str, template: bytes, depth: int) -> None:
    """Arrays nested hundreds or thousands of levels deep anywhere are refused, never a
    RecursionError: the parser stops at 200 levels, and below that every message is built
    without recursing through the value."""
    body = template % (b"[" * depth + b"1" + b"]" * depth)
    response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] in {"invalid_json", "invalid_tensor", "invalid_spec", "validation_error"}


def test_a_long_value_quoted_in_a_message_is_clipped(client: TestClient) -> None:
    response = client.post("/v1/penalty", json=pen([1], {"type": "l1", "l1": [1.5] * 100_000}))
    error = response.json()["error"]
    assert (response.status_code, error["code"]) == (422, "invalid_spec")
    # the core quotes a bounded repr; the edge clips anything longer than 1000 characters
    assert error["details"][0]["msg"] == "l1 must be a number, got [1.5, 1.5, 1.5, 1.5, 1.5, 1.5, ...]"
    assert error["message"] == "body.regularizer: l1 must be a number, got [1.5, 1.5, 1.5, 1.5, 1.5, 1.5, ...]"


@pytest.mark.parametrize(
    ("content_type", "shown"),
    [("text/plain", "text/plain"), ("application/x-www-form-urlencoded", "application/x-www-form-urlencoded"),
     ("multipart/form-data; boundary=x", "multipart/form-data; boundary=x"), ("application/xml", "application/xml")],
)
def test_non_json_content_type_is_415(client: TestClient, content_type: str, shown: str) -> None:
    response = client.post("/v1/penalty", content=b'{"tensor": [1], "regularizer": "l1"}',
                           headers={"Content-Type": content_type})
    assert (response.status_code, response.json()) == (415, envelope(
        "unsupported_media_type", f"the body must be JSON with 'Content-Type: application/json', got {shown}", []))


def test_missing_content_type_is_415(client: TestClient) -> None:
    response = client.post("/v1/penalty", content=b'{"tensor": [1], "regularizer": "l1"}')
    assert (response.status_code, response.json()) == (415, envelope(
        "unsupported_media_type",
        "the body must be JSON with 'Content-Type: application/json', got no Content-Type", []))


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/problem+json"])
def test_json_content_types_are_accepted(client: TestClient, content_type: str) -> None:
    response = client.post("/v1/penalty", content=b'{"tensor": [1], "regularizer": "l1"}',
                           headers={"Content-Type": content_type})
    assert response.status_code == 200


def test_unknown_route_is_404(client: TestClient) -> None:
    response = client.get("/v1/penalty/extra")
    assert (response.status_code, response.json()) == (404, envelope(
        "not_found", "no route GET /v1/penalty/extra; the API is described at /docs", []))


def test_unknown_route_with_a_body_is_404(client: TestClient) -> None:
    response = client.post("/v2/penalty", json={"tensor": [1]})
    assert (response.status_code, response.json()) == (404, envelope(
        "not_found", "no route POST /v2/penalty; the API is described at /docs", []))


@pytest.mark.parametrize(("method", "path", "allowed"), [("GET", "/v1/penalty", "POST"),
                                                          ("DELETE", "/v1/regularizers", "GET"),
                                                          ("POST", "/healthz", "GET")])
def test_wrong_method_is_405(client: TestClient, method: str, path: str, allowed: str) -> None:
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    assert response.json() == envelope("method_not_allowed", f"{method} is not allowed on {path}; use {allowed}", [])


def test_the_service_keeps_serving_after_every_malformed_request(client: TestClient) -> None:
    for _, path, body, _, _ in CASES:
        client.post(path, json=body)
    for _, raw, _ in RAW_CASES:
        client.post("/v1/penalty", content=raw, headers={"Content-Type": "application/json"})
    assert client.post("/v1/penalty", json=pen([[3, 3]], {"type": "l1", "l1": 0.1}),).json()["penalty"] == 0.6


@pytest.mark.parametrize("spec", [{"type": ["l1"]}, {"type": {"l1": 1}}, {"class_name": ["L1"]}, ["l1"]])
def test_specs_of_unexpected_json_types_are_422(client: TestClient, spec: Any) -> None:
    """Found by the property-based run: a list or object where a name belongs is the client's error."""
    response = client.post("/v1/penalty", json=pen([1], spec))
    assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_spec")


def test_an_activation_axis_out_of_range_is_located_in_its_layer(client: TestClient) -> None:
    msg = "layers.1.activation: softmax axis 3 is out of range for a tensor of rank 2 (shape [1, 1])"
    body = {"inputs": [[1, 2]], "targets": [[1]],
            "layers": [{"kernel": [[1], [2]]}, {"kernel": [[1]], "activation": {"name": "softmax", "axis": 3}}]}
    response = client.post("/v1/network", json=body)
    assert (response.status_code, response.json()) == (400, envelope("shape_mismatch", msg, [
        {"loc": ["body", "layers", 1, "activation", "axis"], "msg": msg, "type": "shape_mismatch"}]))
