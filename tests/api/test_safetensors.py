"""``service.wire.safetensors`` and safetensors bodies over HTTP: interoperability with the
independent ``safetensors`` package, zero-copy reads, and every malformed body a 4xx in
the JSON envelope."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from service.wire import Budget, safetensors
from service.wire.safetensors import SafetensorsError, read, write

BINARY = {"Content-Type": "application/x-safetensors"}
PENALTY = {"json": json.dumps({"regularizer": {"type": "l1", "l1": 0.1}})}


@st.composite
def named_arrays(draw: st.DrawFn) -> dict[str, np.ndarray]:
    names = draw(st.lists(st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=8)
                          .filter(lambda n: n != "__metadata__"), max_size=4, unique=True))
    out = {}
    for name in names:
        dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
        out[name] = draw(hnp.arrays(dtype, shape))
    return out


@settings(max_examples=60, deadline=None)
@given(named_arrays())
def test_the_safetensors_package_reads_what_we_write_and_we_read_what_it_writes(arrays: dict[str, np.ndarray]) -> None:
    theirs = st_load(write(arrays, {"json": "{}"}))
    ours, metadata = read(st_save(arrays, metadata={"json": "[1]"}))
    assert metadata == {"json": "[1]"}
    for got in (theirs, ours):
        assert sorted(got) == sorted(arrays)
        for name, array in arrays.items():
            assert (got[name].dtype, got[name].shape) == (array.dtype, array.shape)
            assert got[name].tobytes() == array.tobytes()


def test_reads_are_read_only_views_of_the_body() -> None:
    body = bytearray(write({"a": np.arange(4.0), "b": np.ones((2, 3), np.float32)}))
    tensors, _ = read(body)
    for array in tensors.values():
        assert np.shares_memory(array, np.frombuffer(body, np.uint8))
    frozen, _ = read(bytes(body))
    assert not frozen["a"].flags.writeable


def test_the_header_is_padded_so_every_tensor_is_aligned() -> None:
    body = write({"a": np.ones(3, np.float16), "b": np.ones(5)})
    n = int.from_bytes(body[:8], "little")
    assert n % 8 == 0
    tensors, _ = read(body)
    assert tensors["b"].ctypes.data % 8 == np.frombuffer(body, np.uint8).ctypes.data % 8


def test_flatten_names_arrays_by_path_and_keeps_the_rest() -> None:
    doc = {"outputs": {"shape": [1], "datatype": "FP32", "data": np.ones(1, np.float32)},
           "losses": {"total": 1.0}, "gradients": {"kernel": {"total": np.zeros(2)}}, "n": None}
    tensors, rest = safetensors.flatten(doc)
    assert sorted(tensors) == ["gradients.kernel.total", "outputs"]
    assert rest == {"losses": {"total": 1.0}, "gradients": {"kernel": {}}, "n": None}


def header_body(header: Any, data: bytes = b"", declared: int | None = None) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if declared is None else declared) + raw + data


F32 = struct.pack("<4f", 3, 3, 3, 3)
_DUPLICATE = b'{"tensor": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, "tensor": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}'
META = {"__metadata__": PENALTY}
MALFORMED = [
    ("shorter_than_the_length", b"\x01\x02", 422, "the body has 2 bytes; a safetensors body starts with an 8-byte header length"),
    ("header_length_past_the_body", header_body({}, declared=1000), 422,
     "the safetensors header declares 1000 bytes but only 2 follow the length"),
    ("huge_header", header_body({}, declared=1 << 40), 413,
     "the safetensors header declares 1099511627776 bytes; the limit is 1048576"),
    ("header_not_json", struct.pack("<Q", 3) + b"{x}", 422, "the safetensors header is not valid JSON"),
    ("header_not_an_object", header_body([1]), 422, "the safetensors header must be a JSON object of tensor entries"),
    ("truncated_data", header_body({**META, "tensor": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, F32[:12]),
     422, "the tensors cover 16 bytes of data but the body has 12 after the header"),
    ("trailing_bytes", header_body({**META, "tensor": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, F32 + b"x"),
     422, "the tensors cover 16 bytes of data but the body has 17 after the header"),
    ("overlapping_offsets", header_body({**META, "tensor": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                         "other": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, F32),
     422, "data_offsets [8, 16] overlaps the tensor before it (the previous tensor ends at 16)"),
    ("a_hole", header_body({**META, "tensor": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, F32),
     422, "tensor 'tensor': data_offsets [8, 16] leaves a hole (the previous tensor ends at 0)"),
    ("offsets_not_the_shape", header_body({**META, "tensor": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}, F32),
     422, "data_offsets [0, 16] hold 16 bytes but shape [3] in F32 needs 12 (3 × 4 bytes)"),
    ("unknown_dtype", header_body({**META, "tensor": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}}, F32),
     422, "tensor 'tensor': dtype 'I64' is not supported; use one of F16, F32, F64"),
    ("bf16", header_body({**META, "tensor": {"dtype": "BF16", "shape": [8], "data_offsets": [0, 16]}}, F32),
     422, "dtype 'BF16' is not supported"),
    ("negative_dimension", header_body({**META, "tensor": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, F32),
     422, "shape must be an array of integers >= 0, got [-4]"),
    ("entry_with_extra_keys", header_body({**META, "tensor": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16], "x": 1}}, F32),
     422, "an entry is an object with exactly dtype, shape, data_offsets"),
    ("rank_over_the_limit", header_body({**META, "tensor": {"dtype": "F32", "shape": [1] * 33, "data_offsets": [0, 4]}}, F32[:4]),
     422, "shape has 33 dimensions; at most 32 are allowed"),
    ("shape_over_the_element_limit", header_body({**META, "tensor": {"dtype": "F32", "shape": [1 << 20, 1 << 20], "data_offsets": [0, 16]}}, F32),
     413, "has 1099511627776 elements; the limit is 16777216 per tensor"),
    ("empty_but_huge_shape", header_body({**META, "tensor": {"dtype": "F32", "shape": [0, 10**30], "data_offsets": [0, 0]}}),
     422, "shape [0, 1000000000000000000000000000000] is larger than any array can be"),
    ("empty_but_too_big_for_numpy", header_body({**META, "tensor": {"dtype": "F32", "shape": [0, 2**62, 4], "data_offsets": [0, 0]}}),
     422, "is larger than any array can be, even with a dimension of 0"),
    ("metadata_not_strings", header_body({"__metadata__": {"json": {"a": 1}}}), 422, "__metadata__ must be an object of strings"),
    ("name_given_twice", struct.pack("<Q", len(_DUPLICATE)) + _DUPLICATE + F32, 422,
     "the safetensors header names 'tensor' twice"),
    ("name_filling_nothing", st_save({"tensor": np.ones(4, np.float32), "kernel": np.ones(2, np.float32)}, metadata=PENALTY),
     422, "tensor 'kernel' fills no tensor field of PenaltyRequest"),
    ("name_into_a_spec", st_save({"tensor": np.ones(4, np.float32), "regularizer.l1": np.ones(1, np.float32)}, metadata=PENALTY),
     422, "tensor 'regularizer.l1' fills no tensor field of PenaltyRequest"),
    ("field_given_twice", st_save({"tensor": np.ones(4, np.float32)}, metadata={"json": json.dumps(
        {"tensor": [1.0], "regularizer": "l1"})}), 422, "tensor 'tensor': the field is given twice"),
    ("metadata_json_not_json", st_save({"tensor": np.ones(4, np.float32)}, metadata={"json": "{"}), 422,
     "the body is not valid JSON"),
    ("metadata_json_not_an_object", st_save({"tensor": np.ones(4, np.float32)}, metadata={"json": "[]"}), 422,
     "must be an object"),
    ("nan_element", st_save({"tensor": np.array([1, np.nan], np.float32)}, metadata=PENALTY), 422,
     "the tensor[1] is nan; tensor elements must be finite"),
]


@pytest.mark.parametrize(("body", "status", "message"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_safetensors_bodies_are_4xx_envelopes(client: TestClient, body: bytes, status: int, message: str) -> None:
    response = client.post("/v1/penalty", content=body,
                           headers={**BINARY, "Accept": "application/x-safetensors"})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert message in error["message"]
    expected_code = {413: ("payload_too_large", "too_many_elements")}.get(
        status, ("invalid_safetensors", "invalid_json", "invalid_tensor"))
    assert error["code"] in expected_code


def test_the_element_budget_covers_all_tensors_of_a_binary_body(make_client: Any) -> None:
    client = make_client(max_request_elements=10)
    body = st_save({"weights.a.tensor": np.ones(6, np.float32), "weights.b.tensor": np.ones(6, np.float32)},
                   metadata={"json": json.dumps({"weights": {"a": {"regularizer": "l1"}, "b": {"regularizer": "l1"}}})})
    response = client.post("/v1/penalties", content=body, headers=BINARY)
    assert (response.status_code, response.json()["error"]["code"]) == (413, "too_many_elements")


def test_a_header_over_the_configured_limit_is_413(make_client: Any) -> None:
    client = make_client(max_safetensors_header_bytes=64)
    body = st_save({"tensor": np.ones(4, np.float32)}, metadata={"json": json.dumps({"regularizer": "l1", "x": "y" * 80})})
    response = client.post("/v1/penalty", content=body, headers=BINARY)
    assert (response.status_code, response.json()["error"]["code"]) == (413, "payload_too_large")


def test_tensors_may_build_the_layers_list(client: TestClient) -> None:
    """``layers.0.kernel`` creates the first layer when the metadata names none; an index
    past the end is refused."""
    tensors = {"inputs": np.ones((2, 3), np.float32), "targets": np.ones((2, 1), np.float32),
               "layers.0.kernel": np.ones((3, 2), np.float32), "layers.1.kernel": np.ones((2, 1), np.float32)}
    ok = client.post("/v1/network", content=st_save(tensors), headers=BINARY)
    assert ok.status_code == 200, ok.text
    assert ok.json()["losses"]["data_loss"] == 25.0  # (3·2·1 − 1)² with ones
    gap = client.post("/v1/network", content=st_save({**tensors, "layers.3.kernel": np.ones((1, 1), np.float32)}),
                      headers=BINARY)
    assert gap.status_code == 422
    assert "index 3 is past the end (2 items there)" in gap.json()["error"]["message"]


@pytest.mark.parametrize(("accept", "binary"), [
    ("application/x-safetensors", True), ("application/json, application/x-safetensors", True),
    ("application/x-safetensors;q=0", False), ("application/json", False), ("*/*", False),
])
def test_accept_chooses_the_answer_format(client: TestClient, accept: str, binary: bool) -> None:
    response = client.post("/v1/penalty", json={"tensor": [1.0, -2.0], "regularizer": "l1"}, headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"] == ("application/x-safetensors" if binary else "application/json")
    if binary:
        assert st_load(response.content)["gradient"].tolist() == np.float32([0.01, -0.01]).tolist()


def test_read_without_a_budget_checks_the_layout_only() -> None:
    with pytest.raises(SafetensorsError, match="dtype 'U8'"):
        read(header_body({"x": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}, b"\x00"))
    budget = Budget(max_tensor_elements=3, max_request_elements=3, max_depth=2, max_layers=1)
    with pytest.raises(SafetensorsError, match="at most 2 are allowed"):
        read(write({"x": np.ones((1, 1, 1))}), budget=budget)


def test_a_name_of_many_dots_is_refused_quickly(client: TestClient) -> None:
    name = "weights." + "." * 200_000 + ".tensor"
    body = st_save({name: np.ones(1, np.float32)}, metadata={"json": "{}"})
    response = client.post("/v1/penalties", content=body, headers=BINARY)
    assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_safetensors")
    assert "fills no tensor field of PenaltiesRequest" in response.json()["error"]["message"]


VALID = st_save({"inputs": np.ones((2, 3), np.float32), "kernel": np.ones((3, 2), np.float64),
                 "bias": np.ones(2, np.float16)},
                metadata={"json": json.dumps({"activation": "relu", "kernel_regularizer": "l1"})})


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=6),
       st.integers(0, len(VALID)))
def test_no_corruption_of_a_body_is_a_server_error(app: Any, edits: list[tuple[int, int]], cut: int) -> None:
    body = bytearray(VALID)
    for at, value in edits:
        body[at] = value
    client = TestClient(app, raise_server_exceptions=True)
    response = client.post("/v1/dense", content=bytes(body[:cut] if cut % 3 == 0 else body), headers=BINARY)
    assert response.status_code in (200, 400, 413, 422), response.text
    if response.status_code != 200:
        assert set(response.json()["error"]) == {"code", "message", "details"}
