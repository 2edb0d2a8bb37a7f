"""The data loss at a model's head: Keras's logits rule and the targets' shape.

Crossentropy on a sigmoid/softmax head (see :func:`head_loss`): Keras's ``sigmoid`` and
``softmax`` activations attach their logits to their output, and ``binary_crossentropy``,
``categorical_crossentropy`` and ``sparse_categorical_crossentropy`` then compute from
those logits (no probability clipping) *whatever ``from_logits`` says* (with
``from_logits=true`` Keras warns and still uses the logits).  The service does the same
for the matching pairs: sigmoid → binary (and the binary focal loss, whose crossentropy
term Keras also takes from the logits), softmax over the loss's axis (``-1``, the last
index, or either as a one-element list) → categorical / sparse categorical.

Two deliberate differences (README, "Where we differ from Keras"):

* crossed heads (a softmax head with a binary loss, a sigmoid head with a categorical
  one): Keras still takes the logits shortcut and so computes another function; the
  service computes the loss asked for on the probabilities;
* a softmax over another axis than the loss's with categorical crossentropy: Keras
  takes the shortcut over the loss's axis (another function again); the service
  computes the crossentropy of the probabilities, in the equal log-space form
  ``q = softmax_loss_axis(log_softmax_head_axis(z))`` so it stays finite where the
  probabilities underflow to 0.  ``from_logits`` is ignored there too (the head's
  output is probabilities).

Example (a sigmoid head with binary crossentropy takes the logits ``z``)::

    >>> from service.core import losses
    >>> z = np.array([[0.0]]); y = 1 / (1 + np.exp(-z)); t = np.array([[1.0]])
    >>> value, g_z = head_loss(losses.get("binary_crossentropy"), Activation("sigmoid", {}), z, y, t)
    >>> round(float(value), 6), float(g_z[0, 0])
    (0.693147, -0.5)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from service.core import losses as loss_registry
from service.core.activations import Activation
from service.core.errors import ShapeError, SpecError
from service.core.losses import Loss
from service.core.numeric import FloatArray


def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """An activation or loss ``axis`` (int, list/tuple of ints, or None = all) as sorted indices."""
    axes = range(ndim) if axis is None else axis if isinstance(axis, tuple | list) else (axis,)
    return tuple(sorted({int(a) % ndim for a in axes}))


def logits_loss(loss: Loss, head: Activation, ndim: int) -> Loss | None:
    """The from-logits loss Keras substitutes for a matching sigmoid/softmax head, if any.

    Matching: ``binary_crossentropy`` on sigmoid (either ``from_logits``); the binary focal
    loss on sigmoid with ``from_logits=false`` (Keras's focal factor uses the same
    probabilities and its crossentropy the logits: the from-logits form exactly);
    ``categorical_crossentropy`` and ``sparse_categorical_crossentropy`` (without
    ``ignore_class``, whose masking drops the logits in Keras) on a softmax over the
    loss's own axis.
    """
    if head.name == "sigmoid":
        if loss.name == "binary_crossentropy" or (
            loss.name == "binary_focal_crossentropy" and not loss.params["from_logits"]
        ):
            return loss.with_logits()
        return None
    if head.name != "softmax" or loss.name not in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
        return None
    if loss.params.get("ignore_class") is not None:
        return None
    if _axes(head.params["axis"], ndim) == _axes(loss.params["axis"], ndim):
        return loss.with_logits()
    return None


def head_loss(
    loss: Loss,
    head: Activation,
    z: FloatArray,
    y: FloatArray,
    t: FloatArray,
    sample_weight: np.ndarray | None = None,
    need_gradient: bool = True,
) -> tuple[Any, FloatArray | None]:
    """The data loss of a head ``y = head(z)`` and its gradient wrt ``z``, as Keras ``fit``.

    Returns ``(value, ∂Σvalue/∂z)``; ``value`` is a tensor for ``reduction="none"``.
    Uses the logits where Keras does (:func:`logits_loss`); a categorical crossentropy
    on a softmax over another axis is the crossentropy of the probabilities, computed as
    ``q = softmax_loss_axis(log_softmax_head_axis(z))`` (equal to ``y/Σy``, finite where
    ``y`` underflows).  Otherwise the loss of ``y``, back through the activation.
    """
    sub = logits_loss(loss, head, y.ndim)
    if sub is not None:
        return sub.value(t, z, sample_weight), sub.gradient(t, z, sample_weight) if need_gradient else None
    if loss.name == "categorical_crossentropy" and head.name == "softmax":
        probs = Loss(loss.name, {**loss.params, "from_logits": False})
        log_head = Activation("log_softmax", {"axis": head.params["axis"]})
        normalise = Activation("softmax", {"axis": loss.params["axis"]})
        lz = log_head(z)
        q = normalise(lz)
        value = probs.value(t, q, sample_weight)
        if not need_gradient:
            return value, None
        g_q = probs.gradient(t, q, sample_weight)
        return value, log_head.vjp(z, lz, normalise.vjp(lz, q, g_q))
    value = loss.value(t, y, sample_weight)
    if not need_gradient:
        return value, None
    return value, head.vjp(z, y, loss.gradient(t, y, sample_weight))


#: Losses whose targets are class indices (the outputs' shape without the class axis).
SPARSE_LOSSES = ("sparse_categorical_crossentropy", "categorical_generalized_cross_entropy", "circle")


def _targets_fit(targets: tuple[int, ...], outputs: tuple[int, ...]) -> bool:
    """Equal shapes, or Keras's allowance of a trailing axis of size 1 on either side
    (labels of shape ``(N,)`` for a one-unit output of shape ``(N, 1)``)."""
    return (
        targets == outputs
        or (outputs[-1:] == (1,) and targets == outputs[:-1])
        or (targets[-1:] == (1,) and targets[:-1] == outputs)
    )


def check_targets(loss: Loss, targets: tuple[int, ...], outputs: tuple[int, ...], what: str) -> None:
    """Targets fit the outputs as ``loss`` reads them, else a :class:`ShapeError` on ``targets``.

    Class-index losses take the outputs' shape without the class axis (or with a trailing
    1; ``categorical_generalized_cross_entropy`` without it only); the others
    :func:`_targets_fit`.
    """
    if loss.name in SPARSE_LOSSES:
        if targets not in (outputs[:-1], (*outputs[:-1], 1)) or (
            loss.name == "categorical_generalized_cross_entropy" and targets != outputs[:-1]
        ):
            raise ShapeError(
                f"targets have shape {list(targets)} but {loss.name} takes one class "
                f"index per sample: shape {list(outputs[:-1])} (the outputs' {list(outputs)} "
                "without the class axis) or with a trailing 1",
                field="targets",
            )
    elif not _targets_fit(targets, outputs):
        raise ShapeError(
            f"targets have shape {list(targets)} but the {what} outputs shape "
            f"{list(outputs)}; they must be equal (or differ by a trailing axis of size 1)",
            field="targets",
        )


def get_loss(spec: str | Mapping[str, Any] | Loss) -> Loss:
    """The loss a request names, its errors located at the ``loss`` field."""
    try:
        return loss_registry.get(spec)
    except SpecError as exc:
        raise SpecError(f"loss: {exc.message}", field="loss") from None
