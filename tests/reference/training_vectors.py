"""Load the training reference vectors (``vectors/optimizer_steps.json``, ``vectors/fit_models.json``,
``vectors/fit_runs.json``) written by ``tests/reference/generate_training.py``; same format
as ``vectors.py`` (use its ``arrays`` and ``tensor`` on the cases)."""

from __future__ import annotations

import functools
import json
from typing import Any

from tests.reference.vectors import VECTORS

FAMILIES = ("optimizer_steps", "fit_runs", "fit_models")


@functools.cache
def load(family: str) -> dict[str, Any]:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
    with open(VECTORS / f"{family}.json", encoding="utf-8") as f:
        doc: dict[str, Any] = json.load(f)
    return doc


def cases(family: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = load(family)["cases"]
    return result
