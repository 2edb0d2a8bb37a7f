"""Named specs with checked parameters: the mechanism every core registry shares.

A spec names an entry of a registry (an activation, a loss) by its Keras name or an
alias, alone (``"leaky_relu"``) or with parameters (``{"name": "leaky_relu",
"negative_slope": 0.1}``).  Each entry declares its parameters as ``name: (default,
check)``; :meth:`Params.validate` rejects unknown ones, checks the given ones and
fills in the Keras defaults.  Every error is a :class:`SpecError` naming the field.

    >>> names = Names("loss", [("huber", ()), ("mean_squared_error", ("mse",))],
    ...               example='{"name": "huber", "delta": 2.0}')
    >>> split_spec({"name": "mse"}, names)
    ('mean_squared_error', {})
    >>> Params.declare({"delta": (1.0, positive)}).validate("loss huber", {})
    {'delta': 1.0}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from service.core.errors import SpecError, shown

#: A parameter check: ``check(name, value)`` returns the normalised value or raises SpecError.
Check = Callable[[str, Any], Any]


class _Required:
    """The default of a parameter that has none (Keras's ``threshold(x, threshold, default_value)``)."""

    def __repr__(self) -> str:
        return "REQUIRED"


#: Declares a parameter without a default: a spec must give it.
REQUIRED: Any = _Required()


class FrozenParams(Mapping[str, Any]):
    """A read-only, hashable mapping of parameters (compares equal to a plain dict)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | None = None) -> None:
        self._items: dict[str, Any] = dict(items or {})

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._items == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._items.items()))

    def __repr__(self) -> str:
        return repr(self._items)


# --------------------------------------------------------------------------- checks


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise SpecError(f"{name} must be a number, got {shown(value)}", field=name)
    return float(value)


def number(name: str, value: Any) -> float:
    """Any finite real number."""
    v = _real(name, value)
    if not math.isfinite(v):
        raise SpecError(f"{name} must be finite, got {shown(value)}", field=name)
    return v


def non_negative(name: str, value: Any) -> float:
    """A finite number ≥ 0 (regularization factors, slopes, thresholds)."""
    v = _real(name, value)
    if not math.isfinite(v) or v < 0:
        raise SpecError(f"{name} must be finite and >= 0, got {shown(value)}", field=name)
    return v


def positive(name: str, value: Any) -> float:
    """A finite number > 0."""
    v = _real(name, value)
    if not math.isfinite(v) or v <= 0:
        raise SpecError(f"{name} must be finite and > 0, got {shown(value)}", field=name)
    return v


def optional_non_negative(name: str, value: Any) -> float | None:
    return None if value is None else non_negative(name, value)


def optional_number(name: str, value: Any) -> float | None:
    return None if value is None else number(name, value)


def nonzero(name: str, value: Any) -> float:
    """A finite number other than 0 (a divisor)."""
    v = number(name, value)
    if v == 0:
        raise SpecError(f"{name} must not be 0 (it divides), got {shown(value)}", field=name)
    return v


def unit_interval(name: str, value: Any) -> float:
    """A number in [0, 1]."""
    v = _real(name, value)
    if not 0 <= v <= 1:
        raise SpecError(f"{name} must be in [0, 1], got {shown(value)}", field=name)
    return v


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise SpecError(f"{name} must be true or false, got {shown(value)}", field=name)
    return bool(value)


# --------------------------------------------------------------------------- registries


@dataclass(frozen=True)
class Params:
    """The parameters one entry declares: Keras defaults and a check for each."""

    defaults: Mapping[str, Any]
    checks: Mapping[str, Check]

    @classmethod
    def declare(cls, params: Mapping[str, tuple[Any, Check]] | None = None) -> Params:
        params = params or {}
        return cls(
            defaults={k: d for k, (d, _) in params.items()},
            checks={k: c for k, (_, c) in params.items()},
        )

    def validate(self, owner: str, given: Mapping[str, Any]) -> FrozenParams:
        """Every declared parameter, checked where given, defaulted where not.

        ``owner`` names the entry in messages (``"activation leaky_relu"``).
        """
        unknown = [k for k in given if k not in self.defaults]
        if unknown:
            allowed = ", ".join(self.defaults) if self.defaults else "none"
            raise SpecError(
                f"unknown parameter {shown(unknown[0])} for {owner}; its parameters are: {allowed}",
                field=str(unknown[0]),
            )
        missing = [k for k, d in self.defaults.items() if d is REQUIRED and k not in given]
        if missing:
            raise SpecError(
                f"{owner} needs the parameter{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                "(it has no default)",
                field=missing[0],
            )
        return FrozenParams(
            {k: self.checks[k](k, given[k]) if k in given else d for k, d in self.defaults.items()}
        )


class Names:
    """The canonical names and aliases of one registry (``kind`` is ``"activation"``, ``"loss"``)."""

    def __init__(self, kind: str, entries: Iterable[tuple[str, tuple[str, ...]]], *, example: str) -> None:
        entries = list(entries)
        self.kind = kind
        self.example = example
        #: Canonical names, in registry order.
        self.names: tuple[str, ...] = tuple(name for name, _ in entries)
        #: Every accepted name (canonical and alias) -> canonical name.
        self.aliases: dict[str, str] = {
            **{name: name for name in self.names},
            **{alias: name for name, aliases in entries for alias in aliases},
        }

    def canonical(self, name: Any, field: str) -> str:
        if isinstance(name, str) and name in self.aliases:
            return self.aliases[name]
        aliases = ", ".join(f"{a} -> {c}" for a, c in self.aliases.items() if a != c)
        raise SpecError(
            f"unknown {self.kind} {shown(name)}; expected one of {', '.join(self.names)} "
            f"(aliases: {aliases})",
            field=field,
        )


def split_spec(spec: Any, names: Names) -> tuple[str, dict[str, Any]]:
    """``(canonical name, given parameters)`` from a name or ``{"name": ..., **params}``."""
    if isinstance(spec, str):
        return names.canonical(spec, names.kind), {}
    if isinstance(spec, Mapping):
        if "name" not in spec:
            raise SpecError(
                f"a{'n' if names.kind[0] in 'aeiou' else ''} {names.kind} object needs 'name' "
                f"(e.g. {names.example})",
                field="name",
            )
        return names.canonical(spec["name"], "name"), {k: v for k, v in spec.items() if k != "name"}
    raise SpecError(
        f"a{'n' if names.kind[0] in 'aeiou' else ''} {names.kind} is a name or an object, "
        f"got {type(spec).__name__}",
        field=names.kind,
    )


class Entry(Protocol):
    """What a registry entry exposes for discovery."""

    @property
    def name(self) -> str: ...
    @property
    def aliases(self) -> tuple[str, ...]: ...
    @property
    def params(self) -> Params: ...
    @property
    def formula(self) -> str: ...


def describe(entries: Iterable[Entry]) -> list[dict[str, Any]]:
    """Name, aliases, parameters with their Keras defaults, and a one-line formula, per entry."""
    return [
        {
            "name": e.name,
            "aliases": list(e.aliases),
            "parameters": {k: None if d is REQUIRED else d for k, d in e.params.defaults.items()},
            "formula": e.formula,
        }
        for e in entries
    ]


@dataclass(frozen=True)
class Named:
    """An entry of a registry picked by name, its parameters checked and defaulted: the
    base of :class:`~service.core.activations.Activation` and :class:`~service.core.losses.Loss`.

    A subclass sets ``_registry`` (canonical name -> entry) and ``_names``.  Building one
    canonicalises the name (``"swish"`` -> ``"silu"``) and validates the parameters, so the
    registry's ``get`` of :meth:`get_config` rebuilds an equal object.
    """

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    _registry: ClassVar[Mapping[str, Entry]]
    _names: ClassVar[Names]

    def __post_init__(self) -> None:
        kind = self._names.kind
        name = self._names.canonical(self.name, kind)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "params", self._registry[name].params.validate(f"{kind} {name}", self.params))

    @property
    def formula(self) -> str:
        return self._registry[self.name].formula

    def get_config(self) -> dict[str, Any]:
        """``{"name": name, **params}``; the registry's ``get`` of it rebuilds an equal object."""
        return {"name": self.name, **self.params}
