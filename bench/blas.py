"""BLAS threads and OpenBLAS's idle spinning: the core's Dense job with 1 and 2 BLAS threads,
on a quiet machine and with one busy process beside it, under several OpenBLAS thread
timeouts (``OPENBLAS_THREAD_TIMEOUT``: idle threads spin 2**N times before they sleep).

    .venv/bin/python -m bench.blas [--rounds 30] [--interpreters 3] [--timeouts default,4,12]

OpenBLAS reads the variable once, when NumPy loads it, so each setting runs in fresh
interpreters (``--interpreters`` of each, taking turns with the other settings); inside one,
the thread counts take turns (interleaved medians), with a 2 ms pause between calls as
between a server's requests.  The busy process is a Python loop.  Each cell shows the median
over the interpreters and, in brackets, the worst interpreter's median: how two BLAS
threads behave varies from one process to the next on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from bench.common import ROOT

CHILD = r"""
import json, statistics, subprocess, sys, time
from threadpoolctl import threadpool_limits
from bench.transport import REGS, dense_job
from service.core.dense import dense

x, k, b = dense_job()
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
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--interpreters", type=int, default=3)
    parser.add_argument("--timeouts", default="default,4,12")
    args = parser.parse_args()
    timeouts = args.timeouts.split(",")
    runs: dict[str, list[dict[str, dict[str, float]]]] = {t: [] for t in timeouts}
    for _ in range(args.interpreters):
        for timeout in timeouts:
            # OpenBLAS reads an empty value as unset (its built-in timeout), and an empty value
            # keeps bench/__init__ (imported by the child) from setting one
            value = "" if timeout == "default" else timeout
            env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_THREAD_TIMEOUT": value}
            out = subprocess.run([sys.executable, "-c", CHILD, str(args.rounds)], env=env, cwd=ROOT,
                                 capture_output=True, text=True, check=True)
            runs[timeout].append(json.loads(out.stdout))
    load = os.getloadavg()[0]
    print(f"bench.blas: the core's Dense job (bench.transport's), medians of {args.rounds} interleaved rounds "
          f"in each of {args.interpreters} interpreters per timeout; load average at the end {load:.1f} on "
          f"{os.cpu_count()} cores\n")
    print("| OPENBLAS_THREAD_TIMEOUT | machine | 1 BLAS thread, ms | 2 BLAS threads, ms |\n|---|---|---:|---:|")
    for timeout, results in runs.items():
        for machine in results[0]:
            cells = []
            for n in ("1", "2"):
                values = [r[machine][n] for r in results]
                cells.append(f"{statistics.median(values):.2f} ({max(values):.2f})")
            label = "OpenBLAS's default" if timeout == "default" else timeout
            print(f"| {label} | {machine} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
