"""The training reference vectors (``vectors/optimizer_steps.json``, ``vectors/fit_runs.json``,
``vectors/fit_models.json``) written by ``tests/reference/generate_training.py``: loaded by
``vectors.py`` like every family (use its ``arrays`` and ``tensor`` on the cases)."""

from __future__ import annotations

from tests.reference.vectors import TRAINING_FAMILIES as FAMILIES
from tests.reference.vectors import cases, load

__all__ = ["FAMILIES", "cases", "load"]
