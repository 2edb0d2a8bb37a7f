"""The playground in Chromium: each view is loaded and operated, and every number it draws
is compared with the answer to the same request sent independently with httpx. The
``pw`` fixture fails a test whose page requested anything outside the service or logged a
console error, and saves a screenshot of it in ``tests/browser/artifacts``."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.browser.harness import (
    BROWSER_MARKS,
    NARROW,
    VIEWS,
    Watched,
    cells,
    curl_bodies,
    post,
    text,
    values,
)

pytestmark = BROWSER_MARKS

GRID = [round(-2 + i * 0.1, 1) for i in range(41)]


# --- Regularizers ---------------------------------------------------------------------


def scalar_request(w: float, regularizer: dict[str, Any]) -> dict[str, Any]:
    return {"tensor": {"shape": [1], "datatype": "FP32", "data": [w]}, "regularizer": regularizer,
            "return_gradient": True}


def test_regularizers_draw_the_api_answers(pw: Watched, api: httpx.Client) -> None:
    pw.open("regularizers")
    l1 = {"type": "l1", "l1": 0.1}
    answer = post(api, "/v1/penalty", scalar_request(0.5, l1))
    assert values(pw, '[data-name="penalty"]') == [answer["penalty"]]
    assert cells(pw, "gradient") == answer["gradient"]["data"]
    assert json.loads(text(pw, '[data-name="echo"]')) == answer["regularizer"] == l1
    assert json.loads(text(pw, '[data-name="keras"]')) == {"class_name": "L1", "config": {"l1": 0.1}}
    assert text(pw, '[data-name="constructor"]') == "keras.regularizers.L1(l1=0.1)"
    curve = post(api, "/v1/penalties", {"weights": {
        f"w{i}": {"tensor": {"shape": [1], "datatype": "FP32", "data": [x]}, "regularizer": l1}
        for i, x in enumerate(GRID)}})
    drawn = json.loads(pw.page.get_attribute("#reg-penalty-plot", "data-values") or "")
    assert drawn == [curve["penalties"][f"w{i}"] for i in range(len(GRID))]
    drawn = json.loads(pw.page.get_attribute("#reg-gradient-plot", "data-values") or "")
    assert drawn == [curve["gradients"][f"w{i}"]["data"][0] for i in range(len(GRID))]


def test_regularizer_controls_work_from_the_keyboard(pw: Watched, api: httpx.Client) -> None:
    pw.open("regularizers")
    pw.page.focus("#reg-type")
    pw.page.select_option("#reg-type", "l1l2")
    pw.page.focus("#reg-w")
    for _ in range(10):
        pw.page.keyboard.press("ArrowRight")
    pw.page.focus("#reg-l2")
    for _ in range(15):
        pw.page.keyboard.press("ArrowRight")
    assert pw.page.input_value("#reg-w") == "1.5" and pw.page.input_value("#reg-l2") == "0.25"
    pw.page.focus("#reg-run")
    pw.page.keyboard.press("Enter")
    assert pw.wait("regularizers") == "done"
    request = scalar_request(1.5, {"type": "l1l2", "l1": 0.1, "l2": 0.25})
    assert curl_bodies(pw, "regularizers")[0] == request
    answer = post(api, "/v1/penalty", request)
    assert values(pw, '[data-name="penalty"]') == [answer["penalty"]]
    assert cells(pw, "gradient") == answer["gradient"]["data"]
    assert json.loads(text(pw, '[data-name="keras"]')) == {
        "class_name": "L1L2", "config": {"l1": 0.1, "l2": 0.25}}


def test_orthogonal_on_a_matrix_and_its_error(pw: Watched, api: httpx.Client) -> None:
    pw.open("regularizers")
    pw.page.select_option("#reg-type", "orthogonal")
    assert pw.wait("regularizers") == "done"
    matrix = [[1.0, 0.5, 0.0], [0.25, 1.0, -0.5]]
    request = {"tensor": {"shape": [2, 3], "datatype": "FP32", "data": matrix},
               "regularizer": {"type": "orthogonal", "factor": 0.1, "mode": "rows"},
               "return_gradient": True}
    assert curl_bodies(pw, "regularizers")[0] == request
    answer = post(api, "/v1/penalty", request)
    assert values(pw, '[data-name="penalty"]') == [answer["penalty"]]
    assert cells(pw, "gradient") == answer["gradient"]["data"]
    assert json.loads(text(pw, '[data-name="keras"]'))["class_name"] == "OrthogonalRegularizer"
    assert text(pw, '[data-name="constructor"]') == (
        'keras.regularizers.OrthogonalRegularizer(factor=0.1, mode="rows")')

    pw.allowed_statuses.add(400)
    pw.page.fill("#reg-matrix", "[[[1, 2]]]")
    pw.page.dispatch_event("#reg-matrix", "change")
    assert pw.wait("regularizers") == "error"
    bad = {**request, "tensor": {"shape": [1, 1, 2], "datatype": "FP32", "data": [[[1, 2]]]}}
    error = api.post("/v1/penalty", json=bad)
    assert error.status_code == 400
    assert text(pw, '#regularizers [data-error-for="tensor"]') == error.json()["error"]["message"]
    assert pw.page.get_attribute("#reg-matrix", "aria-invalid") == "true"


# --- One Dense layer --------------------------------------------------------------------

SEED_001 = {
    "inputs": [[[3, 3, 3, 3], [3, 3, 3, 3]], [[3, 3, 3, 3], [3, 3, 3, 3]]],
    "kernel": [[0.49913177, 0.69652647, -0.04094114], [-0.8659489, 0.5622707, 0.047769386],
               [0.43266872, 0.23136215, 0.056189764], [-0.4926279, 0.30498105, -0.46216375]],
    "bias": [-0.8470673, -0.052689873, 0.3222303],
    "activation": "linear",
    "kernel_regularizer": {"type": "l1", "l1": 0.1},
    "bias_regularizer": {"type": "l2", "l2": 0.1},
    "activity_regularizer": {"type": "l1", "l1": 0.1},
    "activity_normalization": "batch",
    "return_gradients": True,
}


def assert_dense_drawn(pw: Watched, answer: dict[str, Any]) -> None:
    drawn = dict(zip(
        pw.page.eval_on_selector_all("#dense-losses .bar", "es => es.map(e => e.dataset.name)"),
        values(pw, "#dense-losses .bar"), strict=True))
    assert drawn == answer["losses"]
    assert cells(pw, "outputs") == answer["outputs"]["data"]
    for parameter, terms in answer["gradients"].items():
        for term, tensor in terms.items():
            assert cells(pw, f"{parameter}.{term}") == tensor["data"], (parameter, term)


def test_dense_seed_001_and_the_normalization_switch(pw: Watched, api: httpx.Client) -> None:
    pw.open("dense")
    assert curl_bodies(pw, "dense") == [SEED_001]
    assert_dense_drawn(pw, post(api, "/v1/dense", SEED_001))

    pw.page.select_option("#dense-norm", "none")
    pw.page.focus("#dense-run")
    pw.page.keyboard.press("Enter")
    assert pw.wait("dense") == "done"
    request = {**SEED_001, "activity_normalization": "none"}
    assert curl_bodies(pw, "dense") == [request]
    answer = post(api, "/v1/dense", request)
    assert_dense_drawn(pw, answer)
    batch = post(api, "/v1/dense", SEED_001)["losses"]["activity_regularizer"]
    assert answer["losses"]["activity_regularizer"] == pytest.approx(2 * batch, rel=1e-6)


def test_dense_seed_000_preset_with_a_sigmoid(pw: Watched, api: httpx.Client) -> None:
    pw.open("dense")
    pw.page.select_option("#dense-preset", "seed000")
    pw.page.click("#dense-load")
    assert pw.wait("dense") == "done"
    pw.page.select_option("#dense-activation", "sigmoid")
    pw.page.click("#dense-run")
    assert pw.wait("dense") == "done"
    (request,) = curl_bodies(pw, "dense")
    assert request["activation"] == "sigmoid" and request["bias_regularizer"] is None
    assert request["inputs"] == [[120, 340, 200, 80], [300, 150, 90, 260]]
    assert_dense_drawn(pw, post(api, "/v1/dense", request))


def test_dense_errors_appear_next_to_their_control(pw: Watched, api: httpx.Client) -> None:
    pw.open("dense")
    pw.allowed_statuses.add(400)
    five_rows = "[[1, 2, 3], [1, 2, 3], [1, 2, 3], [1, 2, 3], [1, 2, 3]]"
    pw.page.fill("#dense-kernel", five_rows)
    pw.page.click("#dense-run")
    assert pw.wait("dense") == "error"
    error = api.post("/v1/dense", json={**SEED_001, "kernel": json.loads(five_rows)})
    assert error.status_code == 400
    message = error.json()["error"]["message"]
    assert "5 rows" in message
    assert text(pw, '#dense [data-error-for="kernel"]') == message

    sent = len(pw.requests)
    pw.page.fill("#dense-inputs", "[[3, 3,")
    pw.page.click("#dense-run")
    assert pw.wait("dense") == "error"
    assert text(pw, '#dense [data-error-for="inputs"]').startswith("inputs is not valid JSON")
    assert text(pw, '#dense [data-error-for="kernel"]') == ""
    assert len(pw.requests) == sent, "a field that is not JSON is caught before sending"


# --- Seed 003 ---------------------------------------------------------------------------


def seed_003_networks(alpha: float, loss: str) -> dict[str, dict[str, Any]]:
    """The three networks the view describes, written out independently of its script."""
    common = {"inputs": [[1.0, -2.0, 0.5], [0.5, 1.0, -1.0]], "targets": [[10.0], [10.0]], "loss": loss}
    first = {"kernel": [[0.5, -1.0], [-0.25, 0.5], [1.0, 0.75]], "bias": [0.25, 0.5]}

    def net(activation: Any, c: float, activity: Any = None) -> dict[str, Any]:
        layer = {**first, **({"activity_regularizer": activity} if activity else {})}
        return {**common, "layers": [
            layer,
            {"kernel": [[1, 0], [0, 1]], "bias": None, "activation": activation},
            {"kernel": [[c], [c]], "bias": None}]}

    return {
        "relu": net("relu", 1),
        "leaky": net({"name": "leaky_relu", "negative_slope": alpha}, 1),
        "split": net("relu", 1 + alpha, {"type": "l1", "l1": alpha}),
    }


def assert_seed_003_drawn(pw: Watched, api: httpx.Client, alpha: float, loss: str) -> None:
    networks = seed_003_networks(alpha, loss)
    assert curl_bodies(pw, "seed003") == list(networks.values())
    for key, request in networks.items():
        answer = post(api, "/v1/network", request)
        column = f'#seed003 [data-net="{key}"]'
        assert values(pw, f"{column} .bar") == list(answer["losses"].values())
        for parameter, terms in answer["gradients"].items():
            if parameter == "dense_1/kernel":
                continue
            for term, tensor in terms.items():
                assert cells(pw, f"{key}:{parameter}.{term}") == tensor["data"], (key, parameter, term)


def test_seed_003_three_networks_side_by_side(pw: Watched, api: httpx.Client) -> None:
    pw.open("seed003")
    assert_seed_003_drawn(pw, api, 0.1, "mean_absolute_error")
    pw.page.select_option("#s3-loss", "mean_squared_error")
    assert pw.wait("seed003") == "done"
    assert_seed_003_drawn(pw, api, 0.1, "mean_squared_error")
    pw.page.fill("#s3-alpha", "0.25")
    pw.page.dispatch_event("#s3-alpha", "change")
    assert pw.wait("seed003") == "done"
    assert_seed_003_drawn(pw, api, 0.25, "mean_squared_error")


# --- Accessibility and layout ------------------------------------------------------------


def test_tabs_switch_views_from_the_keyboard(pw: Watched) -> None:
    pw.open("regularizers")
    pw.page.focus("#tab-dense")
    pw.page.keyboard.press("Enter")
    assert pw.wait("dense") == "done"
    assert pw.page.is_visible("#dense") and not pw.page.is_visible("#regularizers")
    assert pw.page.get_attribute("#tab-dense", "aria-current") == "page"


UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
  .map(e => e.id || e.outerHTML)"""


@pytest.mark.parametrize("pw", [NARROW], indirect=True, ids=["390px"])
@pytest.mark.parametrize("view", VIEWS)
def test_each_view_fits_a_narrow_screen_and_labels_every_control(pw: Watched, view: str) -> None:
    pw.allowed_statuses.add(404)
    pw.open(view)
    assert pw.page.evaluate(UNLABELLED) == []
    width = pw.page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= NARROW["width"], f"{view} is {width}px wide at {NARROW['width']}px"
