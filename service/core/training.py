"""Training runs over a Dense stack or a Keras model: Keras's ``fit`` loop with every term tracked.

One epoch splits the ``N`` samples into ``ceil(N / batch_size)`` minibatches, in order
(``shuffle=False``, what Keras's ``fit(shuffle=False)`` does) or in the order of the
service's own permutation ``np.random.default_rng(seed).permutation(N)``, drawn anew for
each epoch (``shuffle=True``; not Keras's random stream).  One step on a batch::

    terms, grads, updates = objective(x_batch, t_batch, trainable, fixed)   # every term, gradient
    record(step)                                             # before the update, as fit logs it
    trainable, state = optimizers.step(opt, trainable, grads[·]["total"], state)
    fixed.update(updates)                                    # BatchNormalization's moving statistics

The objective (:mod:`service.core.training_steps`) is a Dense stack (``layers``, through
:func:`service.core.network.network`) or any Keras model (``model`` + ``weights``, through
:func:`service.core.model.evaluate` in training mode).  Only trainable weights reach the
optimizer, the history and ``l1_proximal``; the final ``weights`` hold every weight.

History (SPEC §6.1): each step's ``total`` is the loss Keras computes on that batch before
its update; an epoch's loss (``epoch_losses``) is the batch-size-weighted mean of its
steps, what ``History.history["loss"]`` reports.  Every other term is averaged the same way.

Recorded per step (every ``record_every`` steps, and the last): the learning rate, every
loss term, the L2 norm ``‖∂term/∂p‖`` of every term's gradient for every parameter, and
for every parameter ``l1 = Σ|w|``, ``l2 = √Σw²`` (the Euclidean norm, not Keras's L2
penalty), ``max_abs`` and, per tolerance τ, the fraction of weights with ``|w| ≤ τ``.

``l1_proximal`` (not Keras): for a weight whose regularizer has an L1 part ``λ1·Σ|w|``,
the subgradient ``λ1·sign(w)`` is left out of the gradient the optimizer sees, and after
the step ``w ← sign(w)·max(|w| − lr·λ1, 0)`` (soft-thresholding, the proximal step of
``lr·λ1·Σ|w|``).  With plain SGD that is proximal gradient descent and gives exact zeros;
with other optimizers it is a heuristic.

    >>> x = np.array([[1.0], [2.0]]); t = np.array([[2.0], [4.0]])
    >>> cfg = TrainConfig(x, t, [LayerSpec(kernel=np.array([[0.0]]), bias=np.array([0.0]))],
    ...                   optimizer=optimizers.get({"name": "sgd", "learning_rate": 0.1}),
    ...                   epochs=1000, batch_size=2)
    >>> r = train(cfg)
    >>> round(float(r.weights["dense/kernel"][0, 0]), 2), r.steps
    (2.0, 1000)
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.core import losses as loss_registry
from service.core import optimizers
from service.core.errors import CoreError, NonFiniteError, ShapeError, SpecError
from service.core.model import Model, cost
from service.core.network import LayerSpec
from service.core.numeric import FloatArray, factor_in, result_dtype
from service.core.optimizers import Optimizer, OptimizerState
from service.core.training_steps import (
    Batch,
    DenseStack,
    KerasModel,
    batch_shapes,
    model_terms,
    rows_of,
)

#: Work units of one step that do not grow with the shapes (Python and NumPy call overhead).
STEP_OVERHEAD = 20_000


class TooExpensive(CoreError):
    """The run costs more than the configured budget (or ran past its wall-time limit)."""

    code = "too_expensive"


@dataclass(frozen=True)
class TrainConfig:
    """A run over ``layers`` (a Dense stack) or, when ``model`` is given, over that Keras model
    with ``weights`` (``inputs`` then one array, or one per input layer by name)."""

    inputs: Batch
    targets: np.ndarray
    layers: Sequence[LayerSpec]
    loss: Any = "mean_squared_error"
    optimizer: Optimizer = field(default_factory=lambda: optimizers.get("rmsprop"))
    epochs: int = 1
    batch_size: int = 32
    shuffle: bool = False
    seed: int = 0
    activity_normalization: str = "batch"
    l1_proximal: bool = False
    record_every: int = 1
    sparsity_tolerances: Sequence[float] = (0.0, 0.001)
    state: OptimizerState | None = None
    model: Model | None = None
    weights: Mapping[str, np.ndarray] | None = None


@dataclass(frozen=True)
class Progress:
    step: int
    steps: int
    epoch: int
    losses: dict[str, float]


@dataclass(frozen=True)
class TrainResult:
    steps: int
    epochs: int
    history: dict[str, Any]
    epoch_losses: dict[str, list[float]]
    weights: dict[str, FloatArray]
    optimizer_state: OptimizerState


def steps_per_epoch(samples: int, batch_size: int) -> int:
    return max(1, math.ceil(samples / batch_size))


def model_inputs(cfg: TrainConfig) -> dict[str, np.ndarray]:
    """The model's inputs by input layer name (a lone array feeds a one-input model)."""
    assert cfg.model is not None
    names = cfg.model.inputs
    if isinstance(cfg.inputs, Mapping):
        missing = [n for n in names if n not in cfg.inputs]
        extra = [n for n in cfg.inputs if n not in names]
        if missing or extra:
            raise SpecError(f"inputs must name the model's input layers {names}; missing {missing}, unknown {extra}",
                            field="inputs")
        return {n: cfg.inputs[n] for n in names}
    if len(names) != 1:
        raise SpecError(f"the model has {len(names)} inputs {names}: send inputs as an object keyed by input "
                        "layer name", field="inputs")
    return {names[0]: cfg.inputs}


