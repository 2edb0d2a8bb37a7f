"""The one layer interface every Keras layer of the service implements.

A layer is made from its Keras config (the ``config`` of ``layer.get_config()``), then
``build(input_shapes, weights)`` checks and stores its weights, after which::

    y, cache = layer.forward(xs, training)      # xs: one array per input
    g_xs, g_w = layer.backward(g_y, cache)       # g_y = ∂L/∂y → (∂L/∂x per input, {weight: ∂L/∂w})

Shapes include the batch axis.  Each layer declares, in Keras's order (the order of
``layer.weights`` and of ``vars/<i>`` in a ``.keras`` file), its weights with their
shapes and whether they are trainable, and the regularizer arguments Keras gives it
(``REGULARIZED``: argument name → weight name).  Every layer also takes Keras's
``activity_regularizer``, applied by the model to the layer's output.

    >>> from service.core.layers import create
    >>> layer = create("Dense", "dense", {"units": 2, "use_bias": False})
    >>> [(w.name, w.shape) for w in layer.weight_specs([(None, 3)])]
    [('kernel', (3, 2))]
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from service.core import activations, regularizers
from service.core.activations import Activation
from service.core.errors import ShapeError, SpecError, shown
from service.core.regularizers import Regularizer

Shape = tuple[int | None, ...]
Cache = Any

#: Config keys every layer may carry that do not change what it computes.
IGNORED = {
    "name", "trainable", "dtype", "dtype_policy", "autocast", "batch_input_shape",
    "batch_shape", "input_shape", "batch_size", "input_dim_unused", "lora_rank", "lora_alpha",
    "quantization_config", "seed", "sparse", "input_length", "synchronized",
    "renorm", "renorm_clipping", "renorm_momentum", "fused", "virtual_batch_size", "adjustment",
    "noise_shape_unused", "build_config",
}
IGNORED_SUFFIXES = ("_initializer", "_constraint")


@dataclass(frozen=True)
class Weight:
    """A weight a layer declares: its name, shape, whether it trains, and what regularizes it."""

    name: str
    shape: tuple[int, ...]
    trainable: bool = True


class Config:
    """A layer's Keras config, read key by key; what is left unread must be harmless."""

    def __init__(self, owner: str, config: Mapping[str, Any]) -> None:
        if not isinstance(config, Mapping):
            raise SpecError(f"{owner}: config must be an object, got {shown(config)}", field="config")
        self.owner = owner
        self.items = dict(config)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        value = self.items.get(key, default)
        return default if value is None and default is not None else value

    def int_(self, key: str, default: Any = None, minimum: int = 0) -> int:
        v = self.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise SpecError(f"{self.owner}: {key} must be an integer >= {minimum}, got {shown(v)}", field=key)
        return v

    def float_(self, key: str, default: float | None, minimum: float | None = None, below: float | None = None) -> float:
        v = self.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v) or (
            minimum is not None and v < minimum) or (below is not None and v >= below):
            bound = f" in [{minimum}, {below})" if below is not None else (f" >= {minimum}" if minimum is not None else "")
            raise SpecError(f"{self.owner}: {key} must be a finite number{bound}, got {shown(v)}", field=key)
        return float(v)

    def bool_(self, key: str, default: bool) -> bool:
        v = self.get(key, default)
        if not isinstance(v, bool):
            raise SpecError(f"{self.owner}: {key} must be true or false, got {shown(v)}", field=key)
        return v

    def tuple_(self, key: str, default: Any, rank: int, minimum: int = 1) -> tuple[int, ...]:
        v = self.get(key, default)
        if isinstance(v, int) and not isinstance(v, bool):
            v = [v] * rank
        if not isinstance(v, list | tuple) or len(v) != rank or any(
            isinstance(i, bool) or not isinstance(i, int) or i < minimum for i in v
        ):
            raise SpecError(
                f"{self.owner}: {key} must be an integer >= {minimum} or {rank} of them, got {shown(v)}",
                field=key,
            )
        return tuple(v)

    def choice(self, key: str, default: Any, allowed: Sequence[Any]) -> Any:
        v = self.get(key, default)
        if isinstance(v, str):
            v = v.lower()
        if v not in allowed:
            raise SpecError(
                f"{self.owner}: {key}={shown(v)} is not supported; supported: "
                f"{', '.join(repr(a) for a in allowed)}",
                field=key,
            )
        return v

    def regularizer(self, key: str) -> Regularizer | None:
        spec = self.get(key)
        if spec is None:
            return None
        if isinstance(spec, Mapping) and "shared_object_id" in spec:  # .keras files mark shared objects
            spec = {k: v for k, v in spec.items() if k != "shared_object_id"}
        try:
            return regularizers.get(spec)
        except SpecError as exc:
            raise SpecError(f"{self.owner}: {key}: {exc.message}", field=key) from None

    def activation(self, key: str = "activation", default: Any = None) -> Activation:
        spec = self.get(key, default)
        if isinstance(spec, Mapping) and "class_name" in spec:  # Keras 3 serialized function
            inner = spec.get("config")
            spec = inner if isinstance(inner, str) else spec.get("class_name")
        try:
            return activations.get(spec)
        except SpecError as exc:
            raise SpecError(f"{self.owner}: {key}: {exc.message}", field=key) from None

    def finish(self) -> None:
        """Refuse any key that was not read and could change the result."""
        for key, value in self.items.items():
            if key in self.read or key in IGNORED or key.endswith(IGNORED_SUFFIXES):
                continue
            if key == "data_format" and value in (None, "channels_last"):
                continue
            if key == "data_format":
                raise SpecError(
                    f"{self.owner}: data_format={shown(value)} is not supported; only 'channels_last'",
                    field=key,
                )
            if key == "groups" and value == 1:
                continue
            raise SpecError(f"{self.owner}: the argument {key}={shown(value)} is not supported", field=key)


