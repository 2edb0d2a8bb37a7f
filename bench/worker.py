"""A worker's memory and fresh pages per request, for this checkout's service or another commit's.

    .venv/bin/python -m bench.worker [--base REV] [--requests 300]

One ``python -m service`` worker at a time (defaults), called by this checkout's
``Client(base)`` with ``bench.transport``'s Dense job over safetensors, ``"totals"`` only,
``--requests`` times one after another: the worker's RSS after every tenth of them, its peak
RSS, and the median minor page faults a request costs the worker (``/proc/<pid>/stat``)
over the second half.  With ``--base REV`` the same runs follow for the service at ``REV`` (a temporary ``git
worktree``), e.g. the commit before a change to the request path.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.common import checkout
from bench.load import rss, start_server
from bench.transport import REGS, dense_job
from service.client import Client


def minor_faults(pid: int) -> int:
    """The process's minor page faults so far (field 10 of ``/proc/<pid>/stat``)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def faults_of(pid: int, call: Any) -> int:
    before = minor_faults(pid)
    call()
    return minor_faults(pid) - before


def measure(env: dict[str, str], requests: int) -> dict[str, Any]:
    x, k, b = dense_job()
    with tempfile.TemporaryDirectory() as logs:
        proc, base = start_server(env, Path(logs))
        try:
            client = Client(base)
            every = max(1, requests // 10)
            samples, faults = [], []
            for i in range(requests):
                faults.append(faults_of(proc.pid, lambda: client.dense(
                    x, k, b, activation="relu", **REGS, return_gradients="totals")))
                if (i + 1) % every == 0:
                    samples.append(rss(proc.pid, "VmRSS") / 2**20)
            peak = rss(proc.pid, "VmHWM") / 2**20
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return {"rss": samples, "peak": peak, "faults": statistics.median(faults[requests // 2:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="another commit to measure after this checkout")
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    results = {"this checkout": measure({}, args.requests)}
    if args.base:
        with checkout(args.base) as path:
            results[args.base] = measure({"PYTHONPATH": path}, args.requests)
    print(f"bench.worker: one worker, {args.requests} Dense totals requests over safetensors\n")
    print("| service | RSS every tenth of the requests, MiB | peak MiB | faults per request (median) |\n"
          "|---|---|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {', '.join(f'{v:.0f}' for v in r['rss'])} | {r['peak']:.0f} | {r['faults']:,.0f} |")


if __name__ == "__main__":
    main()
