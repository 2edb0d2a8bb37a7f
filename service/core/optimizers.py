"""Keras 3.15 optimizers, one step at a time: parameters, gradients and state in, out again.

One step, in Keras's order (SPEC §6.1)::

    lr   = float32(learning_rate)  or  schedule(iterations)        # before the step, float32
    g    = clip(g)            # clipnorm per tensor | global_clipnorm over all | clipvalue
    w    = w − (w · wd) · lr  # decoupled weight decay, unless excluded by name
    w, s = update(g, w, s, lr)                                        # the optimizer's rule
    iterations += 1

Updates (``t = iterations + 1``; β's, ρ, ε, momentum as Keras names them)::

    sgd       m = μ·m − lr·g;  w += m  (nesterov: w += μ·m − lr·g);  μ = 0: w −= lr·g
    rmsprop   v = ρ·v + (1−ρ)·g²;  [centered: a = ρ·a + (1−ρ)·g, v − a²]; Δ = lr·g/√(v(−a²)+ε)
              momentum > 0: m = μ·m + Δ, w −= m;  else w −= Δ
    adagrad   A += g²;  w −= lr·g/√(A + ε)                   (A starts at 0.1)
    adam      m += (g−m)(1−β1);  v += (g²−v)(1−β2);  [amsgrad: v̂ = max(v̂, v)]
              w −= m·lr·√(1−β2ᵗ)/(1−β1ᵗ) / (√v + ε)       (adamw: the same, wd = 0.004)
    adamax    m += (g−m)(1−β1);  u = max(β2·u, |g|);  w −= lr·m / ((1−β1ᵗ)(u + ε))
    nadam     μₜ = β1(1 − ½·0.96ᵗ);  Πₜ = Π μ;  m, v as adam;
              w −= lr·(μₜ₊₁·m/(1−Πₜμₜ₊₁) + (1−μₜ)·g/(1−Πₜ)) / (√(v/(1−β2ᵗ)) + ε)
    lion      w −= lr·sign(β1·m + (1−β1)·g);  m = β2·m + (1−β2)·g

Arithmetic runs in each parameter's dtype; the learning rate is rounded to float32 first
(Keras keeps it in a float32 variable), other hyperparameters are cast to the
parameter's dtype.  Slot names are Keras's (``momentum``, ``velocity``, ...).

    >>> opt = get({"name": "sgd", "learning_rate": 0.1, "weight_decay": 0.01})
    >>> w = {"w": np.array([1.0, -2.0, 3.0], np.float32)}
    >>> g = {"w": np.array([0.5, 0.5, -1.0], np.float32)}
    >>> new, state = step(opt, w, g, None)
    >>> [round(float(v), 3) for v in new["w"]], state.iterations
    ([0.949, -2.048, 3.097], 1)
"""

from __future__ import annotations

import re
import re._parser as re_parser  # type: ignore[import-not-found]  # the stdlib parser of `re`
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.core import schedules, updates
from service.core.errors import ShapeError, SpecError, shown
from service.core.numeric import FloatArray, check_finite
from service.core.specs import FrozenParams, Params, boolean, non_negative, unit_interval


@dataclass(frozen=True)
class OptimizerState:
    """``iterations`` (steps taken) and each parameter's slot variables, named as Keras names them."""

    iterations: int = 0
    slots: Mapping[str, Mapping[str, FloatArray]] = field(default_factory=dict)


def _beta(name: str, value: Any) -> float:
    return unit_interval(name, value)


def _eps(name: str, value: Any) -> float:
    return non_negative(name, value)


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Kind:
    name: str
    class_name: str
    learning_rate: float
    params: Params
    update: Any
    formula: str
    weight_decay: float | None = None

    def slots(self, p: Mapping[str, Any]) -> dict[str, float]:
        """Slot name -> initial value, in Keras's order."""
        n = self.name
        if n == "sgd":
            return {"momentum": 0.0} if p["momentum"] != 0 else {}
        if n == "rmsprop":
            return {"velocity": 0.0, **({"momentum": 0.0} if p["momentum"] > 0 else {}),
                    **({"average_gradient": 0.0} if p["centered"] else {})}
        if n == "adagrad":
            return {"accumulator": p["initial_accumulator_value"]}
        if n in ("adam", "adamw"):
            return {"momentum": 0.0, "velocity": 0.0, **({"velocity_hat": 0.0} if p["amsgrad"] else {})}
        if n == "adamax":
            return {"momentum": 0.0, "norm": 0.0}
        if n == "nadam":
            return {"momentum": 0.0, "velocity": 0.0}
        return {"momentum": 0.0}


