"""The training and model views in Chromium. ``POST /v1/train`` and ``POST /v1/model`` are
built on other branches: while the service answers 404 for them, the tests that need them
skip and the tests that the page reports the missing route run instead. The training
view's own logic (its SSE reader, its seeded problem, its requests) is tested in the page
whatever the build."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.browser.harness import (
    BROWSER_MARKS,
    Watched,
    curl_bodies,
    post,
    text,
    values,
)

pytestmark = BROWSER_MARKS

FIXTURES = Path(__file__).resolve().parent / "fixtures"


# --- Training runs and Bring a model ---------------------------------------------------


def test_train_view_streams_each_run(pw: Watched, api: httpx.Client) -> None:
    pw.open("train")
    pw.page.click("#train-run")
    assert pw.wait("train", timeout=120_000) == "done"
    bodies = curl_bodies(pw, "train")
    assert [b["layers"][0].get("kernel_regularizer", {}).get("type") for b in bodies] == ["l1", "l2"]
    for key, body in zip(["l1", "l2"], bodies, strict=True):
        answer = post(api, "/v1/train", body)
        last = {name: series[-1] for name, series in answer["history"]["losses"].items()}
        column = f'#train [data-run="{key}"] table span[data-name]'
        names = pw.page.eval_on_selector_all(column, "es => es.map(e => e.dataset.name)")
        assert dict(zip(names, values(pw, column), strict=True)) == last
        bars = values(pw, f'#train [data-run="{key}"] .bars .bar')
        assert bars == answer["weights"]["dense/kernel"]["data"]


def model_request() -> dict[str, Any]:
    return {"inputs": [[1.0, 2.0, 3.0, 4.0]], "return_gradients": False}


def test_model_view_reports_an_uploaded_keras_file(pw: Watched, api: httpx.Client) -> None:
    pw.open("model")
    pw.page.set_input_files("#model-file", str(FIXTURES / "dense.keras"))
    pw.page.click("#model-run")
    assert pw.wait("model") == "done"
    response = api.post(
        "/v1/model",
        files={"model": ("dense.keras", (FIXTURES / "dense.keras").read_bytes(), "application/octet-stream")},
        data={"request": json.dumps(model_request())},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert values(pw, "#model-losses .bar") == list(answer["losses"].values())
    for layer in answer["layers"]:
        for term, value in layer["losses"].items():
            assert values(pw, f'#model-layers [data-name="{layer["name"]}/{term}"]') == [value]


def test_model_view_asks_for_a_file_before_sending(pw: Watched) -> None:
    pw.open("model")
    pw.page.click("#model-run")
    assert text(pw, '#model [data-error-for="model"]') == "choose a .keras file first"



READ_EVENTS = """async (chunks) => {
  const { readEvents } = await import('./static/playground/js/train.js');
  const encoder = new TextEncoder();
  const body = new ReadableStream({ start(controller) {
    for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
    controller.close();
  } });
  const events = [];
  await readEvents(new Response(body), (name, data) => events.push([name, data]));
  return events;
}"""


def test_server_sent_events_are_parsed_across_chunk_boundaries(pw: Watched) -> None:
    pw.open("train")
    chunks = [
        'event: progress\r\ndata: {"step": 1,', ' "steps": 2}\r\n\r\n',
        ": a comment line\n\nevent: result\ndata: {\"a\":\n", "data: 1}\n", "\n",
        'event: error\ndata: {"error": {"message": "m"}}\n\n',
    ]
    assert pw.page.evaluate(READ_EVENTS, chunks) == [
        ["progress", {"step": 1, "steps": 2}],
        ["result", {"a": 1}],
        ["error", {"error": {"message": "m"}}],
    ]


PROBLEM = """async () => {
  const { problem } = await import('./static/playground/js/train.js');
  return [problem(), problem()];
}"""


def test_the_synthetic_problem_is_seeded_with_duplicated_and_irrelevant_features(pw: Watched) -> None:
    pw.open("train")
    first, again = pw.page.evaluate(PROBLEM)
    assert first == again
    assert first["features"] == [
        "informative 0", "informative 1", "informative 2", "duplicate of 0", "duplicate of 1",
        "irrelevant 0", "irrelevant 1", "irrelevant 2", "irrelevant 3", "irrelevant 4"]
    rows = first["inputs"]
    assert len(rows) == len(first["targets"]) == 64
    assert all(row[3] == row[0] and row[4] == row[1] for row in rows)
    pw.page.fill("#train-seed", "3")
    other, _ = pw.page.evaluate(PROBLEM)
    assert other["inputs"] != rows


REQUESTS = """async () => {
  const { RUNS, problem, trainRequest } = await import('./static/playground/js/train.js');
  const data = problem();
  return RUNS.map((run) => [run.key, trainRequest(run, data)]);
}"""


def test_each_run_is_the_request_its_name_says(pw: Watched) -> None:
    pw.open("train")
    runs = dict(pw.page.evaluate(REQUESTS))
    lr, lam = 0.05, 0.02
    regularizer = {k: r["layers"][0].get("kernel_regularizer") for k, r in runs.items()}
    assert regularizer == {
        "none": None, "l1": {"type": "l1", "l1": lam}, "l2": {"type": "l2", "l2": lam},
        "l1prox": {"type": "l1", "l1": lam}, "sgd_l2": {"type": "l2", "l2": lam}, "sgd_wd": None,
        "adam_l2": {"type": "l2", "l2": lam}, "adamw": None}
    decay = {"weight_decay": 2 * lam, "exclude_from_weight_decay": ["bias"]}
    assert {k: r["optimizer"] for k, r in runs.items()} == {
        "none": {"name": "sgd", "learning_rate": lr}, "l1": {"name": "sgd", "learning_rate": lr},
        "l2": {"name": "sgd", "learning_rate": lr}, "l1prox": {"name": "sgd", "learning_rate": lr},
        "sgd_l2": {"name": "sgd", "learning_rate": lr, "momentum": 0},
        "sgd_wd": {"name": "sgd", "learning_rate": lr, "momentum": 0, **decay},
        "adam_l2": {"name": "adam", "learning_rate": lr},
        "adamw": {"name": "adamw", "learning_rate": lr, **decay}}
    assert [k for k, r in runs.items() if r["l1_proximal"]] == ["l1prox"]
    for request in runs.values():
        assert request["loss"] == "mean_squared_error" and request["epochs"] == 20
        assert request["batch_size"] == 16 and request["record"] == {"every": 1, "sparsity_tolerances": [0, 0.001]}
        assert request["layers"][0]["kernel"] == [[0]] * 10 and request["layers"][0]["bias"] == [0]
