"""Choosing what comes back: a selection returns exactly the asked-for subset of the full
answer (bit for bit), refuses unknown names listing the valid ones, and skips the work
nobody asked for (counted by wrapping the backward pass)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from service.core import dense as dense_module
from service.core.dense import dense
from service.core.errors import SpecError
from service.core.network import LayerSpec, network
from service.core.selection import ALL, TOTALS, Selection, gradient_selection

RNG = np.random.default_rng(9)
X = RNG.normal(size=(5, 4))
K = RNG.normal(size=(4, 3))
B = RNG.normal(size=3)
REGS = {"kernel_regularizer": "l1", "bias_regularizer": "l2", "activity_regularizer": {"type": "l1l2", "l1": 0.1, "l2": 0.1}}


def run_dense(selection: Any) -> Any:
    return dense(X, K, B, "tanh", **REGS, return_gradients=selection)


def stack() -> list[LayerSpec]:
    return [
        LayerSpec(kernel=RNG.normal(size=(4, 3)), bias=RNG.normal(size=3), activation="relu",
                  kernel_regularizer="l2", activity_regularizer="l1"),
        LayerSpec(kernel=RNG.normal(size=(3, 3)), activation="tanh", bias_regularizer=None,
                  activity_regularizer="l2"),
        LayerSpec(kernel=RNG.normal(size=(3, 2)), bias=RNG.normal(size=2), kernel_regularizer="l1"),
    ]


LAYERS = stack()
T = RNG.normal(size=(5, 2))


def run_network(selection: Any) -> Any:
    return network(X, T, LAYERS, "mse", return_gradients=selection)


def expected_subset(full: dict[str, dict[str, np.ndarray]], selection: Selection) -> dict[str, dict[str, np.ndarray]]:
    return {p: {t: g for t, g in terms.items() if selection.wants(p, t)}
            for p, terms in full.items() if selection.wants_parameter(p)}


def assert_same(got: dict[str, dict[str, np.ndarray]], expected: dict[str, dict[str, np.ndarray]]) -> None:
    assert {p: sorted(t) for p, t in got.items()} == {p: sorted(t) for p, t in expected.items()}
    for p, terms in expected.items():
        for t, g in terms.items():
            assert got[p][t].tobytes() == g.tobytes(), f"{p}.{t}"


@pytest.mark.parametrize(("value", "expected"), [
    (True, ALL), ("totals", TOTALS), ({}, ALL),
    ({"parameters": ["kernel"]}, Selection(parameters=frozenset({"kernel"}))),
    ({"terms": ["total", "data_loss"]}, Selection(terms=frozenset({"total", "data_loss"}))),
])
def test_selection_forms(value: Any, expected: Selection) -> None:
    assert gradient_selection(value) == expected
    assert gradient_selection(False) is None


@pytest.mark.parametrize("value", ["all", 1, [], {"params": []}, {"terms": "total"}, {"terms": [1]}])
def test_bad_selections_are_spec_errors(value: Any) -> None:
    with pytest.raises(SpecError, match="return_gradients"):
        gradient_selection(value)


DENSE_SELECTIONS = [
    "totals",
    {"parameters": ["kernel"]},
    {"parameters": ["inputs"], "terms": ["activity_regularizer"]},
    {"terms": ["bias_regularizer", "total"]},
    {"parameters": ["bias", "kernel"], "terms": ["kernel_regularizer"]},
    {"parameters": []},
]


@pytest.mark.parametrize("value", DENSE_SELECTIONS, ids=str)
def test_dense_selection_is_the_subset_of_the_full_answer(value: Any) -> None:
    full, chosen = run_dense(True), run_dense(value)
    selection = gradient_selection(value)
    assert selection is not None
    assert_same(chosen.gradients, expected_subset(full.gradients, selection))
    assert chosen.outputs.tobytes() == full.outputs.tobytes()
    assert chosen.losses == full.losses


NETWORK_SELECTIONS = [
    "totals",
    {"parameters": ["dense_2/kernel"]},
    {"parameters": ["dense/kernel"], "terms": ["dense_1/activity_regularizer", "total"]},
    {"terms": ["data_loss"]},
    {"terms": ["dense/kernel_regularizer"]},
]


@pytest.mark.parametrize("value", NETWORK_SELECTIONS, ids=str)
def test_network_selection_is_the_subset_of_the_full_answer(value: Any) -> None:
    full, chosen = run_network(True), run_network(value)
    selection = gradient_selection(value)
    assert selection is not None
    assert_same(chosen.gradients, expected_subset(full.gradients, selection))


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(SpecError) as dense_error:
        run_dense({"parameters": ["kernal"]})
    assert dense_error.value.message == (
        "return_gradients: unknown parameter 'kernal'; the valid parameters are kernel, bias, inputs")
    with pytest.raises(SpecError) as network_error:
        run_network({"terms": ["dense/bias_regularizer"]})
    assert network_error.value.message == (
        "return_gradients: unknown term 'dense/bias_regularizer'; the valid terms are data_loss, "
        "dense/activity_regularizer, dense/kernel_regularizer, dense_1/activity_regularizer, "
        "dense_2/kernel_regularizer, total")


def counting(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[tuple[bool, bool, bool]]:
    """Record each backward call's (kernel, bias, inputs) products actually computed."""
    calls: list[tuple[bool, bool, bool]] = []
    original: Callable[..., Any] = module.backward

    def spy(*args: Any, **kwargs: Any) -> Any:
        d_kernel, d_bias, d_x = original(*args, **kwargs)
        calls.append((d_kernel is not None, d_bias is not None, d_x is not None))
        return d_kernel, d_bias, d_x

    monkeypatch.setattr(module, "backward", spy)
    return calls


def test_dense_computes_only_what_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting(monkeypatch, dense_module)
    run_dense({"terms": ["kernel_regularizer"]})
    assert calls == []  # the activity term's backward pass is skipped entirely
    run_dense({"parameters": ["kernel"]})
    assert calls == [(True, False, False)]  # no bias sum, no inputs product
    run_dense(True)
    assert calls[-1] == (True, True, True)


def test_network_backprop_stops_at_the_lowest_layer_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting(monkeypatch, dense_module)  # the stack's Dense layers run the Dense backward
    run_network(True)
    full = len(calls)
    assert full == 3 + 1 + 2  # data_loss through 3 layers, activity of dense through 1, of dense_1 through 2
    calls.clear()
    run_network({"parameters": ["dense_2/kernel"]})
    assert calls == [(True, False, False)]  # data_loss's backward pass reaches only the top layer
    calls.clear()
    run_network({"terms": ["dense_2/kernel_regularizer"]})
    assert calls == []