_ADAM = {"beta_1": (0.9, _beta), "beta_2": (0.999, _beta), "epsilon": (1e-7, _eps)}
KINDS: dict[str, Kind] = {k.name: k for k in [
    Kind("sgd", "SGD", 0.01, Params.declare({"momentum": (0.0, unit_interval), "nesterov": (False, boolean)}),
         updates.sgd, "m = μ·m − lr·g; w += m (nesterov: w += μ·m − lr·g)"),
    Kind("rmsprop", "RMSprop", 0.001,
         Params.declare({"rho": (0.9, _beta), "momentum": (0.0, unit_interval), "epsilon": (1e-7, _eps),
                         "centered": (False, boolean)}),
         updates.rmsprop, "v = ρv + (1−ρ)g²; w −= lr·g/√(v + ε)"),
    Kind("adagrad", "Adagrad", 0.001,
         Params.declare({"initial_accumulator_value": (0.1, non_negative), "epsilon": (1e-7, _eps)}),
         updates.adagrad, "A += g²; w −= lr·g/√(A + ε)"),
    Kind("adam", "Adam", 0.001, Params.declare({**_ADAM, "amsgrad": (False, boolean)}),
         updates.adam, "w −= lr·√(1−β2ᵗ)/(1−β1ᵗ) · m/(√v + ε)"),
    Kind("adamw", "AdamW", 0.001, Params.declare({**_ADAM, "amsgrad": (False, boolean)}),
         updates.adam, "w −= w·wd·lr, then adam", weight_decay=0.004),
    Kind("adamax", "Adamax", 0.001, Params.declare(_ADAM), updates.adamax,
         "u = max(β2·u, |g|); w −= lr·m/((1−β1ᵗ)(u + ε))"),
    Kind("nadam", "Nadam", 0.001, Params.declare(_ADAM), updates.nadam, "adam with Nesterov momentum (μₜ schedule)"),
    Kind("lion", "Lion", 0.001, Params.declare({"beta_1": (0.9, _beta), "beta_2": (0.99, _beta)}),
         updates.lion, "w −= lr·sign(β1·m + (1−β1)·g); m = β2·m + (1−β2)·g"),
]}
_BY_LOWER = {k.lower(): k for k in KINDS}

#: Arguments every Keras optimizer takes, with the values the service supports.
_COMMON = ("learning_rate", "weight_decay", "clipnorm", "clipvalue", "global_clipnorm",
           "exclude_from_weight_decay")
#: Keras arguments read but not implemented: the one value accepted for each (``name``,
#: Keras's instance name, and ``ema_momentum``, used only with EMA, are ignored).
#: tf.keras 2.x configs add ``jit_compile``, ``is_legacy_optimizer`` and (legacy) ``decay``.
_UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "use_ema": (False,), "ema_overwrite_frequency": (None,), "loss_scale_factor": (None,),
    "gradient_accumulation_steps": (None,), "is_legacy_optimizer": (False,), "decay": (None, 0.0)}
_IGNORED = ("name", "ema_momentum", "jit_compile")


