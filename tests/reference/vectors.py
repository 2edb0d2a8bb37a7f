"""Load the Keras reference vectors in ``tests/reference/vectors/*.json``.

Each file is ``{"generator": {...versions...}, "cases": [...]}``; every tensor in a
case is in the API wire form ``{"shape", "datatype", "data"}``.  The format and how
to regenerate the files are in ``tests/reference/README.md``.

    >>> case = cases("regularizers")[0]
    >>> tensor(case["request"]["tensor"]).shape
    (2, 2, 4)
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

VECTORS = Path(__file__).with_name("vectors")
FAMILIES = ("regularizers", "activations", "losses", "dense", "network", "optimizers")
#: Written by tests/reference/generate_models.py (``weighted_models``: generate_weighted_models.py).
MODEL_FAMILIES = ("layers", "models", "weighted_models")
#: Written by ``generate_training.py`` (optimizer steps and ``fit`` runs).
TRAINING_FAMILIES = ("optimizer_steps", "fit_runs", "fit_models")
DTYPES = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}


@functools.cache
def load(family: str) -> dict[str, Any]:
    """The whole document of one family (cached: treat it as read-only)."""
    known = FAMILIES + MODEL_FAMILIES + TRAINING_FAMILIES
    if family not in known:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(known)}")
    with open(VECTORS / f"{family}.json", encoding="utf-8") as f:
        doc: dict[str, Any] = json.load(f)
    return doc


def cases(family: str) -> list[dict[str, Any]]:
    """The cases of one family, in file order (read-only)."""
    result: list[dict[str, Any]] = load(family)["cases"]
    return result


def is_tensor(obj: Any) -> bool:
    return isinstance(obj, dict) and "shape" in obj and "datatype" in obj and "data" in obj


def tensor(obj: dict[str, Any]) -> np.ndarray:
    """A wire tensor as an ndarray of its datatype's dtype."""
    return np.asarray(obj["data"], dtype=DTYPES[obj["datatype"]]).reshape(obj["shape"])


def arrays(obj: Any) -> Any:
    """A copy of ``obj`` with every wire tensor (at any depth) turned into an ndarray."""
    if is_tensor(obj):
        return tensor(obj)
    if isinstance(obj, dict):
        return {k: arrays(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [arrays(v) for v in obj]
    return obj
