"""The runnable examples in the docstrings of the training modules run and give what they say."""

from __future__ import annotations

import doctest
from types import ModuleType

import numpy as np
import pytest

from service.core import dense_models, optimizers, schedules, training, training_steps, updates


@pytest.mark.parametrize("module", [optimizers, updates, schedules, training, training_steps, dense_models], ids=lambda m: m.__name__)
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module, extraglobs={"np": np}, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
