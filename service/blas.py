"""The BLAS environment of a worker process (standard library only: it runs before NumPy loads).

``python -m service`` calls :func:`prepare_blas_environment` first thing; the thread count
itself is set per worker by ``service.app.limit_blas_threads`` from
``service.config.blas_threads`` (``PENALTY_BLAS_THREADS``, or :func:`available_cores` ÷
workers).
"""

from __future__ import annotations

import os

#: Set before NumPy loads OpenBLAS (``python -m service`` does, first thing): after each
#: call OpenBLAS's worker threads spin for 2**28 cycles by default before they sleep,
#: taking a core from the event loop, the other workers and the next call; 2**4 lets
#: them sleep at once (``bench/blas.py`` measures both).
BLAS_ENVIRONMENT = {"OPENBLAS_THREAD_TIMEOUT": "4"}


def prepare_blas_environment(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Put :data:`BLAS_ENVIRONMENT` into ``environ`` where it is not set already."""
    for name, value in BLAS_ENVIRONMENT.items():
        environ.setdefault(name, value)


def available_cores(cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """The CPUs this process may run on (its affinity), capped by a cgroup v2 CPU quota
    (a container's ``cpus:`` or Kubernetes CPU limit), rounded up."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = open(cpu_max).read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return cores
