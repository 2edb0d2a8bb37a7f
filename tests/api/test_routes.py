"""Every route of API.md, success bodies asserted whole (the values are worked out by hand)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.core import activations, losses, regularizers

SEED = [[[3, 3, 3, 3], [3, 3, 3, 3]], [[3, 3, 3, 3], [3, 3, 3, 3]]]


def t32(shape: list[int], data: list[float]) -> dict[str, Any]:
    return {"shape": shape, "datatype": "FP32", "data": data}


def post(client: TestClient, path: str, body: Any) -> Any:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


# --------------------------------------------------------------------------- /v1/penalty


def test_penalty_seed_l1_on_threes_is_4_8(client: TestClient) -> None:
    """API.md's example: the float32 4.8 is written as 4.8, not 4.800000190734863."""
    response = client.post("/v1/penalty", json={"tensor": SEED, "regularizer": {"type": "l1", "l1": 0.1}})
    assert response.status_code == 200
    assert response.content.startswith(b'{"penalty":4.8,')
    assert response.json() == {
        "penalty": 4.8,
        "gradient": t32([2, 2, 4], [0.1] * 16),
        "regularizer": {"type": "l1", "l1": 0.1},
    }


def test_penalty_keras_form_fp64_with_b64_output(client: TestClient) -> None:
    body = post(client, "/v1/penalty", {
        "tensor": {"shape": [2, 2], "datatype": "FP64", "data": [1, -2, 3, -4]},
        "regularizer": {"class_name": "L2", "config": {"l2": 0.01}, "module": "keras.regularizers",
                        "registered_name": None},
        "encoding": "b64",
    })
    expected_gradient = np.array([0.02, -0.04, 0.06, -0.08], "<f8").tobytes()
    assert body == {
        "penalty": 0.3,
        "gradient": {"shape": [2, 2], "datatype": "FP64", "b64": base64.b64encode(expected_gradient).decode()},
        "regularizer": {"type": "l2", "l2": 0.01},
    }


def test_penalty_fp16_numbers_are_shortest_in_fp16(client: TestClient) -> None:
    body = post(client, "/v1/penalty", {
        "tensor": {"shape": [3], "datatype": "FP16", "data": [0.1, -0.2, 0.3]},
        "regularizer": {"type": "l2", "l2": 0.5},
    })
    assert body == {
        "penalty": 0.07,
        "gradient": {"shape": [3], "datatype": "FP16", "data": [0.1, -0.2, 0.3]},
        "regularizer": {"type": "l2", "l2": 0.5},
    }


def test_penalty_identifier_without_gradient(client: TestClient) -> None:
    body = post(client, "/v1/penalty", {"tensor": [[1.0, -2.0]], "regularizer": "l1", "return_gradient": False})
    assert body == {"penalty": 0.03, "gradient": None, "regularizer": {"type": "l1", "l1": 0.01}}


def test_penalty_tf_keras_l1_l2_identifier(client: TestClient) -> None:
    body = post(client, "/v1/penalty", {"tensor": [2.0], "regularizer": "l1_l2", "return_gradient": False})
    assert body == {"penalty": 0.06, "gradient": None, "regularizer": {"type": "l1l2", "l1": 0.01, "l2": 0.01}}


def test_penalty_orthogonal_rows(client: TestClient) -> None:
    """Rows (1,0), (0,1), (1,1): |cos| of the pairs are 0, √½, √½; mean √2/3, times 0.1."""
    body = post(client, "/v1/penalty", {"tensor": [[1, 0], [0, 1], [1, 1]],
                                        "regularizer": {"type": "orthogonal", "factor": 0.1}})
    assert body == {
        "penalty": 0.047140453,
        "gradient": t32([3, 2], [0.0, 0.023570227, 0.023570227, 0.0, 0.0, 0.0]),
        "regularizer": {"type": "orthogonal", "factor": 0.1, "mode": "rows"},
    }


# --------------------------------------------------------------------------- /v1/penalties


def test_penalties_sums_in_order(client: TestClient) -> None:
    body = post(client, "/v1/penalties", {"weights": {
        "dense/kernel": {"tensor": [[0.5, -1.0], [1.5, 2.0]], "regularizer": {"type": "l2", "l2": 0.1}},
        "dense/bias": {"tensor": [0.25, -0.5], "regularizer": "l1"},
    }})
    assert body == {
        "penalties": {"dense/kernel": 0.75, "dense/bias": 0.0075},
        "total": 0.7575,
        "gradients": {
            "dense/kernel": t32([2, 2], [0.1, -0.2, 0.3, 0.4]),
            "dense/bias": t32([2], [0.01, -0.01]),
        },
    }


