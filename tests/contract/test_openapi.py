"""The OpenAPI document: committed copy equals the live spec; ids, names and examples are stable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

OPENAPI_JSON = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"

OPERATIONS = {
    ("post", "/v1/penalty"): "compute_penalty",
    ("post", "/v1/penalties"): "compute_penalties",
    ("post", "/v1/dense"): "dense_forward",
    ("post", "/v1/network"): "network_forward",
    ("post", "/v1/model"): "model_forward",
    ("get", "/v1/regularizers"): "list_regularizers",
    ("get", "/v1/activations"): "list_activations",
    ("get", "/v1/losses"): "list_losses",
    ("get", "/healthz"): "liveness",
    ("get", "/readyz"): "readiness",
    ("post", "/v1/optimizer/step"): "optimizer_step",
    ("post", "/v1/train"): "train",
    ("get", "/v1/conventions"): "list_conventions",
    ("get", "/v1/optimizers"): "list_optimizers",
}
REQUESTS = {"compute_penalty": "PenaltyRequest", "compute_penalties": "PenaltiesRequest",
            "dense_forward": "DenseRequest", "network_forward": "NetworkRequest", "model_forward": "ModelRequest"}


@pytest.fixture(scope="module")
def spec(app: FastAPI) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(app.openapi()))
    return result


def test_committed_openapi_json_equals_the_live_spec(spec: dict[str, Any]) -> None:
    committed = json.loads(OPENAPI_JSON.read_text(encoding="utf-8"))
    assert committed == spec, "openapi/openapi.json is out of date: run `make openapi`"


def test_served_spec_is_the_app_spec(client: TestClient, spec: dict[str, Any]) -> None:
    assert client.get("/openapi.json").json() == spec


def test_operations_and_their_ids(spec: dict[str, Any]) -> None:
    found = {(method, path): op["operationId"] for path, item in spec["paths"].items() for method, op in item.items()}
    assert found == OPERATIONS


@pytest.mark.parametrize(("operation", "model"), sorted(REQUESTS.items()))
def test_request_bodies_are_named_schemas_with_examples(spec: dict[str, Any], operation: str, model: str) -> None:
    op = next(op for item in spec["paths"].values() for op in item.values() if op["operationId"] == operation)
    assert op["requestBody"]["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{model}"}
    schema = spec["components"]["schemas"][model]
    assert schema["additionalProperties"] is False
    assert schema["examples"]
    assert set(op["responses"]) == {"200", "400", "413", "415", "422"}
    assert op["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorResponse"}


def test_every_example_is_accepted_and_the_seed_gives_4_8(spec: dict[str, Any], client: TestClient) -> None:
    paths = {"PenaltyRequest": "/v1/penalty", "PenaltiesRequest": "/v1/penalties",
             "DenseRequest": "/v1/dense", "NetworkRequest": "/v1/network", "ModelRequest": "/v1/model"}
    for model, path in paths.items():
        for example in spec["components"]["schemas"][model]["examples"]:
            response = client.post(path, json=example)
            assert response.status_code == 200, (model, response.text)
    seed = spec["components"]["schemas"]["PenaltyRequest"]["examples"][0]
    assert seed == {"tensor": [[[3, 3, 3, 3], [3, 3, 3, 3]], [[3, 3, 3, 3], [3, 3, 3, 3]]],
                    "regularizer": {"type": "l1", "l1": 0.1}}
    assert client.post("/v1/penalty", json=seed).json()["penalty"] == 4.8


def test_component_names_read_well_in_a_generated_client(spec: dict[str, Any]) -> None:
    assert sorted(spec["components"]["schemas"]) == sorted([
        "ActivationList", "ActivationName", "ActivationObject", "ActivityNormalization", "Datatype",
        "DenseLayer", "DenseRequest", "DenseResponse", "Diagnostic", "Encoding", "ErrorBody", "ErrorDetail",
        "ErrorResponse", "FunctionInfo", "GradientSelection", "KerasRegularizer", "L1L2Regularizer", "L1Regularizer", "L2Regularizer",
        "LayerSummary", "LossList", "LossName", "LossObject", "ModelRequest", "ModelResponse", "NamedTensors",
        "NetworkRequest", "NetworkResponse", "OrthogonalRegularizer",
        "ParameterGradients", "PenaltiesRequest", "PenaltiesResponse", "PenaltyRequest", "PenaltyResponse",
        "RegularizerIdentifier", "RegularizerInfo", "RegularizerList", "Status", "TensorOut", "TensorOutB64",
        "TensorWithB64", "TensorWithData", "TermGradients", "WeightGradients", "WeightPenalty",
        # /v1/optimizer/step, /v1/train, /v1/conventions
        "Convention", "Conventions", "History", "KerasOptimizer", "OptimizerStateIn", "OptimizerStateOut",
        "OptimizerStepRequest", "OptimizerStepResponse", "Record", "TaggedOptimizer", "TrainRequest",
        "TrainResponse", "WeightStats", "KerasModelConfig", "ModelWeights", "SlotResults", "SlotTensors",
        "TermNorms", "OptimizerInfo", "OptimizerList", "ScheduleInfo",
    ])


def test_no_enum_has_values_that_differ_only_in_case(spec: dict[str, Any]) -> None:
    # generated clients turn enum values into upper-case constants: "mse" and "MSE" would clash
    for name, schema in spec["components"]["schemas"].items():
        values = [str(v).upper() for v in schema.get("enum", [])]
        assert len(values) == len(set(values)), name


def test_tensor_fields_document_all_three_wire_forms(spec: dict[str, Any]) -> None:
    tensor = spec["components"]["schemas"]["PenaltyRequest"]["properties"]["tensor"]
    forms = tensor["anyOf"]
    assert forms[0]["type"] == "array" and forms[0]["title"] == "NestedArray"
    assert forms[1:] == [{"$ref": "#/components/schemas/TensorWithData"},
                         {"$ref": "#/components/schemas/TensorWithB64"}]
    assert spec["components"]["schemas"]["Datatype"]["enum"] == ["FP16", "FP32", "FP64"]


def test_regularizer_defaults_are_keras_defaults(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    defaults = {name: {k: v.get("default") for k, v in schemas[name]["properties"].items() if k != "type"}
                for name in ("L1Regularizer", "L2Regularizer", "L1L2Regularizer", "OrthogonalRegularizer")}
    assert defaults == {"L1Regularizer": {"l1": 0.01}, "L2Regularizer": {"l2": 0.01},
                        "L1L2Regularizer": {"l1": 0.0, "l2": 0.0},
                        "OrthogonalRegularizer": {"factor": 0.01, "mode": "rows"}}
