"""What the request and response models share: request limits, enums, and the
``ParsedBy`` marker that validates a field with the wire or core layer."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import (
    GetCoreSchemaHandler,
)
from pydantic_core import CoreSchema, core_schema

from service import wire
from service.config import Settings
from service.core import activations, losses, regularizers

T = TypeVar("T")

# --------------------------------------------------------------------------- request limits

_BUDGET: ContextVar[wire.Budget | None] = ContextVar("penalty_service_budget", default=None)


def budget_for(settings: Settings) -> wire.Budget:
    return wire.Budget(
        max_tensor_elements=settings.max_tensor_elements,
        max_request_elements=settings.max_request_elements,
        max_depth=settings.max_nesting_depth,
        max_layers=settings.max_layers,
    )


@contextmanager
def decoding(budget: wire.Budget) -> Iterator[None]:
    """Validate request models under ``budget`` (one per request)."""
    token = _BUDGET.set(budget)
    try:
        yield
    finally:
        _BUDGET.reset(token)


def current_budget() -> wire.Budget:
    """The current request's budget; outside a request, a fresh one with default limits."""
    return _BUDGET.get() or budget_for(Settings.model_construct())


# --------------------------------------------------------------------------- enums


class Datatype(enum.StrEnum):
    """Open Inference Protocol names; the dtype a computation runs in."""

    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"


class Encoding(enum.StrEnum):
    """How response tensors are written: ``json`` numbers or ``b64`` little-endian bytes."""

    json = "json"
    b64 = "b64"


class ActivityNormalization(enum.StrEnum):
    """``batch`` divides activity penalties by ``outputs.shape[0]`` (Keras ≥ 3.14); ``none`` does not."""

    batch = "batch"
    none = "none"


def _names_enum(name: str, names: Iterable[str], doc: str) -> type[enum.StrEnum]:
    members = enum.StrEnum(name, [(n, n) for n in names])  # type: ignore[misc]
    members.__doc__ = doc
    return members


def _case_distinct(names: Iterable[str]) -> list[str]:
    """``names`` without those that differ from a lower-case one only in case: generated
    clients turn enum values into upper-case constants, where "mse" and "MSE" would clash.
    The names left out are still accepted (the core validates every spec)."""
    names = list(names)
    return [n for n in names if n == n.lower() or n.lower() not in names]


RegularizerIdentifier = _names_enum(
    "RegularizerIdentifier",
    _case_distinct(regularizers.IDENTIFIERS),
    "A Keras regularizer identifier (Keras 3's class names L1, L2, L1L2 and "
    "OrthogonalRegularizer are accepted as well).",
)
ActivationName = _names_enum(
    "ActivationName",
    _case_distinct(activations.ALIASES),
    "A Keras activation name (or alias; the layer class names LeakyReLU, ReLU, ELU and "
    "Softmax are accepted as well).",
)
LossName = _names_enum(
    "LossName",
    _case_distinct(losses.ALIASES),
    "A Keras loss name (or alias; the upper-case MSE, MAE and BCE are accepted as well).",
)


@dataclass(frozen=True)
class ParsedBy:
    """``Annotated[T, ParsedBy(parse, documented_as)]``: ``parse`` turns the JSON value into
    a ``T`` (raising ``PydanticCustomError``); the JSON schema is ``documented_as``'s, the
    forms a client may send."""

    parse: Callable[[Any], Any]
    documented_as: Any

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(
            self.parse, json_schema_input_schema=handler.generate_schema(self.documented_as)
        )
