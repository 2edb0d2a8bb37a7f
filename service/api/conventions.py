"""``GET /v1/conventions``: L2 and weight decay across frameworks, side by side.

Notation: ``w`` a weight, ``g`` the data loss's gradient, ``η`` the learning rate.  Every
row states what the framework adds to the loss or the update, how to convert it to
Keras's ``L2(λ)`` (penalty ``λ·Σw²``, gradient ``2λw``) or Keras's ``weight_decay``
(``w ← w − η·wd·w`` before the update), and when the two are the same trajectory.
Each claim is run through the service in tests/api/test_conventions.py.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from service.api.routing import WireRoute

router = APIRouter(prefix="/v1", route_class=WireRoute, tags=["discovery"])


class Convention(BaseModel):
    framework: str
    api: str
    kind: str  # "penalty" (in the loss, coupled) or "decoupled" (in the update)
    formula: str
    default: float | None
    keras_equivalent: str
    equivalent_when: str
    differs_when: str


class Conventions(BaseModel):
    notation: str
    conventions: list[Convention]
    equivalences: list[dict[str, Any]]


CONVENTIONS = [
    Convention(framework="Keras 3", api="kernel_regularizer=keras.regularizers.L2(l2)", kind="penalty",
               formula="loss += l2·Σw²; gradient += 2·l2·w (goes through momentum / Adam's scaling)",
               default=0.01, keras_equivalent="itself",
               equivalent_when="plain SGD: ≡ weight_decay = 2·l2 on the same weights (biases excluded "
                               "unless they carry bias_regularizer)",
               differs_when="momentum, Adam/RMSprop/any adaptive optimizer, gradient clipping"),
    Convention(framework="Keras 3", api="keras.optimizers.*(weight_decay=wd), AdamW (wd=0.004)",
               kind="decoupled",
               formula="w ← w − η·wd·w before the optimizer's update (every trainable variable, "
                       "biases too, unless exclude_from_weight_decay matches)",
               default=None, keras_equivalent="itself",
               equivalent_when="plain SGD: ≡ L2(wd/2) on the same weights",
               differs_when="any optimizer that rescales or accumulates gradients"),
    Convention(framework="tf.keras 2.x", api="tf.keras.regularizers.l2(l2) / optimizers(weight_decay=wd)",
               kind="penalty | decoupled",
               formula="the same two conventions as Keras 3 (l2 default 0.01; the identifier "
                       "'l1_l2' meant L1L2(0.01, 0.01))",
               default=0.01, keras_equivalent="the same numbers",
               equivalent_when="always (same formulas, as tf.keras documents them; not run here)",
               differs_when="—"),
    Convention(framework="PyTorch", api="torch.optim.SGD(weight_decay=wd)", kind="penalty",
               formula="g ← g + wd·w, then the SGD update (with momentum: buf = μ·buf + g; w −= η·buf)",
               default=0.0, keras_equivalent="L2(wd/2) on every parameter (biases included)",
               equivalent_when="always at a constant η (coupled in both); without momentum also "
                               "≡ Keras weight_decay = wd",
               differs_when="compared with Keras weight_decay under momentum"),
    Convention(framework="PyTorch", api="torch.optim.Adam(weight_decay=wd)", kind="penalty",
               formula="g ← g + wd·w, then Adam (ε added to √v̂ after bias correction)",
               default=0.0, keras_equivalent="Adam + L2(wd/2) (not Keras's weight_decay)",
               equivalent_when="ε = 0 in both (Keras adds ε to √v before the bias correction)",
               differs_when="compared with AdamW / Keras weight_decay: the decay is divided by √v̂"),
    Convention(framework="PyTorch", api="torch.optim.AdamW(weight_decay=wd)", kind="decoupled",
               formula="w ← w − η·wd·w, then Adam", default=0.01,
               keras_equivalent="keras.optimizers.AdamW(weight_decay=wd) (Keras's default is 0.004)",
               equivalent_when="ε = 0 in both (else ε placement differs slightly)",
               differs_when="Adam + L2"),
    Convention(framework="optax", api="optax.adamw(η, weight_decay=wd) = chain(scale_by_adam, "
                                      "add_decayed_weights(wd), scale_by_learning_rate(η))",
               kind="decoupled", formula="update = −η·(adam_direction + wd·w)", default=1e-4,
               keras_equivalent="keras.optimizers.AdamW(weight_decay=wd)",
               equivalent_when="ε = 0 in both (optax adds ε to √v̂ after bias correction)",
               differs_when="add_decayed_weights placed before the optimizer: then it is an L2 penalty "
                            "wd/2·‖w‖², i.e. Keras L2(wd/2)"),
    Convention(framework="TensorFlow", api="λ·tf.nn.l2_loss(w)", kind="penalty",
               formula="tf.nn.l2_loss(w) = Σw²/2; gradient λ·w", default=None,
               keras_equivalent="L2(λ/2)", equivalent_when="always", differs_when="—"),
]

EQUIVALENCES = [
    {"claim": "SGD without momentum: Keras L2(λ) ≡ weight_decay 2λ at the same learning rate, biases "
              "excluded from the decay", "holds": True},
    {"claim": "SGD with momentum: L2(λ) and weight_decay 2λ give different trajectories", "holds": False},
    {"claim": "Adam + L2(λ) and AdamW(weight_decay 2λ) give different trajectories", "holds": False},
    {"claim": "PyTorch SGD(weight_decay=wd) ≡ Keras SGD + L2(wd/2)", "holds": True},
    {"claim": "PyTorch AdamW(weight_decay=wd) and optax.adamw(weight_decay=wd) ≡ Keras AdamW(wd) "
              "at ε = 0", "holds": True},
    {"claim": "λ·tf.nn.l2_loss(w) ≡ Keras L2(λ/2)", "holds": True},
]


@router.get("/conventions", operation_id="list_conventions", summary="L2 vs weight decay across frameworks")
def list_conventions() -> Conventions:
    """The formula of L2 / weight decay in Keras, tf.keras, PyTorch SGD/Adam/AdamW, optax and
    ``tf.nn.l2_loss``, the conversion to Keras's, and when they are equivalent."""
    return Conventions(
        notation="w weight, g data-loss gradient, η learning rate; Keras L2(λ) is λ·Σw² with gradient 2λw",
        conventions=CONVENTIONS, equivalences=EQUIVALENCES,
    )
