"""Speed of the penalty kernels against the memory-bandwidth floor.

Times each kernel on one float32 tensor (10M elements by default) and reports the
median of repeated runs and its ratio to ``x @ x`` (one BLAS pass over the data,
the floor for any full reduction) measured in the same run.  The naive NumPy
expressions are timed beside ours for comparison.

    python -m bench.kernels [--elements 10000000] [--repeats 15]

Prints a Markdown table (the README's "Benchmarks" section is this output).
"""

from __future__ import annotations

import argparse
import platform
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.common import medians_ms
from service.core.regularizers import L1, L2, Orthogonal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    n = args.elements
    x = rng.normal(size=n).astype(np.float32)
    rows = 1000
    w = x[: (n // rows) * rows].reshape(rows, -1)
    l1, l2, orth = L1(0.01), L2(0.01), Orthogonal(0.01, "rows")

    cases: list[tuple[str, Callable[[], Any]]] = [
        ("floor: x @ x", lambda: x @ x),
        ("naive: np.abs(x).sum()", lambda: np.abs(x).sum()),
        ("naive: (x * x).sum()", lambda: (x * x).sum()),
        ("L1 penalty", lambda: l1.penalty(x)),
        ("L2 penalty", lambda: l2.penalty(x)),
        ("L1 gradient", lambda: l1.gradient(x)),
        ("L2 gradient", lambda: l2.gradient(x)),
        (f"orthogonal penalty ({rows}x{w.shape[1]})", lambda: orth.penalty(w)),
        (f"orthogonal gradient ({rows}x{w.shape[1]})", lambda: orth.gradient(w)),
    ]
    results = list(medians_ms(dict(cases), args.repeats).items())
    floor = results[0][1]
    print(f"{n:,} float32 elements, median of {args.repeats} runs; numpy {np.__version__}, "
          f"Python {platform.python_version()}, {platform.machine()}")
    print()
    print("| kernel | median ms | × floor |")
    print("|---|---:|---:|")
    for name, ms in results:
        print(f"| {name} | {ms:.2f} | {ms / floor:.2f} |")


if __name__ == "__main__":
    main()
