"""``PENALTY_BLAS_THREADS``: each app (one per worker process) sets its BLAS thread pool;
OpenBLAS's idle threads sleep at once; glibc keeps freed memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from threadpoolctl import threadpool_info

from service.app import create_app
from service.runtime import prepare_blas_environment
from tests.conftest import make_settings
from tests.deploy.server import clean_env

ROOT = Path(__file__).resolve().parents[2]


def pool_sizes() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


@pytest.mark.parametrize("threads", [2, 1])
def test_the_setting_sizes_the_blas_pool(threads: int) -> None:
    if not pool_sizes():
        pytest.skip("NumPy is linked to no BLAS that threadpoolctl controls")
    create_app(make_settings(blas_threads=threads))
    assert pool_sizes() == {threads}
    create_app(make_settings())  # the default
    assert pool_sizes() == {1}


def test_openblas_threads_are_told_to_sleep_unless_the_operator_says_otherwise() -> None:
    environ: dict[str, str] = {}
    prepare_blas_environment(environ)
    assert environ == {"OPENBLAS_THREAD_TIMEOUT": "4"}
    environ = {"OPENBLAS_THREAD_TIMEOUT": "28"}
    prepare_blas_environment(environ)
    assert environ == {"OPENBLAS_THREAD_TIMEOUT": "28"}


def test_python_m_service_sets_it_before_numpy_loads() -> None:
    """``main()`` prepares the environment first; nothing it has imported by then loads NumPy
    (OpenBLAS reads the variable once, when it loads)."""
    probe = ("import sys, os, service.__main__ as m, service.runtime as c\n"
             "c.prepare_blas_environment = lambda: print('numpy' in sys.modules, flush=True) or sys.exit(0)\n"
             "m.main([])\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                            env=clean_env({"PYTHONPATH": str(ROOT)}), timeout=60)
    assert (result.returncode, result.stdout) == (0, "False\n")


def glibc_defaults() -> dict[str, str]:
    """The probes' environment, without any malloc tuning of the caller's (the "default"
    runs show glibc's own behaviour)."""
    env = clean_env({"PYTHONPATH": str(ROOT)})
    return {k: v for k, v in env.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}


def probe_faults(probe: str, *modes: str) -> dict[str, int]:
    """What ``probe`` prints (the page faults it counted) in a fresh interpreter on glibc's
    defaults, for each mode (its first argument)."""
    return {mode: int(subprocess.run([sys.executable, "-c", probe, mode], capture_output=True, text=True, cwd=ROOT,
                                     env=glibc_defaults(), timeout=60, check=True).stdout)
            for mode in modes}


def test_malloc_keeps_freed_memory_only_where_glibc_takes_the_setting() -> None:
    import platform

    from service.runtime import keep_freed_memory

    assert keep_freed_memory(0) is False
    glibc = platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory(64 * 1024 * 1024) is glibc
    assert keep_freed_memory(1 << 40) is glibc  # capped at mallopt's C int and glibc's mmap maximum


def test_a_keep_beyond_a_c_int_is_capped_not_wrapped() -> None:
    """mallopt takes a C int: 2**32 + 4096 must not wrap to 4096 (which would trim after
    every request), so a fresh interpreter asked to keep it still reuses freed memory."""
    probe = (
        "import resource, sys, threading\n"
        "from service.runtime import keep_freed_memory\n"
        "keep_freed_memory(2**32 + 4096)\n"
        "def requests():\n"
        "    for _ in range(10):\n"
        "        body, answer = bytearray(3 << 20), bytearray(5 << 20)\n"
        "        del body, answer\n"
        "requests()\n"
        "start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "requests()\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)\n"
    )
    faults = probe_faults(probe, "")[""]
    assert faults < 10 * (8 << 20) // 4096 // 20, faults


def test_the_setting_is_bounded_by_a_c_int() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="less than or equal to 2147483647"):
        make_settings(malloc_keep_bytes=2**31)


def test_a_request_s_memory_is_reused_without_new_page_faults() -> None:
    """What the setting is for, in a fresh interpreter: requests served by a thread (a body,
    a few arrays, an answer: 12.5 MiB, freed at the end) fault all their pages in again
    each time by default, and once freed memory is kept, only about the first request does."""
    probe = (
        "import resource, sys, threading\n"
        "from service.runtime import keep_freed_memory\n"
        "if sys.argv[1] == 'keep': keep_freed_memory(64 << 20)\n"
        "def requests():\n"
        "    for _ in range(10):\n"
        "        body, arrays, answer = bytearray(3 << 19), [bytearray(1 << 20) for _ in range(6)], bytearray(5 << 20)\n"
        "        del body, arrays, answer\n"
        "def served():\n"
        "    t = threading.Thread(target=requests); t.start(); t.join()\n"
        "served()\n"
        "start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "served()\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)\n"
    )
    runs = probe_faults(probe, "default", "keep")
    pages = 10 * (25 << 19) // 4096  # 10 requests of 12.5 MiB
    assert runs["default"] > pages // 2, runs
    assert runs["keep"] < pages // 5, runs  # at most about the first request's, in a new thread


def test_memory_kept_after_a_larger_burst_is_trimmed_down_to_the_keep_not_to_nothing() -> None:
    """glibc trims the heap's free top once it exceeds the trim threshold, and then keeps
    only M_TOP_PAD of it.  With the pad at glibc's default (128 KiB) one request larger than
    the keep (a JSON body of 100 MB, freed at once) left nothing kept, and the next requests
    faulted all their pages in again; with the pad at the keep, the keep survives."""
    probe = (
        "import ctypes, resource, sys\n"
        "from service.runtime import M_TOP_PAD, keep_freed_memory\n"
        "keep_freed_memory(64 << 20)\n"
        "if sys.argv[1] == 'glibc pad': ctypes.CDLL(None).mallopt(M_TOP_PAD, 128 << 10)\n"
        "def burst():\n"
        "    blocks = [bytearray(20 << 20) for _ in range(5)]\n"
        "    del blocks\n"
        "def request():\n"
        "    blocks = [bytearray(16 << 20) for _ in range(3)]\n"
        "    del blocks\n"
        "request(); burst()\n"
        "start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "request()\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)\n"
    )
    runs = probe_faults(probe, "glibc pad", "keep")
    pages = (48 << 20) // 4096
    assert runs["glibc pad"] > pages // 2, runs
    assert runs["keep"] < pages // 20, runs
