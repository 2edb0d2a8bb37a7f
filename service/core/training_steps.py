"""What one training step evaluates: the strategies :func:`service.core.training.run` loops over.

A strategy holds what a run trains and answers, for the rows of one batch and the current
weights, ``(losses, gradients, updates)``::

    losses[term]                  every labelled term on the batch (data_loss, …, total)
    gradients[weight][term]       ∂term/∂weight for every trainable weight
    updates[weight]               new values of non-trainable weights (BatchNormalization's
                                  moving statistics in training mode; empty for Dense stacks)

* :class:`DenseStack`: a chain of Dense layers through :func:`service.core.network.network`
  (a Sequential model through :func:`service.core.model.evaluate`; weights ``<layer>/kernel``,
  ``<layer>/bias``).
* :class:`KerasModel`: any :class:`service.core.model.Model` through
  :func:`service.core.model.evaluate` with ``training=True``, as Keras ``fit`` calls the
  model: BatchNormalization normalizes with the batch statistics and its moving statistics
  move by ``m ← m·momentum + batch_stat·(1 − momentum)`` each step; only trainable weights
  get gradients (a layer with ``trainable: false`` keeps its weights and, as in Keras, is not
  regularized).  Dropout draws its mask with the service's own generator (not Keras's random
  stream): at step ``k`` a Dropout layer with config seed ``s`` (0 when none) uses
  ``numpy.random.default_rng(SeedSequence([s, run_seed, k]))``, so a run is deterministic and
  each step draws a new mask.

``l1`` maps each trainable weight to the L1 factor of its regularizer (for ``l1_proximal``).

    >>> import numpy as np
    >>> from service.core.network import LayerSpec
    >>> s = DenseStack([LayerSpec(kernel=np.array([[2.0]]), bias=None)], "mse", "batch", np.dtype(np.float64))
    >>> step = s(np.array([[1.0]]), np.array([[0.0]]), s.trainable, s.fixed)
    >>> float(step.losses["total"]), float(step.gradients["dense/kernel"]["total"][0, 0])
    (4.0, 4.0)
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from service.core import activations, regularizers
from service.core.errors import SpecError
from service.core.layers.reshaping import Dropout
from service.core.losses import Loss
from service.core.model import Model, check_weights, evaluate, shapes_of
from service.core.network import LayerSpec, layer_names, network
from service.core.numeric import FloatArray

Batch = np.ndarray | Mapping[str, np.ndarray]


@dataclass(frozen=True)
class StepResult:
    losses: dict[str, float]
    gradients: dict[str, dict[str, np.ndarray]]
    updates: dict[str, np.ndarray]


def l1_factor(reg: Any) -> float:
    """The L1 part ``λ1`` of a (parsed) regularizer, 0 when it has none."""
    return float(reg.l1) if isinstance(reg, regularizers.L1 | regularizers.L1L2) else 0.0


def _parsed(i: int, spec: LayerSpec) -> LayerSpec:
    """The layer with its activation and regularizers parsed once (not at every step)."""
    parsed: dict[str, Any] = {}
    for arg in ("kernel_regularizer", "bias_regularizer", "activity_regularizer", "activation"):
        value = getattr(spec, arg)
        if value is None:
            continue
        try:
            parsed[arg] = activations.get(value) if arg == "activation" else regularizers.get(value)
        except SpecError as exc:
            raise SpecError(f"layers.{i}.{arg}: {exc.message}", field=f"layers.{i}.{arg}") from None
    return replace(spec, **parsed)


class DenseStack:
    """A Dense stack (``/v1/network``'s layers): every weight trains, nothing else updates."""

    def __init__(self, layers: Sequence[LayerSpec], loss: Loss | Any, normalization: str, dtype: np.dtype[Any]) -> None:
        self.names = layer_names(layers)
        self.layers = [_parsed(i, replace(s, kernel=np.asarray(s.kernel, dtype), bias=None if s.bias is None else
                                          np.asarray(s.bias, dtype))) for i, s in enumerate(layers)]
        self.loss, self.normalization = loss, normalization
        self.trainable: dict[str, FloatArray] = {}
        self.fixed: dict[str, FloatArray] = {}
        self.l1: dict[str, float] = {}
        for name, s in zip(self.names, self.layers, strict=True):
            self.trainable[f"{name}/kernel"] = s.kernel
            self.l1[f"{name}/kernel"] = l1_factor(s.kernel_regularizer)
            if s.bias is not None:
                self.trainable[f"{name}/bias"] = s.bias
                self.l1[f"{name}/bias"] = l1_factor(s.bias_regularizer)

    def __call__(self, x: Batch, t: np.ndarray, trainable: Mapping[str, FloatArray],
                 fixed: Mapping[str, FloatArray], step: int = 1) -> StepResult:
        assert isinstance(x, np.ndarray)
        current = [replace(s, kernel=trainable[f"{nm}/kernel"], bias=None if s.bias is None else trainable[f"{nm}/bias"])
                   for nm, s in zip(self.names, self.layers, strict=True)]
        result = network(x, t, current, self.loss, self.normalization)
        assert result.gradients is not None
        return StepResult({k: float(v) for k, v in result.losses.items()}, result.gradients, {})

    def weights(self, trainable: Mapping[str, FloatArray], fixed: Mapping[str, FloatArray]) -> dict[str, FloatArray]:
        return dict(trainable)


class KerasModel:
    """Any Keras model of ``/v1/model``, trained in training mode (see the module doc)."""

    def __init__(self, model: Model, weights: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray],
                 loss: Loss | Any, normalization: str, dtype: np.dtype[Any], seed: int = 0) -> None:
        model = copy.deepcopy(model)  # its Dropout layers are re-seeded at each step
        self.model, self.loss, self.normalization, self.seed = model, loss, normalization, seed
        cast = {k: np.asarray(v, dtype) for k, v in weights.items()}
        check_weights(model, cast, shapes_of(model, {n: x.shape for n, x in inputs.items()}))
        self.order = list(cast)
        self.trainable: dict[str, FloatArray] = {}
        self.fixed: dict[str, FloatArray] = {}
        self.l1: dict[str, float] = {}
        self.dropouts: list[Dropout] = []
        for name, node in model.nodes.items():
            layer = node.layer
            if layer is None:
                continue
            if isinstance(layer, Dropout):
                self.dropouts.append(layer)
            for w in layer.specs:
                path = f"{name}/{w.name}"
                (self.trainable if w.trainable else self.fixed)[path] = cast[path]
            for arg, wname in layer.regularized_weights().items():
                self.l1[f"{name}/{wname}"] = l1_factor(layer.regularizers[arg])
        self.dropout_seeds = [d.seed for d in self.dropouts]

    def __call__(self, x: Batch, t: np.ndarray, trainable: Mapping[str, FloatArray],
                 fixed: Mapping[str, FloatArray], step: int = 1) -> StepResult:
        for layer, base in zip(self.dropouts, self.dropout_seeds, strict=True):
            layer.seed = int(np.random.SeedSequence([base, self.seed, step]).generate_state(1)[0])
        result = evaluate(self.model, {**trainable, **fixed}, x, t, self.loss, training=True,
                          activity_normalization=self.normalization, diagnose=False)
        assert result.gradients is not None
        return StepResult({k: float(v) for k, v in result.losses.items()}, result.gradients,
                          {k: v for k, v in result.updates.items() if k in fixed})

    def weights(self, trainable: Mapping[str, FloatArray], fixed: Mapping[str, FloatArray]) -> dict[str, FloatArray]:
        """Every weight (trainable, frozen, moving statistics) in the order they were sent."""
        both = {**trainable, **fixed}
        return {k: both[k] for k in self.order}


