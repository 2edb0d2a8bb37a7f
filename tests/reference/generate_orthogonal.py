"""Keras reference vectors for the orthogonal regularizer's cheaper exact forms.

``service.core.regularizers.Orthogonal`` sums ``V Vᵀ`` in row blocks when the whole
matrix is large, and in O(n) when the rows have one column (rank one).  This script
records what real Keras 3 (TensorFlow backend, which builds the whole n×n matrix)
gives for shapes that take those paths; ``tests/core/test_orthogonal_forms.py``
compares.  Same format as ``vectors/regularizers.json`` (see README.md); written to
``vectors/orthogonal_forms.json``.  Run outside the project's venv::

    TF_CPP_MIN_LOG_LEVEL=3 KERAS_BACKEND=tensorflow \\
        /work/kerasenv/bin/python tests/reference/generate_orthogonal.py

Inputs are seeded with ``crc32`` of the case id; all are float32 (Keras's orthogonal
regularizer fails on float64: a float32 factor times a float64 tensor). Every expected
number is Keras's
(values from ``OrthogonalRegularizer``, gradients from ``tf.GradientTape``).
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

OUT = Path(__file__).resolve().parent / "vectors" / "orthogonal_forms.json"
DATATYPES = {"float32": "FP32", "float64": "FP64"}

#: id, shape, dtype, factor, mode, rows set to zero (a zero row is clamped, not normalised)
CASES = [
    ("rank_one_rows", (7, 1), "float32", 0.1, "rows", ()),
    ("rank_one_rows_with_zero_rows", (6, 1), "float32", 0.5, "rows", (1, 4)),
    ("rank_one_columns", (1, 9), "float32", 0.2, "columns", ()),
    ("rank_one_rows_long", (3000, 1), "float32", 0.01, "rows", (7,)),
    ("blocked_rows", (2100, 3), "float32", 0.3, "rows", (5,)),
    ("blocked_columns", (2, 2100), "float32", 0.01, "columns", ()),
]


def wire(a: np.ndarray) -> dict:
    return {"shape": list(a.shape), "datatype": DATATYPES[str(a.dtype)], "data": [float(v) for v in a.reshape(-1)]}


def case(case_id: str, shape, dtype: str, factor: float, mode: str, zero_rows) -> dict:
    rng = np.random.default_rng(zlib.crc32(case_id.encode()))
    x = rng.normal(size=shape).astype(dtype)
    if mode == "rows":
        x[list(zero_rows)] = 0
    else:
        x[:, list(zero_rows)] = 0
    reg = keras.regularizers.OrthogonalRegularizer(factor=factor, mode=mode)
    variable = tf.Variable(x)
    with tf.GradientTape() as tape:
        penalty = reg(variable)
    gradient = tape.gradient(penalty, variable)
    spec = {"type": "orthogonal", "factor": factor, "mode": mode}
    return {
        "id": case_id,
        "request": {"tensor": wire(x), "regularizer": spec},
        "expected": {"penalty": float(penalty.numpy()), "gradient": wire(gradient.numpy())},
    }


def main() -> None:
    cases = [case(*c) for c in CASES]
    generator = {
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        "script": "tests/reference/generate_orthogonal.py",
    }
    lines = ",\n".join(json.dumps(c) for c in cases)
    OUT.write_text(f'{{"generator": {json.dumps(generator)}, "cases": [\n{lines}\n]}}\n')
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