class Layer:
    """Base class; subclasses set ``CLASS_NAME``, ``REGULARIZED`` and implement the methods."""

    CLASS_NAME: ClassVar[str] = ""
    #: Keras regularizer argument -> the weight it regularizes (``activity_regularizer`` is
    #: every layer's and applies to the output).
    REGULARIZED: ClassVar[dict[str, str]] = {}
    #: Number of inputs (``None``: two or more, a merge layer).
    INPUTS: ClassVar[int | None] = 1

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        self.name = name
        self.where = f"layer {name!r} ({self.CLASS_NAME})"
        cfg = Config(self.where, config)
        #: ``trainable: false`` (a frozen layer): no weight is trainable, so none is regularized
        #: and none gets a gradient (Keras regularizes ``trainable_weights`` only).
        self.trainable = cfg.bool_("trainable", True)
        self.regularizers: dict[str, Regularizer] = {}
        for arg in ("activity_regularizer", *self.REGULARIZED):
            reg = cfg.regularizer(arg)
            if reg is not None:
                self.regularizers[arg] = reg
        self.configure(cfg)
        cfg.finish()
        self.weights: dict[str, np.ndarray] = {}

    # ---- what subclasses provide
    def configure(self, cfg: Config) -> None:
        """Read the layer's own arguments from its config."""

    def weight_specs(self, input_shapes: Sequence[Shape]) -> list[Weight]:
        """The layer's weights, in Keras's order, for inputs of these shapes."""
        return []

    def output_shape(self, input_shapes: Sequence[Shape]) -> Shape:
        return input_shapes[0]

    def flops(self, input_shapes: Sequence[Shape]) -> int:
        """About how many multiply-adds one forward pass costs (the backward costs ~2x)."""
        return _size(self.output_shape(input_shapes))

    def workspace(self, input_shapes: Sequence[Shape]) -> int:
        """Elements of scratch memory one forward pass needs beyond its output."""
        return 0

    def forward(self, xs: Sequence[np.ndarray], training: bool) -> tuple[np.ndarray, Cache]:
        raise NotImplementedError

    def updates(self, cache: Cache) -> dict[str, np.ndarray]:
        """Non-trainable weights a training-mode pass updates (BatchNormalization's statistics)."""
        return {}

    def backward(self, g: np.ndarray, cache: Cache) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        raise NotImplementedError

    # ---- shared
    def regularized_weights(self) -> dict[str, str]:
        """Keras argument -> weight name, for the arguments given whose weight exists."""
        names = {w.name for w in self._specs if w.trainable}
        return {arg: w for arg, w in self.REGULARIZED.items() if arg in self.regularizers and w in names}

    def passes_through(self, cache: Cache) -> bool:
        """Whether this call returned its input unchanged (the same tensor in Keras, so a
        sigmoid/softmax head below keeps its logits: Dropout at inference)."""
        return False

    def head(self, cache: Cache) -> tuple[Activation, np.ndarray] | None:
        """``(activation, its input)`` when the output is an activation's (for the logits rule)."""
        return None

    def backward_from_logits(self, g_z: np.ndarray, cache: Cache) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        """Like :meth:`backward` given ∂L/∂z of the pre-activation that :meth:`head` returns."""
        raise NotImplementedError

    def backward_some(
        self, g: np.ndarray, cache: Cache, *, inputs: bool, weights: Collection[str], from_logits: bool = False
    ) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        """:meth:`backward` (:meth:`backward_from_logits` when ``from_logits``) for a caller
        that needs the input gradients only if ``inputs`` and only the named ``weights``'
        gradients.  This default computes everything and drops the rest; a layer whose
        products can be skipped (Dense) overrides it."""
        g_xs, g_w = (self.backward_from_logits if from_logits else self.backward)(g, cache)
        return (g_xs if inputs else [None] * len(g_xs)), {k: v for k, v in g_w.items() if k in weights}

    def build(self, input_shapes: Sequence[Shape], weights: Mapping[str, np.ndarray]) -> None:
        """Check the given weights against :meth:`weight_specs` (each present, each shape)."""
        self._specs = self.weight_specs(input_shapes)
        if not getattr(self, "trainable", True):
            self._specs = [Weight(w.name, w.shape, False) for w in self._specs]
        self.weights = {}
        for spec in self._specs:
            path = f"{self.name}/{spec.name}"
            if path not in weights:
                raise ShapeError(
                    f"missing weight {path!r} of {self.where}: expected shape {list(spec.shape)}",
                    field=f"weights.{path}",
                )
            value = weights[path]
            if tuple(value.shape) != spec.shape:
                raise ShapeError(
                    f"weight {path!r} has shape {list(value.shape)} but {self.where} "
                    f"expects {list(spec.shape)}",
                    field=f"weights.{path}",
                )
            self.weights[spec.name] = value

    @property
    def specs(self) -> list[Weight]:
        return self._specs


def _size(shape: Shape) -> int:
    n = 1
    for d in shape:
        n *= int(d or 1)
    return n


def need_rank(where: str, shape: Shape, rank: int | tuple[int, ...], what: str) -> None:
    ranks = (rank,) if isinstance(rank, int) else rank
    if len(shape) not in ranks:
        raise ShapeError(
            f"{where} expects inputs of rank {' or '.join(map(str, ranks))} ({what}), "
            f"got shape {list(shape)}",
            field="inputs",
        )


def known(where: str, shape: Shape, axis: int) -> int:
    d = shape[axis]
    if d is None:
        raise ShapeError(f"{where} needs a known size on axis {axis}, got shape {list(shape)}", field="inputs")
    return int(d)
