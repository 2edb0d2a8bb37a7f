"""POST /v1/model with ``sample_weight``, every loss reduction (``"none"`` answers
``data_loss_values``) and gradient selection: against Keras 3.15.1 (vectors/weighted_models.json,
tests/reference/generate_weighted_models.py), selections as exact subsets of the full answer,
and safetensors answers equal to JSON answers bit for bit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.client import Client
from tests.api.test_model import check_against_keras
from tests.reference.vectors import arrays, cases
from tests.reference.vectors import tensor as wire_tensor

CASES = {c["id"]: c for c in cases("weighted_models")}
RTOL, ATOL = 1e-5, 1e-6


def body_of(case: dict, **extra: Any) -> dict:
    fields = ("model", "weights", "inputs", "targets", "loss", "sample_weight")
    return {**{k: case[k] for k in fields}, **extra}


def tensor(t: dict) -> np.ndarray:
    return np.asarray(t["data"], dtype=np.float64).reshape(t["shape"])


@pytest.mark.parametrize("case_id", list(CASES))
def test_weighted_model_over_http_matches_keras(client: TestClient, case_id: str) -> None:
    case = CASES[case_id]
    r = client.post("/v1/model", json=body_of(case))
    assert r.status_code == 200, r.text
    body, exp = r.json(), arrays(case["expected"])
    check_against_keras(body, exp)
    if case["loss"]["reduction"] == "none":
        np.testing.assert_allclose(tensor(body["data_loss_values"]), exp["data_loss_values"], rtol=RTOL, atol=ATOL)
    else:
        assert "data_loss_values" not in body


def test_sample_weight_changes_the_answer_and_is_checked(client: TestClient) -> None:
    case = next(c for c in CASES.values() if c["loss"]["reduction"] != "none")
    weighted = client.post("/v1/model", json=body_of(case)).json()
    unweighted = client.post("/v1/model", json=body_of(case, sample_weight=None)).json()
    assert weighted["losses"]["data_loss"] != unweighted["losses"]["data_loss"]
    wrong = client.post("/v1/model", json=body_of(case, sample_weight=[1.0] * 7))
    assert wrong.status_code == 400, wrong.text
    assert "sample_weight" in wrong.json()["error"]["message"]
    alone = client.post("/v1/model", json=body_of(case, targets=None, loss=None))
    assert alone.status_code in (400, 422), alone.text
    assert "sample_weight weights the data loss" in alone.json()["error"]["message"]


@pytest.mark.parametrize("selection", ["totals", {"terms": ["total"]},
                                       {"parameters": ["conv2d/kernel"], "terms": ["data_loss", "total"]}])
def test_a_selection_is_the_exact_subset_of_the_full_answer(client: TestClient, selection: Any) -> None:
    case = CASES["cnn_softmax_head_weighted"]
    full = client.post("/v1/model", json=body_of(case)).json()
    chosen = client.post("/v1/model", json=body_of(case, return_gradients=selection))
    assert chosen.status_code == 200, chosen.text
    got = chosen.json()
    params = selection.get("parameters", list(full["gradients"])) if isinstance(selection, dict) else list(full["gradients"])
    terms = ["total"] if selection == "totals" else selection["terms"]
    assert set(got["gradients"]) == set(params)
    for path in params:
        assert set(got["gradients"][path]) == set(terms) & set(full["gradients"][path]), path
        for term in got["gradients"][path]:
            assert got["gradients"][path][term] == full["gradients"][path][term], (path, term)
    assert got["losses"] == full["losses"] and got["outputs"] == full["outputs"]


def test_unknown_names_in_a_selection_are_422_listing_the_valid_ones(client: TestClient) -> None:
    case = CASES["cnn_softmax_head_weighted"]
    r = client.post("/v1/model", json=body_of(case, return_gradients={"parameters": ["conv2d/kernal"]}))
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert "conv2d/kernal" in message and "conv2d/kernel" in message


def test_no_gradients_when_none_are_asked_for(client: TestClient) -> None:
    case = CASES["cnn_softmax_head_weighted"]
    r = client.post("/v1/model", json=body_of(case, return_gradients=False))
    assert r.status_code == 200 and r.json()["gradients"] is None


@pytest.mark.parametrize("case_id", list(CASES))
def test_safetensors_answers_equal_json_answers_bit_for_bit(app: FastAPI, case_id: str) -> None:
    case = CASES[case_id]
    body = arrays(body_of(case, return_gradients="totals"))
    answers = []
    for form in ("json", "safetensors"):
        with Client(format=form, http=TestClient(app)) as c:  # type: ignore[arg-type]
            answers.append(c.post("/v1/model", body))
    (doc_j, arrays_j), (doc_s, arrays_s) = answers
    assert doc_j["losses"] == doc_s["losses"]
    assert arrays_j.keys() == arrays_s.keys() and "outputs" in arrays_j
    assert ("data_loss_values" in arrays_j) == (case["loss"]["reduction"] == "none")
    for name, a in arrays_j.items():
        assert a.dtype == arrays_s[name].dtype and a.tobytes() == arrays_s[name].tobytes(), name


@pytest.mark.parametrize("form", ["json", "safetensors"])
def test_the_thin_client_model_method(app: FastAPI, client: TestClient, form: str) -> None:
    """``Client.model`` sends the same request and returns the same numbers, as arrays: a
    weighted case with reduction 'none', and a training-mode BatchNormalization model with
    its layer outputs and updated moving statistics."""
    weighted = next(c for c in CASES.values() if c["loss"]["reduction"] == "none")
    bn = next(c for c in cases("models") if c["training"] and c["expected"]["updates"])
    with Client(format=form, http=TestClient(app)) as c:  # type: ignore[arg-type]
        w = arrays(weighted)
        r = c.model(w["model"], w["weights"], w["inputs"], w["targets"], w["loss"], sample_weight=w["sample_weight"],
                    return_gradients="totals")
        b = arrays(bn)
        t = c.model(b["model"], b["weights"], b["inputs"], b["targets"], b["loss"], training=True,
                    return_layer_outputs=True)
    plain = client.post("/v1/model", json=body_of(weighted, return_gradients="totals")).json()
    assert r.losses == plain["losses"] and r.data_loss_values is not None
    np.testing.assert_array_equal(r.data_loss_values, wire_tensor(plain["data_loss_values"]))  # its dtype
    assert r.gradients is not None and set(r.gradients) == set(plain["gradients"])
    for path, terms in r.gradients.items():
        assert set(terms) == {"total"}
        np.testing.assert_array_equal(terms["total"], wire_tensor(plain["gradients"][path]["total"]))
    exp = arrays(bn["expected"])
    assert t.updates is not None and set(t.updates) == set(exp["updates"])
    for path, v in exp["updates"].items():
        np.testing.assert_allclose(t.updates[path], v, rtol=RTOL, atol=ATOL)
    assert t.layer_outputs is not None and [e["name"] for e in t.layers] == list(t.layer_outputs)
    np.testing.assert_array_equal(t.layer_outputs[t.layers[-1]["name"]], t.outputs)
