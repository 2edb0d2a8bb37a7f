"""The runnable examples in the core's docstrings are part of its contract."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "service.core.regularizers",
    "service.core.activations",
    "service.core.special",
    "service.core.losses",
    "service.core.losses.regression",
    "service.core.losses.probabilistic",
    "service.core.losses.margin",
    "service.core.losses.reduction",
    "service.core.activations.gated",
    "service.core.dense",
    "service.core.network",
    "service.core.heads",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no docstring examples"
    assert result.failed == 0
