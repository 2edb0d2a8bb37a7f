"""Typed errors raised by the core.

The web layer maps them to HTTP: ``SpecError`` -> 422 (the request names
something unknown or gives a parameter out of range), ``ShapeError`` and
``NonFiniteError`` -> 400 (well-formed, but cannot be computed).
Every error names the field it concerns, when there is one.
"""

from __future__ import annotations

import reprlib
from typing import Any

_SHOWN = reprlib.Repr()
_SHOWN.maxlevel = 3
_SHOWN.maxstring = _SHOWN.maxother = 60
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxdict = 6


def shown(value: Any) -> str:
    """A client-sent value for an error message: its repr, bounded in length and depth."""
    return _SHOWN.repr(value)


class CoreError(ValueError):
    """Base class; ``code`` is the stable machine-readable error code."""

    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class SpecError(CoreError):
    """An unknown name, an unknown parameter or a parameter out of range."""

    code = "invalid_spec"


class ShapeError(CoreError):
    """Shapes that do not fit together (or a rank the operation does not take)."""

    code = "shape_mismatch"


class NonFiniteError(CoreError):
    """A result overflowed its dtype (or became NaN); nothing non-finite is returned."""

    code = "non_finite_result"