def model_terms(model: Model, input_shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, dict[str, int], int]:
    """Before a run: the number of activity terms, each trainable weight's number of own
    regularization terms, and the number of loss terms (data_loss, total, every regularizer)."""
    shapes = shapes_of(model, input_shapes)
    activity = 0
    own: dict[str, int] = {}
    for name, node in model.nodes.items():
        layer = node.layer
        if layer is None:
            continue
        activity += "activity_regularizer" in layer.regularizers
        specs = layer.weight_specs([shapes[i] for i in node.inputs])
        trainable = {w.name for w in specs if w.trainable and layer.trainable}
        for w in sorted(trainable):
            own[f"{name}/{w}"] = sum(1 for arg, wn in layer.REGULARIZED.items() if wn == w and arg in layer.regularizers)
    return activity, own, 2 + activity + sum(own.values())


def rows_of(inputs: Batch) -> int:
    """The number of samples (the batch axis of the first input; every input shares it)."""
    first = inputs if isinstance(inputs, np.ndarray) else next(iter(inputs.values()))
    return int(first.shape[0])


def batch_shapes(inputs: Mapping[str, np.ndarray], batch: int) -> dict[str, tuple[int, ...]]:
    return {k: (min(batch, v.shape[0]), *v.shape[1:]) for k, v in inputs.items()}
