"""The JSON client's bodies (``service.client.jsonbody``): requests written into a kept
buffer equal orjson's text byte for byte; answers parsed from their skeleton equal a whole
parse; nothing returned refers to a kept buffer; and, in a fresh interpreter on glibc's
malloc defaults, a JSON call faults in about the pages its answer's arrays need and no more."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pybase64
import pytest

from service.client import _DTYPES, _NAMES, _little, jsonbody
from service.wire import safetensors
from tests.deploy.server import clean_env, free_port, serve

ROOT = Path(__file__).resolve().parents[2]
RNG = np.random.default_rng(5)


def reference_text(value: Any) -> bytes:
    """What the client sent before: every array as a b64 string, the whole by orjson."""
    def b64(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            little = np.ascontiguousarray(v, dtype=_DTYPES[_NAMES[v.dtype]])
            return {"shape": list(v.shape), "datatype": _NAMES[v.dtype],
                    "b64": pybase64.b64encode_as_string(little.tobytes())}
        if isinstance(v, dict):
            return {k: b64(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [b64(x) for x in v]
        return v
    return orjson.dumps(b64(value))


STEP = jsonbody.STEP
BODIES = {
    "steps": {f"a{n}": RNG.normal(size=n).astype(np.float32) for n in
              (0, 1, 2, 3, STEP // 4 - 1, STEP // 4, STEP // 4 + 1, 2 * STEP // 4 + 5)},
    "dtypes": {"h": np.arange(7, dtype=np.float16), "d": RNG.normal(size=(3, 5)),
               "big_endian": np.arange(6, dtype=">f4").reshape(2, 3), "fortran": np.asfortranarray(RNG.normal(size=(4, 3)))},
    "nested": {"layers": [{"kernel": np.ones((2, 2), np.float32), "units": 2, "name": "dénse/1"},
                          ({"bias": np.zeros(2, np.float32)}, None, True, 1.5)],
               "é\"\\": "quotes \" and \\ backslashes", "empty": {}, "list": []},
}


@pytest.mark.parametrize("name", BODIES)
def test_a_request_is_orjsons_text_byte_for_byte(name: str) -> None:
    body = {key: (value.astype(value.dtype.newbyteorder("=")) if isinstance(value, np.ndarray)
                  and not value.dtype.isnative else value) for key, value in BODIES[name].items()}
    sent = jsonbody.encode(_little(body), _NAMES, jsonbody.Buffers())
    assert bytes(sent) == reference_text(body)


def test_the_request_buffer_is_kept_and_grown() -> None:
    buffers = jsonbody.Buffers()
    first = jsonbody.encode({"x": np.ones(10_000, np.float32)}, _NAMES, buffers)
    kept = first.obj
    second = jsonbody.encode({"x": np.ones(100, np.float32)}, _NAMES, buffers)
    assert second.obj is kept and len(second) < len(first)
    third = jsonbody.encode({"x": np.ones(100_000, np.float32)}, _NAMES, buffers)
    assert third.obj is not kept and buffers.get("request", 10).obj is third.obj
    assert buffers.get("request", jsonbody.KEPT_BYTES + 1).obj is not third.obj  # too large to keep
    buffers.kept["request"] = bytearray(jsonbody.KEPT_BYTES * 3 // 4)
    assert len(buffers.get("request", jsonbody.KEPT_BYTES * 3 // 4 + 1).obj) == jsonbody.KEPT_BYTES  # not 1.5×


def answer_text(document: dict[str, Any]) -> bytes:
    """An answer as the service writes it: arrays as b64 tensor objects, by orjson."""
    return reference_text(document)


ANSWERS = {
    "dense": {"outputs": RNG.normal(size=(40, 30)).astype(np.float32), "losses": {"total": 1.25},
              "gradients": {"kernel": {"total": RNG.normal(size=(30, 30)).astype(np.float32)}}},
    "long strings that are not tensors": {"note": "x" * 5000, "k" * 2000: [1, "y" * 1500], "é": "ü" * 800,
                                          "t": {"shape": [2], "datatype": "FP64", "data": [1.0, 2.0]}},
    "tensors in lists and short b64": {"layers": [{"w": np.arange(3, dtype=np.float32)}, 7,
                                                  np.arange(2000, dtype=np.float64)], "none": None},
    "escapes, parsed whole": {"message": 'a "quoted" word', "g": RNG.normal(size=500).astype(np.float32)},
}


@pytest.mark.parametrize("name", ANSWERS)
def test_an_answer_splits_as_a_whole_parse_and_as_safetensors_would(name: str) -> None:
    text = answer_text(ANSWERS[name])
    kept = bytearray(text) + bytearray(b"stale bytes past the answer")
    document, tensors = jsonbody.decode(kept, len(text), _DTYPES)
    expected_tensors, expected_rest = safetensors.flatten(_arrays(ANSWERS[name]))
    assert document == expected_rest
    assert tensors.keys() == expected_tensors.keys()
    for key, array in tensors.items():
        assert array.dtype == expected_tensors[key].dtype and array.tobytes() == expected_tensors[key].tobytes()
    cut = jsonbody.skeleton(kept, len(text))
    if b"\\" in text:  # an escape anywhere: parsed whole
        assert cut is None
    else:  # every long string was cut out of the parse
        assert cut is not None and len(cut[0]) < 1000 and all(end - start >= jsonbody.LONG for start, end in cut[1])


def _arrays(document: Any) -> Any:
    """``document`` with its JSON-number tensor objects as arrays (as the answer decodes)."""
    if isinstance(document, dict):
        if "data" in document and "datatype" in document:
            return np.asarray(document["data"], _DTYPES[document["datatype"]]).reshape(document["shape"])
        return {k: _arrays(v) for k, v in document.items()}
    if isinstance(document, list):
        return [_arrays(v) for v in document]
    return document


def test_decoded_arrays_do_not_share_the_kept_buffer() -> None:
    array = RNG.normal(size=4000).astype(np.float32)
    text = answer_text({"g": array})
    kept = bytearray(text)
    _, tensors = jsonbody.decode(kept, len(text), _DTYPES)
    kept[:] = b"\0" * len(kept)
    assert tensors["g"].tobytes() == array.tobytes()


@pytest.mark.parametrize("b64", ["!" * 4000, "AAA=" * 1000,
                                 "A" * (jsonbody.DECODE_STEP - 4) + "AA==" + "A" * 4000])
def test_invalid_b64_in_a_long_string_is_refused(b64: str) -> None:
    """Decoded piece by piece, the text is still refused as a whole would be: a piece that
    ends in padding is only valid at the end (the shape is what the pieces would decode to)."""
    pieces = [b64[i:i + jsonbody.DECODE_STEP] for i in range(0, len(b64), jsonbody.DECODE_STEP)]
    nbytes = sum(len(p) // 4 * 3 - p[-2:].count("=") for p in pieces)
    text = orjson.dumps({"g": {"shape": [nbytes // 2], "datatype": "FP16", "b64": b64}})
    with pytest.raises(ValueError):
        pybase64.b64decode(b64, validate=True)
    with pytest.raises(ValueError, match=r"padding|base64|Incorrect|Only"):
        jsonbody.decode(bytearray(text), len(text), _DTYPES)


CHILD = r"""
import json, resource, statistics, sys
import numpy as np
from service.client import Client
base, form = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
x = rng.normal(size=(256, 512)).astype(np.float32)
k = (rng.normal(size=(512, 512)) * 0.05).astype(np.float32)
faults = []
with Client(base, format=form) as c:
    for _ in range(12):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        r = c.dense(x, k, activation="relu", kernel_regularizer="l1", activity_regularizer="l1")
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        del r
print(json.dumps({"first": faults[0], "then": statistics.median(faults[4:])}))
"""


@pytest.mark.slow
def test_a_json_call_faults_in_no_more_than_a_safetensors_call(tmp_path: Path) -> None:
    """Fresh interpreters on glibc's malloc defaults, a Dense call with every gradient (its
    arrays 4.7 MB): the first call faults its memory in; after it, a JSON call must fault
    in no more than a safetensors call.  The request's and answer's text (1.9 and 5.6 MB)
    live in kept buffers and the tensors are decoded into one array per answer, as a
    safetensors answer's arrays share its bytes.  Before, a JSON call faulted in 3,700 to
    4,700 pages every time (the text, a string per tensor, pybase64's results), a
    safetensors call 3 to 1,150."""
    port = free_port()
    argv = [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    env = clean_env({"PYTHONPATH": str(ROOT)})
    with serve(argv, env, tmp_path, port) as base:
        faults = {form: json.loads(subprocess.run([sys.executable, "-c", CHILD, base, form], capture_output=True,
                                                  text=True, cwd=ROOT, env=env, timeout=120, check=True).stdout)
                  for form in ("safetensors", "json")}
    arrays = (256 * 512 * 3 + 512 * 512 * 3) * 4 // 4096  # outputs, inputs' and kernel's gradients
    assert min(f["first"] for f in faults.values()) > arrays * 0.8, faults  # the probe sees fresh memory
    assert faults["json"]["then"] <= faults["safetensors"]["then"] + arrays // 10, faults
