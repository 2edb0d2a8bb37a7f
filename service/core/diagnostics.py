"""What a Keras user would want flagged in a model's regularization, with the numbers.

Each diagnostic is ``{"code", "layer", "message"}``:

===============================  ==============================================================
``activity_on_saturated_output``  an activity regularizer on an output where at least half the
                                  units have activation derivative ~0 (``|f'(z)| < 1e-6``): the
                                  penalty's gradient cannot pass them (seed 000: outputs in the
                                  hundreds saturate a sigmoid)
``activity_on_inactive_output``  an activity regularizer on a relu-like output where at least
                                  90% of the units are inactive (derivative ~0)
``negligible_term``               a regularization term below 1e-6 of the total
``zero_factor``                   a regularizer whose every factor is 0: it adds nothing
``regularizer_without_weight``    a regularizer for a weight the layer does not have
                                  (``use_bias=False``): Keras adds no term
``unregularized_layer``           a layer with trainable weights and no regularizer while
                                  other layers have one
``dropout_mask_not_keras``        training mode with Dropout: the service's own seeded mask
``penalty_before_normalization``  a kernel penalty on a linear layer whose output goes only into
                                  BatchNormalization: in training mode the normalization undoes any
                                  scaling of the kernel (up to its epsilon), so the penalty shrinks it without changing
                                  the function (it acts on the effective learning rate)
===============================  ==============================================================

    >>> NEGLIGIBLE
    1e-06
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from service.core.model import Model

#: A term below this share of the total is reported as negligible.
NEGLIGIBLE = 1e-6
#: An activation derivative below this counts as saturated.
FLAT = 1e-6
#: Share of saturated units from which an activity regularizer is flagged.
SATURATED_SHARE = 0.5
#: Share of inactive units (relu-like activations, where half inactive is ordinary).
INACTIVE_SHARE = 0.9
#: Activations that flatten out at both ends (saturate) rather than switch off.
SATURATING = {"sigmoid", "tanh", "hard_sigmoid", "hard_tanh", "softsign", "sparse_sigmoid", "relu6", "log_sigmoid"}


def _saturation(layer: Any, cache: Any) -> tuple[str, int, int] | None:
    """``(activation name, units with derivative ~0, units)`` of the layer's output."""
    head = layer.head(cache)
    if head is None:
        return None
    act, z = head
    if act.name in ("softmax", "log_softmax", "linear") or z.size == 0:
        return None
    slope = np.abs(act.vjp(z, None, np.ones_like(z)))
    return act.name, int((slope < FLAT).sum()), int(z.size)


def diagnose(model: Model, values: Mapping[str, np.ndarray], caches: Mapping[str, Any],
             losses: Mapping[str, Any], training: bool) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []

    def add(code: str, layer: str, message: str) -> None:
        out.append({"code": code, "layer": layer, "message": message})

    total = float(sum(abs(float(v)) for k, v in losses.items() if k != "total"))
    consumers: dict[str, list[str]] = {}
    for n, node in model.nodes.items():
        for i in node.inputs:
            consumers.setdefault(i, []).append(n)
    regularized = [n for n, node in model.nodes.items() if node.layer is not None and node.layer.regularizers]
    for name, node in model.nodes.items():
        layer = node.layer
        if layer is None:
            continue
        if "activity_regularizer" in layer.regularizers:
            sat = _saturation(layer, caches[name])
            if sat is not None:
                act, flat, units = sat
                share = flat / units
                numbers = (f"{flat} of {units} units ({100 * share:.0f}%) have {act} derivative below {FLAT:g}, "
                           "so the penalty's gradient does not reach the weights through them")
                if act in SATURATING and share >= SATURATED_SHARE:
                    add("activity_on_saturated_output", name,
                        f"activity_regularizer on {name!r} sees a saturated output: {numbers}; "
                        "scale the inputs or weights down, or regularize the pre-activation")
                elif act not in SATURATING and share >= INACTIVE_SHARE:
                    add("activity_on_inactive_output", name,
                        f"activity_regularizer on {name!r} sees a mostly inactive output: {numbers}")
        present = {w.name for w in layer.specs if w.trainable}
        for arg, reg in layer.regularizers.items():
            factors = [v for v in reg.params().values() if isinstance(v, int | float)]
            if factors and all(f == 0 for f in factors):
                add("zero_factor", name, f"{name}/{arg} has factor 0 ({reg.get_config()}): it adds nothing")
            weight = layer.REGULARIZED.get(arg)
            if weight is not None and weight not in present:
                add("regularizer_without_weight", name,
                    f"{name}/{arg} is given but {name!r} has no trainable weight {weight!r}"
                    f"{' (the layer is frozen)' if not layer.trainable else ''}: no term is added (as in Keras)")
        for key, value in losses.items():
            if key.startswith(f"{name}/") and total > 0 and abs(float(value)) < NEGLIGIBLE * total:
                add("negligible_term", name,
                    f"{key} = {float(value):.3g} is {abs(float(value)) / total:.2g} of the sum of all terms "
                    f"({total:.4g}); it has practically no effect")
        trainable = [w.name for w in layer.specs if w.trainable]
        if regularized and trainable and not layer.regularizers:
            add("unregularized_layer", name,
                f"{name!r} has trainable weights ({', '.join(trainable)}) but no regularizer, while "
                f"{len(regularized)} other layer(s) have one ({', '.join(regularized[:5])})")
        after = [model.nodes[c].layer for c in consumers.get(name, [])]
        linear = getattr(getattr(layer, "activation", None), "name", None) == "linear"
        if (linear and "kernel_regularizer" in layer.regularizers and after
                and all(a is not None and a.CLASS_NAME == "BatchNormalization" for a in after)):
            add("penalty_before_normalization", name,
                f"{name}/kernel_regularizer: {name!r} feeds only BatchNormalization "
                f"({', '.join(consumers[name])}), which in training mode gives the same output for "
                f"c·kernel as for the kernel (c > 0, up to its epsilon): the penalty shrinks the kernel without changing "
                "the function; it changes the effective learning rate rather than constraining the model")
        if training and layer.CLASS_NAME == "Dropout":
            add("dropout_mask_not_keras", name,
                f"{name!r} in training mode drops units with the service's own seeded mask "
                "(numpy default_rng), not Keras's random stream")
    return out
