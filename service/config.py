"""Settings: one small injectable object, read from ``PENALTY_*`` environment variables.

``create_app(settings)`` takes it explicitly (tests build their own); ``get_settings()``
reads the environment, which is what ``python -m service`` and uvicorn's factory use.
``HOST`` and ``PORT`` are accepted as well as ``PENALTY_HOST``/``PENALTY_PORT``, because
``make run`` exports them.  Command-line flags of ``python -m service`` are validated by
the same model (:func:`settings_from`), so ``--port 70000`` is refused as
``PENALTY_PORT=70000`` is.  Every variable, its default and its meaning is in the README
("Operating it"); :data:`Settings.model_fields` is the source.

A bad value is one line naming the variable (:func:`describe_error`); an unknown
``PENALTY_*`` variable (a typo) is reported by :func:`unknown_variables`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]

PREFIX = "PENALTY_"
MiB = 1024 * 1024


class Settings(BaseSettings):
    """Process, limit and operation settings; every limit bounds something a client controls."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, frozen=True, validate_by_name=True, validate_by_alias=True
    )

    # --- process
    host: str = Field("127.0.0.1", validation_alias=AliasChoices("PENALTY_HOST", "HOST"))
    port: int = Field(8000, ge=1, le=65535, validation_alias=AliasChoices("PENALTY_PORT", "PORT"))
    workers: int = Field(1, ge=1, le=64)
    log_level: LogLevel = "info"
    #: one JSON object per log line (access log included); false: uvicorn's plain text
    log_json: bool = True

    # --- size limits of one request (413)
    max_body_bytes: int = Field(64 * MiB, ge=1)
    max_tensor_elements: int = Field(1 << 24, ge=1)
    max_request_elements: int = Field(1 << 25, ge=1)
    max_layers: int = Field(64, ge=1)
    max_nesting_depth: int = Field(32, ge=1, le=64)
    # --- cost of one request, priced from its shapes before computing (413 too_expensive)
    max_work: int = Field(4_000_000_000, ge=1)
    max_work_bytes: int = Field(256 * MiB, ge=1)

    # --- admission control of one worker (503 + Retry-After)
    max_concurrent_requests: int = Field(64, ge=1)
    max_inflight_bytes: int = Field(1024 * MiB, ge=1)
    #: bytes a request is assumed to hold per body byte while it is parsed and answered
    body_memory_factor: int = Field(7, ge=1, le=100)
    retry_after_seconds: int = Field(1, ge=1, le=3600)
    #: bodies of at least this many bytes are served in a process pool (0: never)
    offload_bytes: int = Field(1024 * 1024, ge=0)
    offload_processes: int = Field(2, ge=1, le=64)

    # --- server (uvicorn) limits
    max_header_bytes: int = Field(64 * 1024, ge=1024)
    timeout_keep_alive: int = Field(5, ge=1)
    body_read_timeout: float = Field(30.0, gt=0)
    timeout_graceful_shutdown: int = Field(20, ge=1)
    limit_concurrency: int = Field(256, ge=1)

    # --- the binary transport and where work runs (service.api.routing)
    #: bytes of a safetensors body's JSON header
    max_safetensors_header_bytes: int = Field(1 << 20, ge=64)
    #: bodies up to this size are computed on the event loop (no threadpool hop)
    inline_body_bytes: int = Field(4096, ge=0)
    #: BLAS (OpenBLAS/MKL) threads per worker process (threadpoolctl); why 1: ``bench/blas.py``
    blas_threads: int = Field(1, ge=1)
    #: freed memory glibc malloc may keep per arena between requests (0: glibc's defaults;
    #: service.runtime.keep_freed_memory)
    malloc_keep_bytes: int = Field(64 * MiB, ge=0, le=2**31 - 1)

    # --- training runs (/v1/train; 413 too_expensive over them)
    max_train_work: int = Field(20_000_000_000, ge=1)
    max_train_steps: int = Field(100_000, ge=1)
    max_train_seconds: float = Field(60.0, gt=0)
    max_train_history: int = Field(4_000_000, ge=1)

    # --- access
    api_keys: str = Field("", repr=False)
    metrics_require_key: bool = True
    pages_require_key: bool = False
    cors_origins: str = ""

    @field_validator("api_keys", "cors_origins")
    @classmethod
    def _comma_list(cls, value: str) -> str:
        return ",".join(part.strip() for part in value.split(",") if part.strip())

    @model_validator(mode="after")
    def _budget_holds_one_largest_body(self) -> Settings:
        need = self.max_body_bytes * self.body_memory_factor
        if need > self.max_inflight_bytes:
            raise ValueError(
                f"PENALTY_MAX_INFLIGHT_BYTES ({self.max_inflight_bytes}) is below one largest body's "
                f"memory, PENALTY_MAX_BODY_BYTES × PENALTY_BODY_MEMORY_FACTOR = {need}: no such "
                "request could ever be admitted"
            )
        return self

    @property
    def key_list(self) -> list[str]:
        return self.api_keys.split(",") if self.api_keys else []

    @property
    def origin_list(self) -> list[str]:
        return self.cors_origins.split(",") if self.cors_origins else []


#: Variables read besides ``PENALTY_<field>``.
ALIASES = {"HOST": "host", "PORT": "port"}



def get_settings() -> Settings:
    """Settings from the environment (``PENALTY_*``, plus ``HOST``/``PORT``)."""
    return Settings()


def settings_from(flags: Mapping[str, Any]) -> Settings:
    """The environment's settings with ``flags`` (field name -> value, ``None`` = not given)
    overriding them, validated as one model; raises ``ValidationError`` naming the field."""
    given = {name: value for name, value in flags.items() if value is not None}
    return Settings(**given)


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """``PENALTY_*`` variables that name no setting (typos), sorted."""
    environ = os.environ if environ is None else environ
    known = {PREFIX + name.upper() for name in Settings.model_fields}
    return sorted(k for k in environ if k.upper().startswith(PREFIX) and k.upper() not in known)


def describe_error(exc: ValidationError, flags: Mapping[str, str] | None = None) -> str:
    """One line naming each bad variable (or flag) and why: ``PENALTY_PORT=70000: Input
    should be less than or equal to 65535``."""
    flags = flags or {}
    parts = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        if field in flags:
            name = flags[field]
        elif field in Settings.model_fields:
            name = PREFIX + field.upper()
        else:
            name = field or "settings"  # an alias (PENALTY_PORT, PORT) or the whole model
        value = error.get("input")
        shown = "" if not field or isinstance(value, dict) else f"={str(value)[:80]}"
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{name}{shown}: {message}")
    return "invalid settings: " + "; ".join(parts)
