"""BLAS threads and OpenBLAS's idle spinning: the core's Dense job with 1 and 2 BLAS threads,
on a quiet machine and with one busy process beside it, with OpenBLAS's default thread
timeout and with ``OPENBLAS_THREAD_TIMEOUT=4`` (what ``python -m service`` sets).

    .venv/bin/python -m bench.blas [--rounds 40]

OpenBLAS reads the variable once, when NumPy loads it, so each setting runs in its own
interpreter; inside one, the thread counts take turns (interleaved medians), with a 2 ms pause
between calls as between a server's requests.  The busy process is a Python loop.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from bench.common import ROOT

CHILD = r"""
import json, statistics, subprocess, sys, time
import numpy as np
from threadpoolctl import threadpool_limits
from bench.transport import BATCH, FEATURES, REGS, UNITS
from service.core.dense import dense

rng = np.random.default_rng(0)
x = rng.normal(size=(BATCH, FEATURES)).astype(np.float32)
k = (rng.normal(size=(FEATURES, UNITS)) * 0.05).astype(np.float32)
b = (rng.normal(size=UNITS) * 0.05).astype(np.float32)
rounds = int(sys.argv[1])

def medians():
    times = {1: [], 2: []}
    for n in times:
        with threadpool_limits(n, "blas"):
            dense(x, k, b, "relu", **REGS)
    for _ in range(rounds):
        for n in times:
            with threadpool_limits(n, "blas"):
                start = time.perf_counter()
                dense(x, k, b, "relu", **REGS)
                times[n].append(time.perf_counter() - start)
            time.sleep(0.002)
    return {n: statistics.median(t) * 1e3 for n, t in times.items()}

out = {"quiet": medians()}
busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
try:
    out["one busy process"] = medians()
finally:
    busy.kill()
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    results = {}
    for label, timeout in (("OpenBLAS default", None), ("OPENBLAS_THREAD_TIMEOUT=4", "4")):
        # OpenBLAS reads an empty value as unset (its built-in timeout), and an empty value
        # keeps bench/__init__ (imported by the child) from setting 4
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_THREAD_TIMEOUT": timeout or ""}
        out = subprocess.run([sys.executable, "-c", CHILD, str(args.rounds)], env=env, cwd=ROOT,
                             capture_output=True, text=True, check=True)
        results[label] = json.loads(out.stdout)
    load = os.getloadavg()[0]
    print(f"bench.blas: the core's Dense job (bench.transport's), medians of {args.rounds} interleaved rounds; "
          f"load average at the end {load:.1f} on {os.cpu_count()} cores\n")
    print("| OpenBLAS thread timeout | machine | 1 BLAS thread, ms | 2 BLAS threads, ms |\n|---|---|---:|---:|")
    for label, by_load in results.items():
        for machine, ms in by_load.items():
            print(f"| {label} | {machine} | {ms['1']:.2f} | {ms['2']:.2f} |")


if __name__ == "__main__":
    main()