@dataclass(frozen=True)
class Optimizer:
    """A Keras optimizer's configuration (no state: that is :class:`OptimizerState`)."""

    name: str
    learning_rate: float | schedules.Schedule
    params: FrozenParams
    weight_decay: float | None = None
    clipnorm: float | None = None
    clipvalue: float | None = None
    global_clipnorm: float | None = None
    exclude_from_weight_decay: tuple[str, ...] = ()

    def lr_at(self, iterations: int) -> np.float32:
        """The learning rate Keras uses for the step after ``iterations`` steps (float32)."""
        if isinstance(self.learning_rate, schedules.Schedule):
            return self.learning_rate(iterations)
        return np.float32(self.learning_rate)

    def decays(self, name: str) -> bool:
        """Whether weight decay applies to the parameter ``"<layer>/<weight>"``."""
        if not self.exclude_from_weight_decay:
            return True
        if len(name) > MAX_NAME:
            raise SpecError(f"parameter name {shown(name)} has {len(name)} characters; with "
                            f"exclude_from_weight_decay the limit is {MAX_NAME}", field="parameters")
        return not any(re.search(p, name) for p in self.exclude_from_weight_decay)

    def get_config(self) -> dict[str, Any]:
        """The tagged form; :func:`get` of it rebuilds an equal optimizer."""
        lr = self.learning_rate
        return {"name": self.name,
                "learning_rate": lr.get_config() if isinstance(lr, schedules.Schedule) else lr,
                **self.params, "weight_decay": self.weight_decay, "clipnorm": self.clipnorm,
                "clipvalue": self.clipvalue, "global_clipnorm": self.global_clipnorm,
                "exclude_from_weight_decay": list(self.exclude_from_weight_decay)}


def _optional(name: str, value: Any) -> float | None:
    return None if value is None else non_negative(name, value)


#: Bounds that keep ``re.search`` of a client's pattern in a client's name fast: no nested
#: repetition, alternation inside a repetition or backreference (no exponential
#: backtracking), at most 3 repetitions in a
#: pattern of at most 100 characters, matched against names of at most 200 characters
#: (so at worst ~200³ steps).
MAX_PATTERN, MAX_REPEATS, MAX_NAME = 100, 3, 200


def _repeats(tree: Any, inside: bool, where: str) -> int:
    count = 0
    for op, arg in tree:
        name = str(op)
        if name in ("GROUPREF", "GROUPREF_EXISTS"):
            raise SpecError(f"{where}: backreferences are not supported", field="exclude_from_weight_decay")
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            if inside:
                raise SpecError(f"{where}: nested repetition is not supported", field="exclude_from_weight_decay")
            count += 1 + _repeats(arg[2], True, where)
        elif name == "SUBPATTERN":
            count += _repeats(arg[3], inside, where)
        elif name == "BRANCH":
            if inside:
                raise SpecError(f"{where}: alternation inside a repetition is not supported",
                                field="exclude_from_weight_decay")
            count += sum(_repeats(b, inside, where) for b in arg[1])
        elif name in ("ASSERT", "ASSERT_NOT"):
            count += _repeats(arg[1], inside, where)
    return count


