"""Settings: one small injectable object, read from ``PENALTY_*`` environment variables.

``create_app(settings)`` takes it explicitly (tests build their own); ``get_settings()``
reads the environment, which is what ``python -m service`` and uvicorn's factory use.
``HOST`` and ``PORT`` are accepted as well as ``PENALTY_HOST``/``PENALTY_PORT``, because
``make run`` exports them.

=============================  =========  ==============================================
environment variable           default    meaning
=============================  =========  ==============================================
``PENALTY_HOST`` (``HOST``)    127.0.0.1  interface ``python -m service`` binds
``PENALTY_PORT`` (``PORT``)    8000       TCP port
``PENALTY_WORKERS``            1          uvicorn worker processes
``PENALTY_LOG_LEVEL``          info       critical, error, warning, info, debug or trace
``PENALTY_MAX_BODY_BYTES``     67108864   request body bytes (64 MiB); more is a 413
``PENALTY_MAX_TENSOR_ELEMENTS``  16777216 elements of one tensor, from its declared shape
``PENALTY_MAX_REQUEST_ELEMENTS`` 33554432 elements of all tensors of one request, the
                                          layer outputs it would produce included
``PENALTY_MAX_LAYERS``         64         layers of one ``/v1/network`` request
``PENALTY_MAX_NESTING_DEPTH``  32         rank of a tensor (nesting of its JSON arrays)
``PENALTY_MAX_HEADER_BYTES``   1048576    JSON header of a safetensors body
``PENALTY_INLINE_BODY_BYTES``  4096       bodies up to this size are computed on the event
                                          loop (no threadpool hop); larger ones in the pool
``PENALTY_BLAS_THREADS``       1          BLAS (OpenBLAS/MKL) threads per worker process;
                                          1 was measured fastest on a shared 2-core host
                                          (README, "Benchmarks"); cores ÷ workers suits
                                          a machine the service has to itself
=============================  =========  ==============================================
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]


class Settings(BaseSettings):
    """Process and limit settings; every limit bounds something a client controls."""

    model_config = SettingsConfigDict(
        env_prefix="PENALTY_", frozen=True, validate_by_name=True, validate_by_alias=True
    )

    host: str = Field("127.0.0.1", validation_alias=AliasChoices("PENALTY_HOST", "HOST"))
    port: int = Field(8000, ge=0, le=65535, validation_alias=AliasChoices("PENALTY_PORT", "PORT"))
    workers: int = Field(1, ge=1)
    log_level: LogLevel = "info"

    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1)
    max_tensor_elements: int = Field(1 << 24, ge=1)
    max_request_elements: int = Field(1 << 25, ge=1)
    max_layers: int = Field(64, ge=1)
    max_nesting_depth: int = Field(32, ge=1, le=64)
    max_header_bytes: int = Field(1 << 20, ge=64)
    inline_body_bytes: int = Field(4096, ge=0)
    blas_threads: int = Field(1, ge=1)


def get_settings() -> Settings:
    """Settings from the environment (``PENALTY_*``, plus ``HOST``/``PORT``)."""
    return Settings()
