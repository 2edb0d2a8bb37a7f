"""``service.wire``: the three input forms round-trip, and numbers are written shortest-in-dtype."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from service import wire
from service.api.routing import parse_json
from service.core.errors import NonFiniteError
from service.core.numeric import datatype_name
from service.errors import TooManyElements

DTYPES = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}


def budget(**limits: int) -> wire.Budget:
    return wire.Budget(**{"max_tensor_elements": 1000, "max_request_elements": 2000, "max_depth": 8,
                          "max_layers": 4, **limits})


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    datatype = draw(st.sampled_from(sorted(DTYPES)))
    dtype = np.dtype(DTYPES[datatype])
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4))
    elements = st.floats(width=8 * dtype.itemsize, allow_nan=False, allow_infinity=False)
    return draw(hnp.arrays(dtype, shape, elements=elements))


def as_json(value: Any) -> Any:
    """What a client's JSON library would send, read back as the service reads it."""
    return parse_json(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY), max_rank=8)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@settings(max_examples=150, deadline=None)
@given(arrays())
def test_every_input_form_round_trips_exactly(x: np.ndarray) -> None:
    datatype = datatype_name(x.dtype)
    head = {"shape": list(x.shape), "datatype": datatype}
    forms = [
        {**head, "data": [float(v) for v in x.reshape(-1)]},
        {**head, "b64": base64.b64encode(x.astype(x.dtype.newbyteorder("<")).tobytes()).decode()},
    ]
    if x.ndim:
        forms.append({**head, "data": x.tolist()})
    for form in forms:
        assert same(wire.decode(as_json(form), budget()), x), form


@settings(max_examples=150, deadline=None)
@given(arrays(), st.sampled_from(["json", "b64"]))
def test_encoded_output_decodes_to_the_same_array(x: np.ndarray, encoding: str) -> None:
    """Shortest-in-dtype numbers still read back to the very same FP16/FP32/FP64 values."""
    assert same(wire.decode(as_json(wire.encode(x, encoding)), budget()), x)


def test_nested_arrays_are_fp32() -> None:
    x = wire.decode([[1, 2], [3, 4.5]], budget())
    assert same(x, np.array([[1, 2], [3, 4.5]], np.float32))


def test_fp32_numbers_are_written_shortest() -> None:
    out = orjson.dumps(wire.encode(np.array([4.8, 0.1, 1 / 3], np.float32)), option=orjson.OPT_SERIALIZE_NUMPY)
    assert out == b'{"shape":[3],"datatype":"FP32","data":[4.8,0.1,0.33333334]}'


def test_every_fp16_value_is_written_as_its_shortest_fp16_repr() -> None:
    halves = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    finite = halves[np.isfinite(halves)]
    text = orjson.dumps(wire.encode(finite)["data"], option=orjson.OPT_SERIALIZE_NUMPY).decode()
    written = text[1:-1].split(",")
    assert np.array([float(w) for w in written]).astype(np.float16).tobytes() == finite.tobytes()
    assert [float(w) for w in written] == [float(str(h)) for h in finite]


@pytest.mark.parametrize(("value", "expected"), [(np.float32(4.8), 4.8), (np.float16(0.1), 0.1),
                                                 (np.float64(0.1), 0.1), (np.float32(1e-8), 1e-8)])
def test_scalars_are_shortest_in_their_dtype(value: np.floating[Any], expected: float) -> None:
    assert wire.scalar(value, what="x") == expected


@pytest.mark.parametrize("bad", [np.float32(np.inf), np.float64(np.nan)])
def test_non_finite_scalars_are_refused(bad: np.floating[Any]) -> None:
    with pytest.raises(NonFiniteError, match="penalty is not finite"):
        wire.scalar(bad, what="penalty")


def test_non_finite_arrays_are_refused_in_both_encodings() -> None:
    for encoding in ("json", "b64"):
        with pytest.raises(NonFiniteError, match="gradient is not finite in FP16"):
            wire.encode(np.array([1, np.inf], np.float16), encoding, what="gradient")


def test_b64_output_is_little_endian_c_order() -> None:
    x = np.arange(6, dtype=np.float64).reshape(2, 3).T  # not C-contiguous
    out = wire.encode(x, "b64")
    assert out == {"shape": [3, 2], "datatype": "FP64",
                   "b64": base64.b64encode(np.ascontiguousarray(x).astype("<f8").tobytes()).decode()}


def test_budget_counts_tensors_and_refuses_before_allocating() -> None:
    b = budget(max_tensor_elements=10, max_request_elements=12)
    wire.decode([1.0] * 10, b)
    assert b.used == 10
    with pytest.raises(TooManyElements, match="brings the request to 13 elements"):
        wire.decode({"shape": [3], "b64": "not even base64"}, b)


def test_ragged_rows_are_found_wherever_they_are() -> None:
    rows: list[Any] = [[1.0, 2.0]] * 500 + [[1.0]] + [[1.0, 2.0]] * 10
    with pytest.raises(wire.TensorError, match=r"\[500\] has 1 element but \[0\] has 2"):
        wire.decode(rows, budget(max_tensor_elements=2000, max_request_elements=2000))
