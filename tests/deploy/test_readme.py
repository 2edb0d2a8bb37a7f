"""Every request example in README.md is sent to the app, and its documented response checked.

An example is a fenced ```bash block holding one `curl` command, followed by a ```json block
with the response. An HTML comment `<!-- example: NAME -->` just before the bash block names
it for the cross-checks at the end of this file. The comparison rule (also in the README):

- every key in the documented response is in the actual one with a matching value; keys the
  README leaves out are not compared (long responses are abridged that way);
- arrays have the same length and match element by element;
- numbers match to rel 1e-6 / abs 1e-9 (`math.isclose`); strings, booleans, null are equal.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.reference import vectors

README = Path(__file__).resolve().parents[2] / "README.md"
REL, ABS = 1e-6, 1e-9

FENCE = re.compile(r"^```(\w*)\n(.*?)^```\s*$", re.M | re.S)
NAME = re.compile(r"<!--\s*example:\s*([\w.-]+)\s*-->\s*$")


@dataclass(frozen=True)
class Example:
    name: str
    line: int
    method: str
    path: str
    body: Any
    expected: Any


def _curl(command: str) -> tuple[str, str, Any]:
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[0] == "curl", command
    method, path, body = "GET", None, None
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg in ("-d", "--data", "--data-raw"):
            body, method, i = json.loads(argv[i + 1]), "POST", i + 2
        elif arg in ("-X", "--request"):
            method, i = argv[i + 1], i + 2
        elif arg in ("-H", "--header"):
            assert argv[i + 1].lower() == "content-type: application/json", argv[i + 1]
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            assert path is None, f"one URL per curl: {command}"
            url = urlsplit(arg if "://" in arg else "http://" + arg)
            path, i = url.path + (f"?{url.query}" if url.query else ""), i + 1
    assert path, command
    return method, path, body


def examples(text: str) -> Iterator[Example]:
    blocks = list(FENCE.finditer(text))
    for index, block in enumerate(blocks):
        lang, content = block.groups()
        if lang != "bash" or not re.search(r"^curl\b", content, re.M):
            continue
        line = text.count("\n", 0, block.start()) + 1
        assert content.lstrip().startswith("curl"), f"README line {line}: one curl per block"
        nxt = blocks[index + 1] if index + 1 < len(blocks) else None
        assert nxt and nxt.group(1) == "json", f"README line {line}: a json block must follow"
        between = text[block.end() : nxt.start()]
        assert not between.strip(), f"README line {line}: nothing between request and response"
        before = text[: block.start()].rstrip().splitlines()[-1]
        named = NAME.search(before)
        method, path, body = _curl(content)
        yield Example(
            name=named.group(1) if named else f"line-{line}",
            line=line,
            method=method,
            path=path,
            body=body,
            expected=json.loads(nxt.group(2)),
        )


EXAMPLES = list(examples(README.read_text(encoding="utf-8")))
BY_NAME = {e.name: e for e in EXAMPLES}


def mismatches(expected: Any, actual: Any, where: str = "$") -> Iterator[str]:
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            yield f"{where}: expected an object, got {actual!r}"
            return
        for key, value in expected.items():
            if key not in actual:
                yield f"{where}.{key}: missing"
            else:
                yield from mismatches(value, actual[key], f"{where}.{key}")
    elif isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            yield f"{where}: expected {len(expected)} items, got {actual!r}"
            return
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            yield from mismatches(e, a, f"{where}[{i}]")
    elif isinstance(expected, bool) or expected is None or isinstance(expected, str):
        if expected != actual:
            yield f"{where}: expected {expected!r}, got {actual!r}"
    elif isinstance(expected, int | float):
        if isinstance(actual, bool) or not isinstance(actual, int | float):
            yield f"{where}: expected a number, got {actual!r}"
        elif not math.isclose(expected, actual, rel_tol=REL, abs_tol=ABS):
            yield f"{where}: expected {expected!r}, got {actual!r}"
    else:  # pragma: no cover - json.loads produces nothing else
        yield f"{where}: cannot compare {expected!r}"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app()) as test_client:
        yield test_client


def send(client: TestClient, example: Example) -> Any:
    if example.method == "POST":
        response = client.post(example.path, json=example.body)
    else:
        response = client.request(example.method, example.path)
    assert response.status_code == 200, f"{example.name}: {response.status_code} {response.text}"
    return response.json()


def test_the_readme_has_the_seed_examples() -> None:
    required = {
        "seed-001-l1",
        "dense-all-three",
        "activity-batch",
        "activity-none",
        "l1-vs-l2",
        "seed-003-relu-l1-activity",
        "seed-003-leaky-relu",
    }
    assert required <= set(BY_NAME), sorted(required - set(BY_NAME))
    assert len({e.name for e in EXAMPLES}) == len(EXAMPLES), "example names are unique"


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_readme_example(client: TestClient, example: Example) -> None:
    assert example.expected not in ({}, [], None), f"{example.name}: document the response"
    problems = list(mismatches(example.expected, send(client, example)))
    assert not problems, f"README line {example.line} ({example.name}):\n" + "\n".join(problems)


# --- cross-checks between examples: what the prose around them claims -------------------------


def test_seed_001_is_4_8(client: TestClient) -> None:
    assert send(client, BY_NAME["seed-001-l1"])["penalty"] == pytest.approx(4.8, rel=REL)


def test_dense_example_is_the_keras_reference_case(client: TestClient) -> None:
    """The Dense example sends a Keras reference case; the README quotes Keras's
    `layer.losses` for it, which must be the vector's values in Keras's order."""
    example = BY_NAME["dense-all-three"]
    (case,) = [
        c for c in vectors.cases("dense") if c["id"] == "seed_dense3_l1_l2_l1_ones_2x2x4_times3"
    ]
    request = case["request"]
    for field in ("inputs", "kernel", "bias"):
        sent = np.asarray(example.body[field], np.float32)
        np.testing.assert_array_equal(sent, vectors.tensor(request[field]))
    for field in ("kernel_regularizer", "bias_regularizer", "activity_regularizer"):
        assert example.body[field] == request[field]

    quoted = re.search(
        r"^>>> \[float\(v\) for v in layer\.losses\].*\n\[(.*)\]$", README.read_text(), re.M
    )
    assert quoted, "README quotes Keras's layer.losses for the Dense example"
    keras = [float(v) for v in quoted.group(1).split(",")]
    assert keras == pytest.approx(case["keras_layer_losses"], rel=REL)
    losses = send(client, example)["losses"]
    ours = [
        losses["activity_regularizer"],
        losses["kernel_regularizer"],
        losses["bias_regularizer"],
    ]
    assert ours == pytest.approx(keras, rel=REL)


def test_activity_is_divided_by_the_first_axis_only(client: TestClient) -> None:
    batch, none = BY_NAME["activity-batch"], BY_NAME["activity-none"]
    assert {k: v for k, v in batch.body.items() if k != "activity_normalization"} == {
        k: v for k, v in none.body.items() if k != "activity_normalization"
    }
    assert (
        batch.body.get("activity_normalization", "batch"),
        none.body["activity_normalization"],
    ) == (
        "batch",
        "none",
    )
    first_axis = np.asarray(batch.body["inputs"]).shape[0]
    for documented in (False, True):
        b, n = (
            (e.expected if documented else send(client, e))["losses"]["activity_regularizer"]
            for e in (batch, none)
        )
        assert n == pytest.approx(first_axis * b, rel=REL)


def test_l1_gradient_is_a_sign_and_l2_is_proportional(client: TestClient) -> None:
    example = BY_NAME["l1-vs-l2"]
    weights = example.body["weights"]
    out = send(client, example)["gradients"]
    for name, spec in weights.items():
        w = np.asarray(spec["tensor"], np.float64)
        grad = vectors.tensor(out[name])
        if spec["regularizer"]["type"] == "l1":
            np.testing.assert_allclose(grad, spec["regularizer"]["l1"] * np.sign(w), rtol=REL)
        else:
            np.testing.assert_allclose(grad, 2 * spec["regularizer"]["l2"] * w, rtol=REL)


def test_seed_003_leaky_relu_is_scaled_relu_plus_l1_activity(client: TestClient) -> None:
    """leaky_relu_α(x) = (1+α)·relu(x) − α·|x|. With a data loss whose gradient does not
    depend on the output (MAE, every output below its target) the gradients wrt the first
    layer obey the same identity: ∂leaky = (1+α)·∂relu + ∂(L1(α) activity on x₂)."""
    relu, leaky = BY_NAME["seed-003-relu-l1-activity"], BY_NAME["seed-003-leaky-relu"]
    alpha = leaky.body["layers"][1]["activation"]["negative_slope"]
    assert relu.body["layers"][0]["activity_regularizer"] == {"type": "l1", "l1": alpha}
    relu_out, leaky_out = send(client, relu), send(client, leaky)
    targets = np.asarray(relu.body["targets"], np.float64)
    assert np.all(vectors.tensor(relu_out["outputs"]) < targets)
    assert np.all(vectors.tensor(leaky_out["outputs"]) < targets)
    r_loss, k_loss = relu_out["losses"], leaky_out["losses"]
    assert k_loss["data_loss"] == pytest.approx(
        (1 + alpha) * r_loss["data_loss"]
        + r_loss["dense/activity_regularizer"]
        - alpha * targets.mean(),
        rel=1e-6,
    )
    r, k = relu_out["gradients"], leaky_out["gradients"]
    for parameter in ("dense/kernel", "dense/bias"):
        expected = (1 + alpha) * vectors.tensor(r[parameter]["data_loss"]) + vectors.tensor(
            r[parameter]["dense/activity_regularizer"]
        )
        np.testing.assert_allclose(
            vectors.tensor(k[parameter]["data_loss"]), expected, rtol=1e-5, atol=1e-7
        )


def test_fp64_keeps_the_exact_factor(client: TestClient) -> None:
    """The tolerance of the general rule cannot tell 0.1·3 in float64 from float32(0.1)·3."""
    example = BY_NAME["fp64-exact-factor"]
    assert example.body["tensor"]["datatype"] == "FP64"
    penalty = send(client, example)["penalty"]
    assert penalty == example.expected["penalty"] == 0.1 * 3.0
    assert penalty != float(np.float32(0.1)) * 3.0