def test_penalties_total_is_in_the_widest_datatype(client: TestClient) -> None:
    body = post(client, "/v1/penalties", {"return_gradients": False, "weights": {
        "a": {"tensor": [0.1], "regularizer": {"type": "l1", "l1": 1}},
        "b": {"tensor": {"shape": [1], "datatype": "FP64", "data": [0.2]}, "regularizer": {"type": "l1", "l1": 1}},
    }})
    # float32(0.1) widened to float64, plus 0.2: the FP64 total shows the float32 rounding.
    assert body == {"penalties": {"a": 0.1, "b": 0.2}, "total": 0.30000000149011613, "gradients": None}


def test_penalties_of_no_weights(client: TestClient) -> None:
    assert post(client, "/v1/penalties", {"weights": {}}) == {"penalties": {}, "total": 0.0, "gradients": {}}


# --------------------------------------------------------------------------- /v1/dense

DENSE = {
    "inputs": [[1, 2]], "kernel": [[1], [1]], "bias": [0.5], "activation": "relu",
    "kernel_regularizer": {"type": "l1", "l1": 0.5},
    "bias_regularizer": {"type": "l2", "l2": 0.5},
    "activity_regularizer": {"type": "l1", "l1": 0.5},
}


def test_dense_every_term(client: TestClient) -> None:
    """y = relu(1 + 2 + 0.5) = 3.5; kernel 0.5·2, bias 0.5·0.25, activity 0.5·3.5/1."""
    assert post(client, "/v1/dense", DENSE) == {
        "outputs": t32([1, 1], [3.5]),
        "losses": {"activity_regularizer": 1.75, "kernel_regularizer": 1.0, "bias_regularizer": 0.125,
                   "total": 2.875},
        "gradients": {
            "kernel": {"kernel_regularizer": t32([2, 1], [0.5, 0.5]),
                       "activity_regularizer": t32([2, 1], [0.5, 1.0]),
                       "total": t32([2, 1], [1.0, 1.5])},
            "bias": {"bias_regularizer": t32([1], [0.5]),
                     "activity_regularizer": t32([1], [0.5]),
                     "total": t32([1], [1.0])},
        },
        "input_gradients": {"activity_regularizer": t32([1, 2], [0.5, 0.5]), "total": t32([1, 2], [0.5, 0.5])},
    }


def test_dense_without_regularizers_or_gradients(client: TestClient) -> None:
    body = post(client, "/v1/dense", {"inputs": [[1, 2]], "kernel": [[1], [1]], "return_gradients": False})
    assert body == {"outputs": t32([1, 1], [3.0]), "losses": {"total": 0.0}, "gradients": None,
                    "input_gradients": None}


def test_dense_activity_normalization_none_and_leaky_relu_object(client: TestClient) -> None:
    """Two rows; leaky_relu(−2) = −0.2; activity L1(1) undivided: |3| + |−0.2| = 3.2."""
    body = post(client, "/v1/dense", {
        "inputs": [[1, 2], [-1, -1]], "kernel": [[1], [1]],
        "activation": {"name": "leaky_relu", "negative_slope": 0.1},
        "activity_regularizer": {"type": "l1", "l1": 1}, "activity_normalization": "none",
        "return_gradients": False,
    })
    assert body == {"outputs": t32([2, 1], [3.0, -0.2]), "losses": {"activity_regularizer": 3.2, "total": 3.2},
                    "gradients": None, "input_gradients": None}


# --------------------------------------------------------------------------- /v1/network


def test_network_one_layer_mse(client: TestClient) -> None:
    """y = 3.5, MSE (3.5 − 1)² = 6.25, ∂/∂y = 5."""
    body = post(client, "/v1/network", {"inputs": [[1, 2]], "targets": [[1]], "layers": [
        {"kernel": [[1], [1]], "bias": [0.5], "kernel_regularizer": {"type": "l1", "l1": 0.5}}]})
    assert body == {
        "outputs": t32([1, 1], [3.5]),
        "losses": {"data_loss": 6.25, "dense/kernel_regularizer": 1.0, "total": 7.25},
        "gradients": {
            "dense/kernel": {"data_loss": t32([2, 1], [5.0, 10.0]),
                             "dense/kernel_regularizer": t32([2, 1], [0.5, 0.5]),
                             "total": t32([2, 1], [5.5, 10.5])},
            "dense/bias": {"data_loss": t32([1], [5.0]), "total": t32([1], [5.0])},
        },
    }


