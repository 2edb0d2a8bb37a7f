"""A worker process's runtime: OpenBLAS's idle threads and glibc malloc's keeping of freed
memory (standard library only: :func:`prepare_blas_environment` runs before NumPy loads).

``python -m service`` calls :func:`prepare_blas_environment` first thing; each worker's
``create_app`` sets its BLAS thread count (``PENALTY_BLAS_THREADS``) and calls
:func:`keep_freed_memory` with ``PENALTY_MALLOC_KEEP_BYTES``.
"""

from __future__ import annotations

import ctypes
import os

#: Set before NumPy loads OpenBLAS (``python -m service`` does, first thing).  It matters
#: only with ``PENALTY_BLAS_THREADS`` > 1: after each call OpenBLAS's worker threads spin
#: (2**28 times by default) before they sleep, taking a core from the event loop, the other
#: workers and the next call; 2**4 lets them sleep almost at once (``bench/blas.py``).
BLAS_ENVIRONMENT = {"OPENBLAS_THREAD_TIMEOUT": "4"}


def prepare_blas_environment(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Put :data:`BLAS_ENVIRONMENT` into ``environ`` where it is not set already."""
    for name, value in BLAS_ENVIRONMENT.items():
        environ.setdefault(name, value)


#: glibc ``mallopt`` parameters
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -2, -3, -8
#: glibc's largest allowed mmap threshold on 64-bit systems
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
#: the largest value ``mallopt`` takes (a C int)
INT_MAX = 2**31 - 1


def keep_freed_memory(keep_bytes: int) -> bool:
    """Let glibc malloc keep up to ``keep_bytes`` of freed memory at the top of each arena
    (two arenas) instead of handing it back to the kernel after each request.  False where
    there is no glibc or ``keep_bytes`` is 0 (nothing changes), or where glibc refuses a
    setting (those before it stay set).

    Every request allocates its body, its arrays and its answer afresh: megabytes for a
    Dense job.  By default glibc serves blocks over its (adaptive) mmap threshold with fresh
    mappings and trims the heap's free top, so each request page-faults its memory in again:
    the core's Dense job takes 6.5–7.4 ms that way and 4.5–5.1 ms with this (README
    "Benchmarks", ``python -m bench.transport``).  Here blocks up to 32 MiB come from the heap, and a free top up
    to ``keep_bytes`` stays, also once a larger burst has been freed and trimmed (glibc's
    trim keeps only ``M_TOP_PAD``, 128 KiB by default: after a 100 MiB burst, such as one
    large JSON body, the next requests faulted everything in again; ``tests/api/test_runtime.py``); with at most two arenas (threadpool threads would otherwise get
    up to eight per core), the free tops kept between requests are at most 2 × ``keep_bytes``
    (freed blocks below a live allocation stay resident with or without this, as always).
    ``keep_bytes`` over 2 GiB − 1 is taken as 2 GiB − 1 (``mallopt`` takes a C int).
    """
    if keep_bytes <= 0:
        return False
    try:  # the process's own symbols: libc's, where the interpreter links it dynamically
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    keep = min(keep_bytes, INT_MAX)  # mallopt takes a C int
    settings = ((M_MMAP_THRESHOLD, min(keep, MMAP_THRESHOLD_MAX)), (M_TRIM_THRESHOLD, keep), (M_TOP_PAD, keep),
                (M_ARENA_MAX, 2))
    return all(mallopt(param, value) == 1 for param, value in settings)  # stops at the first refusal
