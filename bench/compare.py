"""The service at another commit against this checkout's, in alternating blocks.

    .venv/bin/python -m bench.compare --base HEAD~1 [--rounds 6] [--calls 15]

Both services run at once (``python -m service``, the other commit's code from a temporary
``git worktree``); the clients are this checkout's ``Client(base)``.  Each round times a
block of calls of each job on one service, then on the other (the order flips every round,
so neither always runs first), and each block's median is one sample; the report is each
job's blocks and their median, per service.  Interleaving call by call is what
``bench.transport`` does for contenders that do not disturb each other; two services
answering the same large jobs in turn do (the one called after a 16 MiB job pays for it),
hence blocks.  Jobs: ``bench.transport``'s Dense job with ``"totals"`` and its 4M L1
penalty with gradient.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import numpy as np

from bench.common import checkout, live_service, medians_ms
from bench.transport import ELEMENTS, L1, REGS, dense_job
from service.client import Client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the other commit (any git revision)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=15, help="calls per block (the Dense job: twice as many)")
    args = parser.parse_args()
    x, k, b = dense_job()
    big = np.random.default_rng(1).normal(size=ELEMENTS).astype(np.float32)
    with ExitStack() as stack:
        other = stack.enter_context(checkout(args.base))
        services = {
            args.base: Client(stack.enter_context(live_service({"PYTHONPATH": other}))),
            "this checkout": Client(stack.enter_context(live_service())),
        }
        jobs: dict[str, tuple[Callable[[Client], Any], int]] = {
            "Dense job, totals": (lambda c: c.dense(x, k, b, activation="relu", **REGS, return_gradients="totals"),
                                  2 * args.calls),
            "4M L1 with gradient": (lambda c: c.penalty(big, L1), args.calls),
        }
        samples: dict[tuple[str, str], list[float]] = {(j, s): [] for j in jobs for s in services}
        names = list(services)
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                for job, (call, calls) in jobs.items():
                    run = {job: lambda c=services[name], f=call: f(c)}
                    samples[job, name].append(medians_ms(run, calls)[job])  # one warm-up call, then a block
    print(f"bench.compare: {args.rounds} rounds of blocks; each block's median, ms\n")
    print("| job | service | blocks | median |\n|---|---|---|---:|")
    for (job, name), values in samples.items():
        print(f"| {job} | {name} | {', '.join(f'{v:.2f}' for v in values)} | {statistics.median(values):.2f} |")


if __name__ == "__main__":
    main()