def samples(cfg: TrainConfig) -> int:
    return rows_of(cfg.inputs)


def check(cfg: TrainConfig) -> None:
    """Refuse settings and shapes a run cannot use (before pricing it)."""
    for name, value, low in (("epochs", cfg.epochs, 1), ("batch_size", cfg.batch_size, 1),
                             ("record.every", cfg.record_every, 1), ("seed", cfg.seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise SpecError(f"{name} must be an integer >= {low}, got {value!r}", field=name)
    if isinstance(cfg.inputs, Mapping) and cfg.model is None:
        raise SpecError("inputs by name are for a `model`; a Dense stack takes one array", field="inputs")
    arrays: dict[str, np.ndarray] = (model_inputs(cfg) if cfg.model is not None or not isinstance(cfg.inputs, np.ndarray)
                                     else {"inputs": cfg.inputs})
    for key, x in arrays.items():
        where = "inputs" if cfg.model is None or not isinstance(cfg.inputs, Mapping) else f"inputs.{key}"
        if x.ndim < (2 if cfg.model is None else 1) or x.shape[0] == 0:
            raise ShapeError(f"{where} must have a batch axis with at least one sample, got shape "
                             f"{list(x.shape)}", field=where)
    n = samples(cfg)
    for key, x in arrays.items():
        if x.shape[0] != n:
            raise ShapeError(f"inputs.{key} has {x.shape[0]} samples, the first input {n}", field=f"inputs.{key}")
    if cfg.targets.ndim == 0 or cfg.targets.shape[0] != n:
        raise ShapeError(f"targets must have as many samples as inputs ({n}), got "
                         f"shape {list(cfg.targets.shape)}", field="targets")
    for tol in cfg.sparsity_tolerances:
        if not math.isfinite(tol) or tol < 0:
            raise SpecError(f"sparsity tolerances must be finite and >= 0, got {tol!r}",
                            field="record.sparsity_tolerances")


def total_steps(cfg: TrainConfig) -> int:
    return cfg.epochs * steps_per_epoch(samples(cfg), cfg.batch_size)


def price(cfg: TrainConfig) -> int:
    """Work units of the run: steps × (multiply-adds of a forward and backward pass per
    sample and term + the optimizer's per-parameter work + a fixed overhead).  For a model
    the forward pass of one batch is :func:`service.core.model.cost`'s ``flops``."""
    steps = total_steps(cfg)
    if cfg.model is not None:
        shapes = batch_shapes(model_inputs(cfg), cfg.batch_size)
        activity, _, _ = model_terms(cfg.model, shapes)
        c = cost(cfg.model, shapes)
        return steps * (3 * c.flops * (2 + activity) + 20 * c.parameters + STEP_OVERHEAD)
    assert isinstance(cfg.inputs, np.ndarray)
    rows = min(cfg.batch_size, cfg.inputs.shape[0]) * math.prod(cfg.inputs.shape[1:-1])
    macs = sum(math.prod(s.kernel.shape) for s in cfg.layers)
    terms = 2 + sum(s.activity_regularizer is not None for s in cfg.layers)
    params = sum(s.kernel.size + (0 if s.bias is None else s.bias.size) for s in cfg.layers)
    return steps * (3 * rows * macs * terms + 20 * params + STEP_OVERHEAD)


def history_size(cfg: TrainConfig) -> int:
    """How many numbers ``history`` will hold: per recorded step, the step, epoch and rate,
    every loss term, every (parameter, term) gradient norm and every weight statistic (for a
    model, a bound: every activity term is counted as reaching every trainable weight)."""
    steps = total_steps(cfg)
    recorded = -(-steps // cfg.record_every) + ((steps - 1) % cfg.record_every != 0)  # + the last
    stats = 3 + len(cfg.sparsity_tolerances)
    if cfg.model is not None:
        activity, own, terms = model_terms(cfg.model, batch_shapes(model_inputs(cfg), cfg.batch_size))
        norms = sum(2 + activity + k for k in own.values())
        return recorded * (3 + terms + norms + len(own) * stats)
    activity_flags = [s.activity_regularizer is not None for s in cfg.layers]
    terms = 2 + sum(activity_flags)
    norms = 0
    for i, s in enumerate(cfg.layers):
        terms += (s.kernel_regularizer is not None) + (s.bias_regularizer is not None)
        reaching = 2 + sum(activity_flags[i:])  # data_loss, total, the activity terms of layers >= i
        norms += reaching + (s.kernel_regularizer is not None)
        if s.bias is not None:
            norms += reaching + (s.bias_regularizer is not None)
    params = sum(1 + (s.bias is not None) for s in cfg.layers)
    return recorded * (3 + terms + norms + params * stats)


def _tolerance_key(tol: float) -> str:
    return format(tol, "g")


def _norm(g: np.ndarray) -> float:
    g64 = np.asarray(g, dtype=np.float64)
    return float(np.sqrt(np.dot(g64.reshape(-1), g64.reshape(-1))))


class _Recorder:
    def __init__(self, tolerances: Sequence[float]) -> None:
        self.tolerances = list(tolerances)
        self.h: dict[str, Any] = {"step": [], "epoch": [], "learning_rate": [], "losses": {},
                                  "gradient_norms": {}, "weights": {}}

    def add(self, step: int, epoch: int, lr: float, losses: Mapping[str, Any],
            grads: Mapping[str, Mapping[str, np.ndarray]], weights: Mapping[str, np.ndarray]) -> None:
        h = self.h
        h["step"].append(step)
        h["epoch"].append(epoch)
        h["learning_rate"].append(lr)
        for term, v in losses.items():
            h["losses"].setdefault(term, []).append(float(v))
        for p, terms in grads.items():
            for term, g in terms.items():
                h["gradient_norms"].setdefault(p, {}).setdefault(term, []).append(_norm(g))
        for p, w in weights.items():
            a = np.abs(np.asarray(w, dtype=np.float64))
            s = h["weights"].setdefault(p, {"l1": [], "l2": [], "max_abs": [],
                                            "sparsity": {_tolerance_key(t): [] for t in self.tolerances}})
            s["l1"].append(float(a.sum()))
            s["l2"].append(float(np.sqrt(np.dot(a.reshape(-1), a.reshape(-1)))))
            s["max_abs"].append(float(a.max()) if a.size else 0.0)
            for t in self.tolerances:
                s["sparsity"][_tolerance_key(t)].append(float(np.mean(a <= t)) if a.size else 0.0)


def _diverged(exc: NonFiniteError, step: int, epoch: int) -> NonFiniteError:
    return NonFiniteError(f"the run diverged at step {step} (epoch {epoch}): {exc.message}; a smaller "
                          "learning rate (or clipnorm) keeps it finite", field=exc.field)


def objective(cfg: TrainConfig, dtype: np.dtype[Any]) -> DenseStack | KerasModel:
    """The strategy one step evaluates: the Dense stack or the Keras model of the run."""
    try:
        loss = loss_registry.get(cfg.loss)
    except SpecError as exc:
        raise SpecError(f"loss: {exc.message}", field="loss") from None
    if cfg.model is None:
        return DenseStack(cfg.layers, loss, cfg.activity_normalization, dtype)
    if cfg.weights is None:
        raise SpecError("`model` needs `weights` ('<layer>/<weight>' → tensor)", field="weights")
    first = {k: x[: min(cfg.batch_size, x.shape[0])] for k, x in model_inputs(cfg).items()}
    return KerasModel(cfg.model, cfg.weights, first, loss, cfg.activity_normalization, dtype, cfg.seed)


def _dtype(cfg: TrainConfig) -> np.dtype[Any]:
    if cfg.model is not None:
        floats = [x for x in model_inputs(cfg).values() if x.dtype.kind == "f"]
        dtype = result_dtype(cfg.targets, *floats, *(cfg.weights or {}).values())
    else:
        dtype = result_dtype(cfg.inputs if isinstance(cfg.inputs, np.ndarray) else None, cfg.targets,
                             *(a for s in cfg.layers for a in (s.kernel, s.bias)))
    if dtype == np.float16:
        raise SpecError("training runs in FP32 or FP64; send the tensors as FP32 (or FP64)", field="inputs")
    return dtype


def _batch(inputs: Batch, idx: Any, dtype: np.dtype[Any]) -> Batch:
    if isinstance(inputs, np.ndarray):
        return np.asarray(inputs[idx], dtype)
    return {k: np.asarray(x[idx], dtype) for k, x in inputs.items()}


def run(cfg: TrainConfig, *, deadline: float | None = None) -> Generator[Progress, None, TrainResult]:
    """The training loop: yields a :class:`Progress` after every step, returns the result.

    ``deadline`` (a ``time.monotonic()`` value) stops the run with :class:`TooExpensive`.
    """
    check(cfg)
    dtype = _dtype(cfg)
    obj = objective(cfg, dtype)
    weights, fixed = dict(obj.trainable), dict(obj.fixed)
    l1 = {p: lam for p, lam in obj.l1.items() if lam} if cfg.l1_proximal else {}
    x = model_inputs(cfg) if cfg.model is not None else cfg.inputs
    t = np.asarray(cfg.targets, dtype)
    n = samples(cfg)
    per_epoch = steps_per_epoch(n, cfg.batch_size)
    steps = cfg.epochs * per_epoch
    opt, state = cfg.optimizer, cfg.state
    rng = np.random.default_rng(cfg.seed)
    rec = _Recorder(cfg.sparsity_tolerances)
    epoch_losses: dict[str, list[float]] = {}
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        order = rng.permutation(n) if cfg.shuffle else None
        sums: dict[str, float] = {}
        for b in range(per_epoch):
            if deadline is not None and time.monotonic() > deadline:
                raise TooExpensive(f"the run passed its wall-time limit after {step} of {steps} steps; "
                                   "train fewer steps or on smaller batches")
            rows = slice(b * cfg.batch_size, min(n, (b + 1) * cfg.batch_size))
            idx = order[rows] if order is not None else rows
            tb = t[idx]
            step += 1
            try:
                result = obj(_batch(x, idx, dtype), tb, weights, fixed, step)
            except NonFiniteError as exc:
                raise _diverged(exc, step, epoch) from None
            state_iter = 0 if state is None else state.iterations
            lr = opt.lr_at(state_iter)
            losses = result.losses
            size = tb.shape[0]
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v * size
            if (step - 1) % cfg.record_every == 0 or step == steps:
                rec.add(step, epoch, float(lr), losses, result.gradients, weights)
            grads = {p: result.gradients[p]["total"] for p in weights}
            for p, lam in l1.items():
                c = factor_in(lam, weights[p].dtype)
                grads[p] = grads[p] - c * np.sign(weights[p])
            try:
                weights, state = optimizers.step(opt, weights, grads, state)
            except NonFiniteError as exc:
                raise _diverged(exc, step, epoch) from None
            for p, lam in l1.items():
                thr = weights[p].dtype.type(lr) * factor_in(lam, weights[p].dtype)
                weights[p] = np.sign(weights[p]) * np.maximum(np.abs(weights[p]) - thr, 0)
            fixed.update(result.updates)
            yield Progress(step, steps, epoch, losses)
        for k, v in sums.items():
            epoch_losses.setdefault(k, []).append(v / n)
    assert state is not None
    return TrainResult(steps, cfg.epochs, rec.h, epoch_losses, obj.weights(weights, fixed), state)


def train(cfg: TrainConfig, *, deadline: float | None = None) -> TrainResult:
    """Run :func:`run` to the end."""
    loop = run(cfg, deadline=deadline)
    while True:
        try:
            next(loop)
        except StopIteration as done:
            result: TrainResult = done.value
            return result
