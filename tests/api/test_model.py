"""POST /v1/model: Keras's own model JSON and .keras / .weights.h5 uploads against the Keras
vectors, and every malformed model or archive as a 4xx envelope."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.reference.vectors import arrays, cases

FILES = Path(__file__).resolve().parents[1] / "reference" / "keras_files"
CASES = {c["id"]: c for c in cases("models")}
RTOL, GRTOL, ATOL = 1e-5, 1e-4, 1e-6


def body_of(case: dict, **extra: Any) -> dict:
    return {"model": case["model"], "weights": case["weights"], "inputs": case["inputs"],
            "targets": case["targets"], "loss": case["loss"], "training": case["training"], **extra}


def fields_of(case: dict) -> dict:
    return {k: case[k] for k in ("inputs", "targets", "loss", "training")}


def tensor(t: dict) -> np.ndarray:
    return np.asarray(t["data"], dtype=np.float64).reshape(t["shape"])


def check_against_keras(body: dict, exp: dict) -> None:
    """Outputs, losses (in Keras's order) and every gradient of an answer against Keras's."""
    np.testing.assert_allclose(tensor(body["outputs"]), exp["outputs"], rtol=RTOL, atol=ATOL)
    assert list(body["losses"]) == list(exp["losses"])
    for k, v in exp["losses"].items():
        np.testing.assert_allclose(body["losses"][k], v, rtol=RTOL, atol=ATOL, err_msg=k)
    assert set(body["gradients"]) == set(exp["gradients"])
    for path, terms in exp["gradients"].items():
        assert set(body["gradients"][path]) == set(terms)
        for term, g in terms.items():
            np.testing.assert_allclose(tensor(body["gradients"][path][term]), g, rtol=GRTOL, atol=ATOL * 10)


def check(body: dict, case: dict) -> None:
    exp = arrays(case["expected"])
    check_against_keras(body, exp)
    for path, v in exp["updates"].items():
        np.testing.assert_allclose(tensor(body["updates"][path]), v, rtol=RTOL, atol=ATOL)
    names = [entry["name"] for entry in body["layers"]]
    per_layer = {f"{e['name']}/{k}": v for e in body["layers"] for k, v in e["losses"].items()}
    assert per_layer == {k: v for k, v in body["losses"].items() if k not in ("data_loss", "total")}
    assert len(names) == len(set(names))


@pytest.mark.parametrize("case_id", list(CASES))
def test_model_json_matches_keras(client: TestClient, case_id: str) -> None:
    r = client.post("/v1/model", json=body_of(CASES[case_id]))
    assert r.status_code == 200, r.text
    check(r.json(), CASES[case_id])


@pytest.mark.parametrize("case_id", ["cnn", "two_inputs", "embedding_model"])
def test_keras_file_upload_matches_keras(client: TestClient, case_id: str) -> None:
    case = CASES[case_id]
    data = (FILES / case["keras_file"]).read_bytes()
    r = client.post("/v1/model", files={"model": ("m.keras", data, "application/octet-stream"),
                                        "request": ("req.json", json.dumps(fields_of(case)), "application/json")})
    assert r.status_code == 200, r.text
    check(r.json(), case)


def test_weights_h5_upload_with_model_json(client: TestClient) -> None:
    case = CASES["mlp"]
    r = client.post("/v1/model", data={"model": json.dumps(case["model"]), "request": json.dumps(fields_of(case))},
                    files={"weights": ("mlp.weights.h5", (FILES / "mlp.weights.h5").read_bytes())})
    assert r.status_code == 200, r.text
    check(r.json(), case)


def test_layer_outputs_and_no_gradients(client: TestClient) -> None:
    case = CASES["cnn"]
    r = client.post("/v1/model", json=body_of(case, return_gradients=False, return_layer_outputs=True))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["gradients"] is None
    assert list(body["layer_outputs"]) == ["conv2d", "max_pooling2d", "conv2d_1", "flatten", "dense"]
    assert body["layer_outputs"]["conv2d"]["shape"] == [4, 6, 6, 4]
    np.testing.assert_allclose(tensor(body["layer_outputs"]["dense"]), tensor(body["outputs"]))


# ---------------------------------------------------------------------------- diagnostics

def small_model(activation: str = "sigmoid", **dense: Any) -> dict:
    return {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 4], "name": "x"}},
        {"class_name": "Dense", "config": {"name": "dense", "units": 3, "activation": activation, **dense}},
        {"class_name": "Dense", "config": {"name": "dense_1", "units": 1}}]}}


def small_weights(scale: float) -> dict:
    rng = np.random.default_rng(0)
    return {"dense/kernel": (rng.normal(size=(4, 3)) * scale).tolist(), "dense/bias": [0.0, 0.0, 0.0],
            "dense_1/kernel": [[1.0], [1.0], [1.0]], "dense_1/bias": [0.0]}


def test_seed_000_saturated_sigmoid_is_flagged(client: TestClient) -> None:
    model = small_model(activity_regularizer={"class_name": "L1", "config": {"l1": 0.01}},
                        kernel_regularizer={"class_name": "L1L2", "config": {"l1": 0.0, "l2": 0.0}})
    inputs = (np.full((2, 4), 100.0)).tolist()  # outputs in the hundreds
    r = client.post("/v1/model", json={"model": model, "weights": small_weights(1.0), "inputs": inputs})
    assert r.status_code == 200, r.text
    diags = {d["code"]: d for d in r.json()["diagnostics"]}
    sat = diags["activity_on_saturated_output"]
    assert sat["layer"] == "dense" and "of 6 units" in sat["message"]
    assert diags["zero_factor"]["layer"] == "dense"
    assert diags["unregularized_layer"]["layer"] == "dense_1"
    # the same layer on small inputs is not saturated
    r = client.post("/v1/model", json={"model": model, "weights": small_weights(0.1), "inputs": [[0.1] * 4] * 2})
    assert "activity_on_saturated_output" not in {d["code"] for d in r.json()["diagnostics"]}


def test_negligible_term_and_missing_weight_are_flagged(client: TestClient) -> None:
    model = small_model("tanh", use_bias=False, bias_regularizer={"class_name": "L2", "config": {"l2": 1.0}},
                        kernel_regularizer={"class_name": "L2", "config": {"l2": 1e-12}})
    weights = small_weights(1.0)
    del weights["dense/bias"]
    r = client.post("/v1/model", json={"model": model, "weights": weights, "inputs": [[1.0] * 4] * 2,
                                       "targets": [[5.0], [5.0]], "loss": "mse"})
    assert r.status_code == 200, r.text
    codes = {d["code"]: d for d in r.json()["diagnostics"]}
    assert "dense/kernel_regularizer" in codes["negligible_term"]["message"]
    assert codes["regularizer_without_weight"]["layer"] == "dense"
    assert "dense/bias_regularizer" not in r.json()["losses"]


# ---------------------------------------------------------------------------- malformed

def post_error(client: TestClient, status: int, code: str, **kwargs: Any) -> dict:
    r = client.post("/v1/model", **kwargs)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code, err
    return err


def mlp_body(**changes: Any) -> dict:
    body = body_of(CASES["mlp"])
    body.update(changes)
    return body


def test_unknown_class_names_layer_and_supported(client: TestClient) -> None:
    model = json.loads(json.dumps(CASES["mlp"]["model"]))
    model["config"]["layers"][2]["class_name"] = "GroupNormalization"
    err = post_error(client, 422, "invalid_spec", json=mlp_body(model=model))
    assert "'batch_normalization'" in err["message"] and "GroupNormalization" in err["message"]
    assert "Conv2D" in err["message"]


def test_lambda_is_refused(client: TestClient) -> None:
    model = json.loads(json.dumps(CASES["mlp"]["model"]))
    model["config"]["layers"][3] = {"class_name": "Lambda", "config": {"name": "lam", "function": "gASV..."}}
    err = post_error(client, 422, "invalid_spec", json=mlp_body(model=model))
    assert "Lambda" in err["message"]


def test_cycle_is_refused(client: TestClient) -> None:
    model = json.loads(json.dumps(CASES["two_inputs"]["model"]))
    layers = {entry["name"]: entry for entry in model["config"]["layers"]}
    layers["dense"]["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = ["add_1", 0, 0]
    err = post_error(client, 422, "invalid_spec", json=body_of(CASES["two_inputs"]) | {"model": model})
    assert "cycle" in err["message"]


def test_wrong_weight_shape_names_weight_and_expected_shape(client: TestClient) -> None:
    weights = dict(CASES["mlp"]["weights"])
    weights["dense/kernel"] = [[0.0] * 8] * 5
    err = post_error(client, 400, "shape_mismatch", json=mlp_body(weights=weights))
    assert "'dense/kernel'" in err["message"] and "[5, 8]" in err["message"] and "[6, 8]" in err["message"]


def test_missing_and_unknown_weights(client: TestClient) -> None:
    weights = dict(CASES["mlp"]["weights"])
    del weights["batch_normalization/moving_variance"]
    err = post_error(client, 400, "shape_mismatch", json=mlp_body(weights=weights))
    assert "missing weight 'batch_normalization/moving_variance'" in err["message"] and "[8]" in err["message"]
    weights = dict(CASES["mlp"]["weights"]) | {"dense/kernal": [1.0]}
    err = post_error(client, 400, "shape_mismatch", json=mlp_body(weights=weights))
    assert "'dense/kernal'" in err["message"]


def test_huge_conv_is_priced_before_it_runs(client: TestClient) -> None:
    model = {"class_name": "Sequential", "config": {"name": "big", "layers": [
        {"class_name": "Conv2D", "config": {"name": "conv2d", "filters": 768, "kernel_size": 11, "padding": "same"}}]}}
    weights = {"conv2d/kernel": {"shape": [11, 11, 1, 768], "datatype": "FP32", "data": [0.0] * (121 * 768)},
               "conv2d/bias": [0.0] * 768}
    inputs = {"shape": [8, 64, 64, 1], "datatype": "FP32", "data": [0.0] * (8 * 64 * 64)}
    err = post_error(client, 413, "too_expensive", json={"model": model, "weights": weights, "inputs": inputs})
    assert "PENALTY_MAX_WORK" in err["message"]  # 8·64·64·121·768 ≈ 3.0e9 multiply-adds


def test_too_many_layers(make_client: Any) -> None:
    small = make_client(max_layers=3)
    err = post_error(small, 413, "too_many_layers", json=mlp_body())
    assert "6 layers" in err["message"]


def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def upload(client: TestClient, data: bytes, **extra: Any) -> Any:
    files = {"model": ("m.keras", data), "request": (None, json.dumps(fields_of(CASES["cnn"])))}
    return client.post("/v1/model", files=files, **extra)


def test_zip_bomb_is_refused_before_decompressing(client: TestClient) -> None:
    bomb = zip_bytes({"config.json": b"{}", "model.weights.h5": b"\0" * (64 << 20)}, zipfile.ZIP_DEFLATED)
    assert len(bomb) < 200_000
    r = upload(client, bomb)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large", r.text
    assert "zip bomb" in r.json()["error"]["message"]


@pytest.mark.parametrize("name", ["../config.json", "/etc/passwd", "a/../../b", "C:evil", "a\\..\\b"])
def test_traversal_members_are_refused(client: TestClient, name: str) -> None:
    r = upload(client, zip_bytes({name: b"{}", "config.json": b"{}", "model.weights.h5": b""}))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_upload"
    assert "refused" in r.json()["error"]["message"]


def test_hdf5_that_is_not_keras(client: TestClient) -> None:
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.create_dataset("model_weights/dense/kernel", data=np.zeros((2, 2)))
    files = {"model": ("m.keras", zip_bytes({"config.json": json.dumps(CASES["cnn"]["model"]).encode(),
                                             "model.weights.h5": buf.getvalue()}))}
    r = client.post("/v1/model", files=files | {"request": (None, json.dumps(fields_of(CASES["cnn"])))})
    assert r.status_code == 422 and "no 'layers' group" in r.json()["error"]["message"], r.text
    r = client.post("/v1/model", data={"model": json.dumps(CASES["mlp"]["model"]),
                                       "request": json.dumps(fields_of(CASES["mlp"]))},
                    files={"weights": ("w.h5", b"not hdf5 at all")})
    assert r.status_code == 422 and "not an HDF5 file" in r.json()["error"]["message"], r.text


def test_not_a_zip_and_bad_parts(client: TestClient) -> None:
    r = client.post("/v1/model", files={"model": ("m.keras", b"PK\x03\x04garbage")})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_upload", r.text
    r = client.post("/v1/model", files={"modle": ("m.keras", b"{}")})
    assert r.status_code == 422 and "unknown form part 'modle'" in r.json()["error"]["message"], r.text
    r = client.post("/v1/model", files={"model": (None, "{not json"), "request": (None, "{}")})
    assert r.status_code == 422 and "not valid JSON" in r.json()["error"]["message"], r.text
    r = client.post("/v1/model", data={"model": "{}", "request": "{}"})  # urlencoded: not a file upload
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type", r.text


def test_mostly_inactive_relu_output_is_flagged_not_half_inactive(client: TestClient) -> None:
    model = small_model("relu", activity_regularizer={"class_name": "L2", "config": {"l2": 0.01}})
    weights = small_weights(1.0)
    weights["dense/bias"] = [-1000.0, -1000.0, -1000.0]
    r = client.post("/v1/model", json={"model": model, "weights": weights, "inputs": [[0.5] * 4] * 2})
    diags = {d["code"]: d for d in r.json()["diagnostics"]}
    assert "6 of 6 units (100%) have relu derivative below 1e-06" in diags["activity_on_inactive_output"]["message"]
    assert "activity_on_saturated_output" not in diags
    weights["dense/bias"] = [-1000.0, 1000.0, 1000.0]  # a third inactive: ordinary for relu
    r = client.post("/v1/model", json={"model": model, "weights": weights, "inputs": [[0.5] * 4] * 2})
    assert not {"activity_on_inactive_output", "activity_on_saturated_output"} & {d["code"] for d in r.json()["diagnostics"]}


def test_training_mode_dropout_is_flagged(client: TestClient) -> None:
    r = client.post("/v1/model", json=body_of(CASES["mlp"], training=True))
    assert r.status_code == 200, r.text
    diags = [d for d in r.json()["diagnostics"] if d["code"] == "dropout_mask_not_keras"]
    assert [d["layer"] for d in diags] == ["dropout"]
    assert set(r.json()["updates"]) == {"batch_normalization/moving_mean", "batch_normalization/moving_variance"}


README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_block(marker: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"<!-- {marker} -->")
    body = text[start:].split("```", 2)[1]
    return body.split("\n", 1)[1]


def test_readme_upload_example(client: TestClient) -> None:
    from tests.deploy.test_readme import mismatches

    request = json.loads(_readme_block("upload-request"))
    command = _readme_block("upload-example")
    assert "-F model=@tests/reference/keras_files/embedding_model.keras" in command
    data = (FILES / "embedding_model.keras").read_bytes()
    r = client.post("/v1/model", files={"model": ("m.keras", data), "request": (None, json.dumps(request))})
    assert r.status_code == 200, r.text
    assert list(mismatches(json.loads(_readme_block("upload-response")), r.json())) == []
    check(r.json(), CASES["embedding_model"])


def test_readme_seed_000_claims(client: TestClient) -> None:
    from tests.deploy.test_readme import BY_NAME

    flat = client.post("/v1/model", json=BY_NAME["seed-000-saturated"].body).json()
    grads = tensor(flat["gradients"]["hidden/kernel"]["hidden/activity_regularizer"])
    assert 0 < np.abs(grads).max() <= 1.2e-10
    assert np.abs(tensor(flat["gradients"]["hidden/kernel"]["data_loss"])).max() <= 1e-9
    pre = client.post("/v1/model", json=BY_NAME["seed-000-pre-activation"].body).json()
    g = tensor(pre["gradients"]["hidden/kernel"]["hidden/activity_regularizer"])
    x = np.array([[30, 40, 50, 60], [20, 30, 40, 50]], dtype=np.float64)
    np.testing.assert_allclose(g, np.repeat(0.01 * x.sum(axis=0)[:, None] / 2, 2, axis=1), rtol=1e-6)


def test_weights_h5_for_a_model_with_open_sequence_length(client: TestClient) -> None:
    """Keras models often leave the sequence length open ([None, None]); the weights' shapes
    do not depend on it, so the .weights.h5 is still read."""
    case = CASES["embedding_model"]
    model = json.loads(json.dumps(case["model"]))
    model["config"]["layers"][0]["config"]["batch_shape"] = [None, None]
    with zipfile.ZipFile(FILES / "embedding_model.keras") as z:
        h5 = z.read("model.weights.h5")
    r = client.post("/v1/model", files={"model": (None, json.dumps(model)), "weights": ("w.weights.h5", h5),
                                        "request": (None, json.dumps(fields_of(case)))})
    assert r.status_code == 200, r.text
    check(r.json(), case)


def test_multipart_edge_cases_are_4xx(client: TestClient) -> None:
    keras_file = (FILES / "cnn.keras").read_bytes()
    too_many = {"model": ("m.keras", keras_file), "weights": ("w", b"x"), "request": (None, "{}"), "extra": (None, "1")}
    r = client.post("/v1/model", files=too_many)
    assert 400 <= r.status_code < 500 and "error" in r.json(), r.text
    r = client.post("/v1/model", files={"model": ("m.keras", keras_file), "request": (None, "[1, 2]")})
    assert r.status_code == 422 and "must be a JSON object" in r.json()["error"]["message"], r.text
    r = client.post("/v1/model", files={"model": ("m.keras", keras_file)})  # no inputs
    assert r.status_code == 422 and "inputs" in r.json()["error"]["message"], r.text
    r = client.post("/v1/model", files={"model": ("m.keras", keras_file), "weights": ("w.h5", b"x"),
                                        "request": (None, "{}")})
    assert r.status_code == 422 and "holds its weights" in r.json()["error"]["message"], r.text
    both = json.dumps(fields_of(CASES["cnn"]) | {"model": CASES["cnn"]["model"]})
    r = client.post("/v1/model", files={"model": ("m.keras", keras_file), "request": (None, both)})
    assert r.status_code == 422 and "given both" in r.json()["error"]["message"], r.text


def test_h5_layer_count_mismatch_and_integer_weights(client: TestClient) -> None:
    case = CASES["mlp"]
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.create_dataset("layers/dense/vars/0", data=np.zeros((6, 8), np.float32))
    r = client.post("/v1/model", files={"model": (None, json.dumps(case["model"])), "weights": ("w.h5", buf.getvalue()),
                                        "request": (None, json.dumps(fields_of(case)))})
    assert r.status_code == 422 and "1 variables for layer 'dense'; Dense has 2" in r.json()["error"]["message"], r.text
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.create_dataset("layers/dense/vars/0", data=np.zeros((6, 8), np.int32))
        f.create_dataset("layers/dense/vars/1", data=np.zeros((8,), np.int32))
    r = client.post("/v1/model", files={"model": (None, json.dumps(case["model"])), "weights": ("w.h5", buf.getvalue()),
                                        "request": (None, json.dumps(fields_of(case)))})
    assert r.status_code == 422 and "dtype int32" in r.json()["error"]["message"], r.text


def test_hdf5_links_are_refused(client: TestClient) -> None:
    case = CASES["mlp"]
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.create_dataset("elsewhere/0", data=np.zeros((6, 8), np.float32))
        f["layers/dense/vars"] = h5py.SoftLink("/elsewhere")
    r = client.post("/v1/model", files={"model": (None, json.dumps(case["model"])), "weights": ("w.h5", buf.getvalue()),
                                        "request": (None, json.dumps(fields_of(case)))})
    assert r.status_code == 422 and "links are refused" in r.json()["error"]["message"], r.text


def test_frozen_layers_regularizers_are_flagged(client: TestClient) -> None:
    r = client.post("/v1/model", json=body_of(CASES["frozen"]))
    assert r.status_code == 200, r.text
    flagged = {(d["code"], d["layer"]) for d in r.json()["diagnostics"]}
    assert ("regularizer_without_weight", "frozen") in flagged
    assert ("regularizer_without_weight", "batch_normalization") in flagged
    assert "frozen/kernel_regularizer" not in r.json()["losses"]
    assert set(r.json()["gradients"]) == {"dense/kernel", "dense/bias"}


def test_hdf5_with_oversized_chunks_is_refused(client: TestClient) -> None:
    case = CASES["mlp"]
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.create_dataset("layers/dense/vars/0", shape=(6, 8), maxshape=(None, None), chunks=(600, 800), dtype="f4")
        f.create_dataset("layers/dense/vars/1", data=np.zeros(8, np.float32))
    r = client.post("/v1/model", files={"model": (None, json.dumps(case["model"])), "weights": ("w.h5", buf.getvalue()),
                                        "request": (None, json.dumps(fields_of(case)))})
    assert r.status_code == 422 and "chunks [600, 800]" in r.json()["error"]["message"], r.text


def test_penalty_before_batch_normalization_is_flagged_and_scale_free(client: TestClient) -> None:
    """The MLP's dense → batch_normalization: in training mode the output does not change
    when the kernel is scaled, so the diagnostic's claim holds (checked, not just stated)."""
    case = CASES["mlp_bn_training"]
    r = client.post("/v1/model", json=body_of(case))
    flagged = [d for d in r.json()["diagnostics"] if d["code"] == "penalty_before_normalization"]
    assert [d["layer"] for d in flagged] == ["dense"]
    weights = dict(case["weights"])
    k = tensor(weights["dense/kernel"]) * 3
    weights["dense/kernel"] = {"shape": list(k.shape), "datatype": "FP32", "data": k.reshape(-1).tolist()}
    scaled = client.post("/v1/model", json=body_of(case) | {"weights": weights}).json()
    # equal up to BatchNormalization's epsilon (1e-3 against batch variances of order 1)
    np.testing.assert_allclose(tensor(scaled["outputs"]), tensor(r.json()["outputs"]), rtol=1e-3)
    assert scaled["losses"]["dense/kernel_regularizer"] > 8 * r.json()["losses"]["dense/kernel_regularizer"]


def test_keras2_h5_model_is_refused_with_a_hint(client: TestClient) -> None:
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.attrs["model_config"] = "{}"
    r = client.post("/v1/model", files={"model": ("m.h5", buf.getvalue()), "request": (None, "{}")})
    assert r.status_code == 422 and "model.save('model.keras')" in r.json()["error"]["message"], r.text
