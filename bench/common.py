"""What the benchmark scripts share: interleaved median timings and a live service."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.deploy.server import clean_env, free_port, serve

ROOT = Path(__file__).resolve().parents[1]


class Seconds(float):
    """What a run returns when it timed itself (e.g. inside another process): that
    duration is taken instead of the call's wall time."""


def medians_ms(runs: Mapping[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Median wall time of each run in ms (or the :class:`Seconds` it reports), after one
    warm-up call of each.

    The runs take turns, so whatever else loads the machine hits all of them alike and
    ratios between them are taken within one run.
    """
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()
    for _ in range(repeat):
        for name, run in runs.items():
            start = time.perf_counter()
            own = run()
            times[name].append(own if isinstance(own, Seconds) else time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


@contextmanager
def checkout(rev: str) -> Iterator[str]:
    """The code at ``rev`` in a temporary ``git worktree`` of this checkout; yields its path
    (a ``PYTHONPATH`` that runs that commit's service)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/{rev.replace('/', '_')}"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", path, rev], check=True)
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", path], check=False)


@contextmanager
def live_service(env: Mapping[str, str] | None = None) -> Iterator[str]:
    """``python -m service`` on 127.0.0.1 and a free port; yields its base URL once healthy."""
    port = free_port()
    argv = [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning"]
    with tempfile.TemporaryDirectory() as logs, serve(
        argv, clean_env({"PYTHONPATH": str(ROOT), **(env or {})}), Path(logs), port
    ) as base:
        yield base