def _patterns(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise SpecError(f"exclude_from_weight_decay must be a list of strings, got {shown(value)}",
                        field="exclude_from_weight_decay")
    if len(value) > 64:
        raise SpecError(f"exclude_from_weight_decay holds {len(value)} patterns; the limit is 64",
                        field="exclude_from_weight_decay")
    for v in value:
        where = f"exclude_from_weight_decay pattern {shown(v)}"
        if len(v) > MAX_PATTERN:
            raise SpecError(f"{where} has {len(v)} characters; the limit is {MAX_PATTERN}",
                            field="exclude_from_weight_decay")
        try:
            tree = re_parser.parse(v)
        except re.error as exc:
            raise SpecError(f"{where} is not a regular expression ({exc})", field="exclude_from_weight_decay") from None
        if _repeats(tree, False, where) > MAX_REPEATS:
            raise SpecError(f"{where} has more than {MAX_REPEATS} repetitions", field="exclude_from_weight_decay")
    return tuple(value)


def _build(name: str, given: Mapping[str, Any], where: str) -> Optimizer:
    kind = KINDS[name]
    given = dict(given)
    for key in _IGNORED:
        given.pop(key, None)
    for key, accepted in _UNSUPPORTED.items():
        value = given.pop(key, accepted[0])
        if not any(value is a or (value == a and isinstance(value, bool) == isinstance(a, bool)
                                  and a is not None) for a in accepted):
            raise SpecError(f"{key}={shown(value)} is not supported (only {' or '.join(map(shown, accepted))})",
                            field=f"{where}{key}")
    common = {k: given.pop(k) for k in _COMMON if k in given}
    try:
        params = kind.params.validate(f"optimizer {name}", given)
    except SpecError as exc:
        raise SpecError(exc.message, field=f"{where}{exc.field}") from None
    lr_spec = common.get("learning_rate", kind.learning_rate)
    if isinstance(lr_spec, bool) or not isinstance(lr_spec, int | float):
        lr: float | schedules.Schedule = schedules.get(lr_spec, f"{where}learning_rate")
    else:
        lr = non_negative(f"{where}learning_rate", lr_spec)
    try:
        clips = {k: _optional(k, common.get(k)) for k in ("clipnorm", "clipvalue", "global_clipnorm")}
        wd = _optional("weight_decay", common.get("weight_decay", kind.weight_decay))
    except SpecError as exc:
        raise SpecError(exc.message, field=f"{where}{exc.field}") from None
    if sum(v is not None for v in clips.values()) > 1:
        raise SpecError("only one of clipnorm, clipvalue and global_clipnorm can be set (as in Keras)",
                        field=f"{where}clipnorm")
    return Optimizer(name, lr, params, wd, clips["clipnorm"], clips["clipvalue"], clips["global_clipnorm"],
                     _patterns(common.get("exclude_from_weight_decay")))


def get(spec: Any, field: str = "optimizer") -> Optimizer:
    """An optimizer from a Keras identifier (``"adam"``, any case), Keras's serialized
    ``{"class_name", "config"}`` or the tagged ``{"name": "adam", ...}`` form."""
    if isinstance(spec, Optimizer):
        return spec
    where = f"{field}."
    if isinstance(spec, str):
        if spec.lower() not in _BY_LOWER:
            raise SpecError(f"unknown optimizer {shown(spec)}; expected one of {', '.join(KINDS)}", field=field)
        return _build(_BY_LOWER[spec.lower()], {}, where)
    if not isinstance(spec, Mapping):
        raise SpecError(f"{field} must be a name or an object, got {type(spec).__name__}", field=field)
    if "class_name" in spec:
        extra = set(spec) - {"class_name", "config", "module", "registered_name"}
        cls = spec["class_name"]
        if extra or not isinstance(cls, str) or cls.lower() not in _BY_LOWER:
            raise SpecError(f"unknown optimizer class {shown(cls)}" if not extra else
                            f"unknown key {shown(sorted(extra)[0])} in a serialized optimizer",
                            field=f"{field}.class_name")
        config = spec.get("config", {})
        if not isinstance(config, Mapping):
            raise SpecError(f"{field}.config must be an object", field=f"{field}.config")
        return _build(_BY_LOWER[cls.lower()], config, f"{field}.config.")
    name = spec.get("name")
    if not isinstance(name, str) or name.lower() not in _BY_LOWER:
        raise SpecError(f"unknown optimizer {shown(name)}; expected one of {', '.join(KINDS)}",
                        field=f"{field}.name")
    return _build(_BY_LOWER[name.lower()], {k: v for k, v in spec.items() if k != "name"}, where)


# --------------------------------------------------------------------------- one step


def _caster(dtype: np.dtype[Any]) -> Any:
    return np.dtype(dtype).type


def clip(opt: Optimizer, grads: Mapping[str, FloatArray]) -> dict[str, FloatArray]:
    """Keras's gradient clipping (at most one kind is set)."""
    with np.errstate(divide="ignore"):
        if opt.clipnorm:
            out = {}
            for k, g in grads.items():
                c = _caster(g.dtype)
                norm = np.sqrt(np.sum(np.square(g)))
                out[k] = (g * c(opt.clipnorm)) / np.maximum(norm, c(opt.clipnorm))
            return out
        if opt.global_clipnorm:
            dtype = np.result_type(*grads.values())
            c = _caster(dtype)
            norm = np.sqrt(sum((np.sum(np.square(g)) for g in grads.values()), c(0)))
            scale = c(opt.global_clipnorm) * np.minimum(c(1) / norm, c(1) / c(opt.global_clipnorm))
            return {k: g * scale.astype(g.dtype) for k, g in grads.items()}
        if opt.clipvalue:
            return {k: np.clip(g, -g.dtype.type(opt.clipvalue), g.dtype.type(opt.clipvalue))
                    for k, g in grads.items()}
    return dict(grads)


def initial_state(opt: Optimizer, parameters: Mapping[str, FloatArray]) -> OptimizerState:
    kind = KINDS[opt.name]
    return OptimizerState(0, {k: {s: np.full_like(w, updates.keras_cast(w.dtype.type, v)) for s, v in kind.slots(opt.params).items()}
                              for k, w in parameters.items()})


def _checked_state(opt: Optimizer, parameters: Mapping[str, FloatArray],
                   state: OptimizerState | None) -> OptimizerState:
    if state is None:
        return initial_state(opt, parameters)
    if isinstance(state.iterations, bool) or not isinstance(state.iterations, int) or state.iterations < 0:
        raise SpecError(f"state.iterations must be an integer >= 0, got {shown(state.iterations)}",
                        field="state.iterations")
    names = KINDS[opt.name].slots(opt.params)
    slots: dict[str, dict[str, FloatArray]] = {}
    for k, w in parameters.items():
        given = state.slots.get(k)
        if given is None:
            raise SpecError(f"state.slots has no entry for parameter {k!r}", field=f"state.slots.{k}")
        slots[k] = {}
        for s in names:
            if s not in given:
                raise SpecError(f"state.slots.{k} has no slot {s!r} (a {opt.name} optimizer keeps "
                                f"{', '.join(names)})", field=f"state.slots.{k}.{s}")
            arr = np.asarray(given[s])
            if arr.shape != w.shape:
                raise ShapeError(f"state.slots.{k}.{s} has shape {list(arr.shape)} but the parameter has "
                                 f"shape {list(w.shape)}", field=f"state.slots.{k}.{s}")
            slots[k][s] = arr.astype(w.dtype)
    return OptimizerState(state.iterations, slots)


def step(
    opt: Optimizer,
    parameters: Mapping[str, FloatArray],
    gradients: Mapping[str, FloatArray],
    state: OptimizerState | None,
) -> tuple[dict[str, FloatArray], OptimizerState]:
    """One optimizer step (``optimizer.apply_gradients``): new parameters and new state.

    ``parameters`` and ``gradients`` have the same keys and shapes; each parameter keeps its
    dtype.  The inputs are not modified.
    """
    if set(parameters) != set(gradients):
        missing = sorted(set(parameters) ^ set(gradients))
        raise SpecError(f"parameters and gradients must name the same tensors; {missing[0]!r} is in "
                        "only one of them", field=f"gradients.{missing[0]}")
    for k, w in parameters.items():
        if gradients[k].shape != w.shape:
            raise ShapeError(f"gradients.{k} has shape {list(gradients[k].shape)} but the parameter has "
                             f"shape {list(w.shape)}", field=f"gradients.{k}")
    current = _checked_state(opt, parameters, state)
    t = current.iterations
    lr32 = opt.lr_at(t)
    check_finite("learning_rate", lr32)
    kind = KINDS[opt.name]
    grads = clip(opt, {k: np.asarray(gradients[k], dtype=w.dtype) for k, w in parameters.items()})
    params = dict(opt.params)
    new_params: dict[str, FloatArray] = {}
    new_slots: dict[str, dict[str, FloatArray]] = {}
    for k, w0 in parameters.items():
        c = _caster(w0.dtype)
        lr = c(lr32)
        w = np.array(w0, copy=True)
        if opt.weight_decay is not None and opt.decays(k):
            w = w - (w * updates.keras_cast(c, opt.weight_decay)) * lr
        if opt.name == "nadam":
            params["_u_product"] = updates.nadam_u_product(t + 1, opt.params["beta_1"], c)
        s = {name: np.array(v, copy=True) for name, v in current.slots[k].items()}
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            kind.update(grads[k], w, s, lr, t, params, c)
        check_finite(f"parameters.{k}", w, dtype=w.dtype)
        for name, v in s.items():
            check_finite(f"state.slots.{k}.{name}", v, dtype=w.dtype)
        new_params[k], new_slots[k] = w, s
    return new_params, OptimizerState(t + 1, new_slots)


def describe() -> list[dict[str, Any]]:
    return [{"name": k.name, "class_name": k.class_name,
             "parameters": {"learning_rate": k.learning_rate, **k.params.defaults,
                            "weight_decay": k.weight_decay},
             "slots": list(k.slots(k.params.defaults)), "formula": k.formula} for k in KINDS.values()]
