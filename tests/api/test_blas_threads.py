"""``PENALTY_BLAS_THREADS``: each app (one per worker process) sets its BLAS thread pool."""

from __future__ import annotations

import pytest
from threadpoolctl import threadpool_info

from service.app import create_app
from tests.conftest import make_settings


def blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


@pytest.mark.parametrize("threads", [2, 1])
def test_the_setting_sizes_the_blas_pool(threads: int) -> None:
    if not blas_threads():
        pytest.skip("NumPy is linked to no BLAS that threadpoolctl controls")
    create_app(make_settings(blas_threads=threads))
    assert blas_threads() == {threads}
    create_app(make_settings())  # the default
    assert blas_threads() == {1}
