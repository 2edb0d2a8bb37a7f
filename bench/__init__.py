"""Benchmark scripts; run each as a module from the repository root (``make bench``).

The in-process core runs under the same BLAS environment as ``python -m service``
(``service.runtime.BLAS_ENVIRONMENT``, set here before any script loads NumPy).
"""

from service.runtime import prepare_blas_environment

prepare_blas_environment()
