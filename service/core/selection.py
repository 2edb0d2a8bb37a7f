"""Which gradients a caller wants: every one, none, only each parameter's ``total``, or
named parameters and terms.  Nothing that was not asked for needs to be computed.

``return_gradients`` accepts::

    True                      every parameter, every term and total
    False                     no gradients
    "totals"                  every parameter, only its "total"
    {"parameters": [...], "terms": [...]}   either list may be omitted (= all)

    >>> s = gradient_selection({"parameters": ["kernel"]})
    >>> s.wants("kernel", "total"), s.wants("bias", "total")
    (True, False)
    >>> gradient_selection("totals").wants("bias", "kernel_regularizer")
    False
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from service.core.errors import SpecError, shown

#: The label of the sum of every term's gradient.
TOTAL = "total"


@dataclass(frozen=True)
class Selection:
    """Parameters and terms asked for; ``None`` means all of them."""

    parameters: frozenset[str] | None = None
    terms: frozenset[str] | None = None

    def wants(self, parameter: str, term: str) -> bool:
        """Is the gradient of ``term`` with respect to ``parameter`` asked for?"""
        return self.wants_parameter(parameter) and (self.terms is None or term in self.terms)

    def wants_parameter(self, parameter: str) -> bool:
        return self.parameters is None or parameter in self.parameters

    def needs(self, parameter: str, term: str) -> bool:
        """Must ``term``'s gradient wrt ``parameter`` be computed (asked for, or part of a
        total that is)?"""
        return self.wants(parameter, term) or self.wants(parameter, TOTAL)

    def check(self, parameters: Iterable[str], terms: Iterable[str], field: str) -> None:
        """Refuse names that are not among the valid ones (listing them)."""
        for kind, asked, valid in (("parameter", self.parameters, parameters),
                                   ("term", self.terms, terms)):
            valid = list(valid)
            unknown = sorted(asked - set(valid)) if asked is not None else []
            if unknown:
                raise SpecError(
                    f"{field}: unknown {kind} {shown(unknown[0])}; the valid {kind}s are "
                    f"{', '.join(valid) or '(none)'}",
                    field=f"{field}.{kind}s",
                )


#: What ``return_gradients`` may be given as (None is False's selection, given back).
GradientsSpec = bool | str | Mapping[str, Any] | Selection | None

ALL = Selection()
TOTALS = Selection(terms=frozenset({TOTAL}))


def gradient_selection(value: Any, field: str = "return_gradients") -> Selection | None:
    """``return_gradients`` -> a :class:`Selection`, or None for no gradients (``False``,
    or ``None``: what this function returns for ``False``, given back to it)."""
    if isinstance(value, Selection):
        return value
    if value is True:
        return ALL
    if value is False or value is None:
        return None
    if value == "totals":
        return TOTALS
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in ("parameters", "terms")]
        if unknown:
            raise SpecError(
                f"{field}: unknown key {shown(unknown[0])}; the keys are parameters and terms",
                field=field,
            )
        return Selection(*(_names(value.get(k), f"{field}.{k}") for k in ("parameters", "terms")))
    raise SpecError(
        f'{field} must be true, false, "totals" or {{"parameters": [...], "terms": [...]}}, '
        f"got {shown(value)}",
        field=field,
    )


def _names(value: Any, field: str) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(f"{field} must be a list of names, got {shown(value)}", field=field)
    return frozenset(value)