def test_network_two_layers_named_head_activity_reaches_lower_layer(client: TestClient) -> None:
    body = post(client, "/v1/network", {"inputs": [[1, 2]], "targets": [[1]], "layers": [
        {"kernel": [[1, 0], [0, 1]], "activity_regularizer": {"type": "l1", "l1": 0.5}},
        {"name": "head", "kernel": [[1], [1]], "bias": [0.5]},
    ]})
    assert body == {
        "outputs": t32([1, 1], [3.5]),
        "losses": {"data_loss": 6.25, "dense/activity_regularizer": 1.5, "total": 7.75},
        "gradients": {
            "dense/kernel": {"data_loss": t32([2, 2], [5.0, 5.0, 10.0, 10.0]),
                             "dense/activity_regularizer": t32([2, 2], [0.5, 0.5, 1.0, 1.0]),
                             "total": t32([2, 2], [5.5, 5.5, 11.0, 11.0])},
            "head/kernel": {"data_loss": t32([2, 1], [5.0, 10.0]), "total": t32([2, 1], [5.0, 10.0])},
            "head/bias": {"data_loss": t32([1], [5.0]), "total": t32([1], [5.0])},
        },
    }


def test_network_loss_object_and_b64_outputs(client: TestClient) -> None:
    """Huber with delta 1 on an error of 2.5: 1·2.5 − ½ = 2."""
    body = post(client, "/v1/network", {"inputs": [[1, 2]], "targets": [[1]], "return_gradients": False,
                                        "loss": {"name": "huber", "delta": 1.0}, "encoding": "b64",
                                        "layers": [{"kernel": [[1], [1]], "bias": [0.5]}]})
    outputs = base64.b64encode(np.array([3.5], "<f4").tobytes()).decode()
    assert body == {"outputs": {"shape": [1, 1], "datatype": "FP32", "b64": outputs},
                    "losses": {"data_loss": 2.0, "total": 2.0}, "gradients": None}


# --------------------------------------------------------------------------- discovery, health


@pytest.mark.parametrize(
    ("path", "key", "describe"),
    [("/v1/regularizers", "regularizers", regularizers.describe),
     ("/v1/activations", "activations", activations.describe),
     ("/v1/losses", "losses", losses.describe)],
)
def test_discovery_lists_what_the_core_supports(client: TestClient, path: str, key: str, describe: Any) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.json() == {key: describe()}


def test_regularizers_are_listed_with_keras_defaults(client: TestClient) -> None:
    assert client.get("/v1/regularizers").json()["regularizers"][0] == {
        "type": "l1", "keras_class": "L1", "identifiers": ["l1", "L1"], "parameters": {"l1": 0.01},
        "formula": "l1 * sum(|x|); gradient l1 * sign(x)",
    }


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


# --------------------------------------------------------------------------- API.md examples


def test_api_md_tensor_forms_are_equivalent(client: TestClient) -> None:
    """The three input forms of one tensor give the same answer (float32(0.01)·30 = 0.29999998)."""
    x = np.array([[1, 2], [3, 4]], np.float32)
    forms = [
        [[1, 2], [3, 4]],
        {"shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]},
        {"shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]},
        {"shape": [2, 2], "datatype": "FP32", "b64": base64.b64encode(x.astype("<f4").tobytes()).decode()},
        {"datatype": "FP32", "data": [[1, 2], [3, 4]]},
    ]
    bodies = [post(client, "/v1/penalty", {"tensor": f, "regularizer": "l2"}) for f in forms]
    assert all(b == bodies[0] for b in bodies)
    assert bodies[0] == {"penalty": 0.29999998, "gradient": t32([2, 2], [0.02, 0.04, 0.06, 0.08]),
                         "regularizer": {"type": "l2", "l2": 0.01}}


@pytest.mark.parametrize(
    ("spec", "canonical"),
    [("l1", {"type": "l1", "l1": 0.01}),
     ("l2", {"type": "l2", "l2": 0.01}),
     ("l1l2", {"type": "l1l2", "l1": 0.0, "l2": 0.0}),
     ("l1_l2", {"type": "l1l2", "l1": 0.01, "l2": 0.01}),
     ("orthogonal_regularizer", {"type": "orthogonal", "factor": 0.01, "mode": "rows"}),
     ({"type": "l1", "l1": 0.01}, {"type": "l1", "l1": 0.01}),
     ({"type": "l1l2", "l1": 0.0, "l2": 0.0}, {"type": "l1l2", "l1": 0.0, "l2": 0.0}),
     ({"type": "orthogonal", "factor": 0.01, "mode": "columns"},
      {"type": "orthogonal", "factor": 0.01, "mode": "columns"}),
     ({"class_name": "L1L2", "config": {"l1": 0.01, "l2": 0.0}}, {"type": "l1l2", "l1": 0.01, "l2": 0.0}),
     ({"class_name": "orthogonal_regularizer", "config": {}}, {"type": "orthogonal", "factor": 0.01, "mode": "rows"})],
)
def test_api_md_regularizer_specs_echo_the_canonical_form(client: TestClient, spec: Any, canonical: Any) -> None:
    body = post(client, "/v1/penalty", {"tensor": [[1, 2], [3, 4]], "regularizer": spec, "return_gradient": False})
    assert body["regularizer"] == canonical
