"""Keras 3.15 learning-rate schedules, computed in float32 as Keras computes them.

A schedule maps the optimizer's iteration count (the number of steps already taken)
to a learning rate.  Keras converts ``initial_learning_rate`` to a float32 tensor and
does all the arithmetic in float32, so the service does the same: every value is a
``np.float32``, whatever the dtype of the variables it will update.

==========================  ===============================================================
``exponential_decay``       ``lr0 · rate^(t / steps)`` (``floor`` of the exponent if staircase)
``piecewise_constant_decay``  ``values[i]`` for ``boundaries[i-1] < t ≤ boundaries[i]``
``inverse_time_decay``      ``lr0 / (1 + rate · t / steps)`` (``floor`` if staircase)
``polynomial_decay``        ``(lr0 − end) · (1 − min(t, steps)/steps)^power + end``
                            (with ``cycle``: ``steps · ceil(t/steps)`` instead of the min)
``cosine_decay``            warmup (if ``warmup_target``): linear from ``lr0`` to the target
                            over ``warmup_steps``; then ``from · ((1−α)·½(1+cos(π·s/steps)) + α)``
                            with ``s = min(t − warmup, steps)``
``cosine_decay_restarts``   the cosine restarted after ``first_decay_steps · t_mulⁱ`` steps,
                            the i-th period's peak scaled by ``m_mulⁱ`` (SGDR)
==========================  ===============================================================

Specs: Keras's serialized form (``keras.optimizers.schedules.serialize``:
``{"module": "keras.optimizers.schedules", "class_name": "ExponentialDecay",
"config": {...}}``) or the tagged form ``{"name": "exponential_decay", ...}``.

    >>> s = get({"name": "exponential_decay", "initial_learning_rate": 0.1,
    ...          "decay_steps": 10, "decay_rate": 0.5})
    >>> float(s(10))
    0.05000000074505806
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.core.errors import SpecError, shown
from service.core.specs import FrozenParams, Params, boolean, non_negative, number, positive

F32 = np.float32


def _steps(name: str, value: Any) -> float:
    return positive(name, value)


def _optional_number(name: str, value: Any) -> float | None:
    return None if value is None else number(name, value)


def _numbers(name: str, value: Any) -> tuple[float, ...]:
    if not isinstance(value, list | tuple):
        raise SpecError(f"{name} must be a list of numbers, got {shown(value)}", field=name)
    return tuple(number(f"{name}[{i}]", v) for i, v in enumerate(value))


def _label(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise SpecError(f"{name} must be a string, got {shown(value)}", field=name)
    return value


def _cos(x: Any) -> np.float32:
    """float32 cosine, correctly rounded (as TensorFlow's kernel gives it; NumPy's float32
    ``cos`` is off by an ulp on some arguments)."""
    return F32(np.cos(np.float64(x)))


def _exponential(t: int, p: Mapping[str, Any]) -> np.float32:
    e = F32(t) / F32(p["decay_steps"])
    if p["staircase"]:
        e = np.floor(e)
    return F32(F32(p["initial_learning_rate"]) * np.power(F32(p["decay_rate"]), e))


def _piecewise(t: int, p: Mapping[str, Any]) -> np.float32:
    # Keras casts the boundaries to the step's integer dtype (truncation toward zero);
    # values[i] holds for boundaries[i-1] < t <= boundaries[i] (increasing, checked in _build).
    return F32(p["values"][bisect.bisect_left(_int_bounds(p["boundaries"]), t)])


@functools.lru_cache(maxsize=64)
def _int_bounds(boundaries: tuple[float, ...]) -> list[int]:
    return [int(b) for b in boundaries]


def _inverse_time(t: int, p: Mapping[str, Any]) -> np.float32:
    e = F32(t) / F32(p["decay_steps"])
    if p["staircase"]:
        e = np.floor(e)
    return F32(F32(p["initial_learning_rate"]) / (F32(1) + F32(p["decay_rate"]) * e))


def _polynomial(t: int, p: Mapping[str, Any]) -> np.float32:
    lr0, end = F32(p["initial_learning_rate"]), F32(p["end_learning_rate"])
    step, steps = F32(t), F32(p["decay_steps"])
    if p["cycle"]:
        mult = F32(1) if t == 0 else np.ceil(step / steps)
        steps = F32(steps * mult)
    else:
        step = min(step, steps)
    frac = F32(step / steps)
    return F32((lr0 - end) * np.power(F32(1) - frac, F32(p["power"])) + end)


def _cosine(t: int, p: Mapping[str, Any]) -> np.float32:
    lr0, steps, alpha = F32(p["initial_learning_rate"]), F32(p["decay_steps"]), p["alpha"]
    step = F32(t)

    def decay(s: np.float32, start: np.float32) -> np.float32:
        cosine = F32(0.5) * (F32(1) + _cos(F32(math.pi) * (s / steps)))
        return F32(start * (F32(1 - alpha) * cosine + F32(alpha)))

    if p["warmup_target"] is None:
        return decay(min(step, steps), lr0)
    target, warmup = F32(p["warmup_target"]), F32(p["warmup_steps"])
    step = min(step, F32(steps + warmup))
    if step < warmup:
        return F32((target - lr0) * (step / warmup) + lr0)
    return decay(F32(step - warmup), target)


def _cosine_restarts(t: int, p: Mapping[str, Any]) -> np.float32:
    lr0, first, alpha = F32(p["initial_learning_rate"]), F32(p["first_decay_steps"]), F32(p["alpha"])
    t_mul, m_mul = F32(p["t_mul"]), F32(p["m_mul"])
    frac = F32(F32(t) / first)
    with np.errstate(invalid="ignore", divide="ignore"):
        if t_mul == 1:
            restart = np.floor(frac)
            frac = F32(frac - restart)
        else:
            restart = np.floor(np.log(F32(1) - frac * (F32(1) - t_mul)) / np.log(t_mul))
            done = (F32(1) - np.power(t_mul, restart)) / (F32(1) - t_mul)
            frac = F32((frac - done) / np.power(t_mul, restart))
        cosine = F32(0.5) * np.power(m_mul, restart) * (F32(1) + _cos(F32(math.pi) * frac))
        return F32(lr0 * ((F32(1) - alpha) * cosine + alpha))


@dataclass(frozen=True)
class _Kind:
    name: str
    class_name: str
    params: Params
    fn: Callable[[int, Mapping[str, Any]], np.float32]
    formula: str


def _kinds() -> dict[str, _Kind]:
    lr0 = ("initial_learning_rate", (None, non_negative))
    steps = ("decay_steps", (None, _steps))
    kinds = [
        _Kind("exponential_decay", "ExponentialDecay",
              Params.declare(dict([lr0, steps, ("decay_rate", (None, non_negative)),
                                   ("staircase", (False, boolean))])),
              _exponential, "lr0 · decay_rate^(t / decay_steps)"),
        _Kind("piecewise_constant_decay", "PiecewiseConstantDecay",
              Params.declare({"boundaries": (None, _numbers), "values": (None, _numbers)}),
              _piecewise, "values[i] for boundaries[i-1] < t ≤ boundaries[i]"),
        _Kind("inverse_time_decay", "InverseTimeDecay",
              Params.declare(dict([lr0, steps, ("decay_rate", (None, non_negative)),
                                   ("staircase", (False, boolean))])),
              _inverse_time, "lr0 / (1 + decay_rate · t / decay_steps)"),
        _Kind("polynomial_decay", "PolynomialDecay",
              Params.declare(dict([lr0, steps, ("end_learning_rate", (0.0001, non_negative)),
                                   ("power", (1.0, number)), ("cycle", (False, boolean))])),
              _polynomial, "(lr0 − end) · (1 − t/decay_steps)^power + end"),
        _Kind("cosine_decay", "CosineDecay",
              Params.declare(dict([lr0, steps, ("alpha", (0.0, number)),
                                   ("warmup_target", (None, _optional_number)),
                                   ("warmup_steps", (0, non_negative))])),
              _cosine, "warmup, then from · ((1−α)·½(1+cos(π·t/decay_steps)) + α)"),
        _Kind("cosine_decay_restarts", "CosineDecayRestarts",
              Params.declare(dict([lr0, ("first_decay_steps", (None, _steps)), ("t_mul", (2.0, positive)),
                                   ("m_mul", (1.0, non_negative)), ("alpha", (0.0, number))])),
              _cosine_restarts, "cosine decay restarting after first_decay_steps·t_mulⁱ steps, "
                                "peak × m_mulⁱ (SGDR)"),
    ]
    return {k.name: k for k in kinds}


KINDS = _kinds()
_BY_CLASS = {k.class_name.lower(): k.name for k in KINDS.values()}
_BY_CLASS.update({"piecewiseconstant": "piecewise_constant_decay", "sgdrdecay": "cosine_decay_restarts"})


@dataclass(frozen=True)
class Schedule:
    """One schedule with its checked parameters; ``schedule(t)`` is the float32 rate at step t."""

    name: str
    params: FrozenParams

    def __call__(self, iterations: int) -> np.float32:
        return KINDS[self.name].fn(iterations, self.params)

    def get_config(self) -> dict[str, Any]:
        """The tagged form ``{"name": ..., **params}``."""
        return {"name": self.name, **{k: list(v) if isinstance(v, tuple) else v
                                      for k, v in self.params.items()}}

    def keras_config(self) -> dict[str, Any]:
        """What ``keras.optimizers.schedules.serialize`` writes for this schedule."""
        cfg = self.get_config()
        del cfg["name"]
        return {"module": "keras.optimizers.schedules", "class_name": KINDS[self.name].class_name,
                "config": cfg, "registered_name": None}


def _build(name: str, given: Mapping[str, Any], field: str) -> Schedule:
    kind = KINDS[name]
    try:
        params = kind.params.validate(f"schedule {name}", given)
    except SpecError as exc:
        raise SpecError(exc.message, field=f"{field}.{exc.field}") from None
    missing = [k for k, v in params.items() if v is None and kind.params.defaults[k] is None
               and k != "warmup_target"]
    if missing:
        raise SpecError(f"schedule {name} needs {', '.join(missing)}", field=f"{field}.{missing[0]}")
    if name == "piecewise_constant_decay":
        b, v = params["boundaries"], params["values"]
        if len(b) + 1 != len(v) or not b:
            raise SpecError(
                f"piecewise_constant_decay needs one more value than boundaries (and at least one "
                f"boundary), got {len(b)} boundaries and {len(v)} values",
                field=f"{field}.values",
            )
        if any(x < 0 for x in v):
            raise SpecError("piecewise_constant_decay values must be >= 0", field=f"{field}.values")
        if len(b) > 10_000:
            raise SpecError(f"piecewise_constant_decay has {len(b)} boundaries; the limit is 10000",
                            field=f"{field}.boundaries")
        ints = [int(x) for x in b]
        if any(lo >= hi for lo, hi in itertools.pairwise(ints)):
            raise SpecError(f"piecewise_constant_decay boundaries must increase (as integers), got {shown(b)}",
                            field=f"{field}.boundaries")
    return Schedule(name, params)


def get(spec: Any, field: str = "learning_rate") -> Schedule:
    """A schedule from Keras's serialized form or the tagged ``{"name": ...}`` form."""
    if isinstance(spec, Schedule):
        return spec
    if not isinstance(spec, Mapping):
        raise SpecError(f"{field} must be a number or a schedule object, got {shown(spec)}", field=field)
    if "class_name" in spec:
        cls = spec["class_name"]
        key = cls.lower().replace("_", "") if isinstance(cls, str) else None
        if key not in _BY_CLASS:
            raise SpecError(
                f"unknown schedule class {shown(cls)}; expected one of "
                f"{', '.join(k.class_name for k in KINDS.values())}",
                field=f"{field}.class_name",
            )
        extra = set(spec) - {"class_name", "config", "module", "registered_name"}
        if extra:
            raise SpecError(f"unknown key {shown(sorted(extra)[0])} in a serialized schedule",
                            field=field)
        config = spec.get("config", {})
        if not isinstance(config, Mapping):
            raise SpecError(f"{field}.config must be an object", field=f"{field}.config")
        given = {k: v for k, v in config.items() if k != "name"}  # Keras's instance name
        return _build(_BY_CLASS[key], given, f"{field}.config")
    name = spec.get("name")
    if not isinstance(name, str) or name.lower() not in KINDS:
        raise SpecError(
            f"unknown schedule {shown(name)}; expected one of {', '.join(KINDS)}", field=f"{field}.name"
        )
    return _build(name.lower(), {k: v for k, v in spec.items() if k != "name"}, field)


def describe() -> list[dict[str, Any]]:
    return [
        {"name": k.name, "class_name": k.class_name, "parameters": dict(k.params.defaults),
         "formula": k.formula}
        for k in KINDS.values()
    ]
