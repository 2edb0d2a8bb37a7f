"""The pricers of the routes' request models (``@prices``, see ``service.budget``).

Each prices a validated request from its shapes and specs: the decoded tensors, the
specs' work (``budget.cost_of``), and the answer: gradient arrays and their encoding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from service.budget import Cost, cost_of, default_price, elements, encoded, prices, work_itemsize
from service.core.model import cost as model_cost
from service.schemas import DenseRequest, NetworkRequest, PenaltiesRequest, PenaltyRequest
from service.schemas.model import ModelRequest


def _tensor(x: np.ndarray, regularizer: Any, gradient: Any, encoding: Any) -> Cost:
    """The decoded tensor, the regularizer's work, and the gradient array and its answer (any
    selection of gradients is priced as all of them: an upper bound)."""
    n, item = x.size, work_itemsize(x)
    answer = Cost(n, (x.itemsize + encoded(item, encoding)) * n) if gradient else Cost()
    return Cost(n, x.itemsize * n) + cost_of(regularizer, x.shape, item) + answer


@prices(PenaltyRequest)
def _penalty(r: PenaltyRequest) -> Cost:
    return _tensor(r.tensor, r.regularizer, r.return_gradient, r.encoding)


@prices(PenaltiesRequest)
def _penalties(r: PenaltiesRequest) -> Cost:
    return sum(
        (_tensor(w.tensor, w.regularizer, r.return_gradients, r.encoding) for w in r.weights.values()), Cost()
    )


def _layers(
    inputs: np.ndarray, layers: list[Any], loss: Any, targets: np.ndarray | None, gradients: Any, encoding: Any
) -> Cost:
    """Forward through Dense layers (``b×i @ i×o`` each), every penalty, and for each term
    (data loss, every penalty) its backward pass through the layers it reaches and one
    gradient per parameter, all encoded."""
    batch = elements(inputs.shape[:-1]) if inputs.ndim else 1
    item = work_itemsize(inputs)
    out = item + encoded(item, encoding)
    cost = Cost(inputs.size, item * inputs.size)
    matmuls = parameters = terms = 0
    for layer in layers:
        k = layer.kernel
        if k.ndim != 2:  # the core refuses it before computing
            return cost + Cost(k.size, item * k.size)
        outputs = (batch, k.shape[1])
        matmuls += 2 * batch * k.shape[0] * k.shape[1]
        parameters += k.size + (layer.bias.size if layer.bias is not None else 0)
        cost += Cost(0, (2 * item + out) * elements(outputs))
        cost += cost_of(layer.activation, outputs, item) + cost_of(layer.activity_regularizer, outputs, item)
        cost += cost_of(layer.kernel_regularizer, k.shape, item)
        if layer.bias is not None:
            cost += cost_of(layer.bias_regularizer, layer.bias.shape, item)
        terms += sum(r is not None for r in (layer.activity_regularizer, layer.kernel_regularizer, layer.bias_regularizer))
        batch_outputs = outputs
    if targets is not None:
        cost += Cost(targets.size, item * targets.size) + cost_of(loss, batch_outputs, item)
        terms += 1
    cost += Cost(matmuls, 0)
    if gradients:
        reach = terms + 1  # each term, and their total
        cost += Cost(2 * matmuls * reach, out * (parameters + inputs.size) * reach)
    return cost


@prices(DenseRequest)
def _dense(r: DenseRequest) -> Cost:
    return _layers(r.inputs, [r], None, None, r.return_gradients, r.encoding)


@prices(NetworkRequest)
def _network(r: NetworkRequest) -> Cost:
    return _layers(r.inputs, list(r.layers), r.loss, r.targets, r.return_gradients, r.encoding)


def model_inputs(r: ModelRequest) -> dict[str, np.ndarray]:
    """The request's inputs by input layer name (one bare tensor fills the first input)."""
    return r.inputs if isinstance(r.inputs, dict) else {r.model.inputs[0]: r.inputs}


@prices(ModelRequest)
def _model(r: ModelRequest) -> Cost:
    """The decoded tensors, then the model's own price (``core.model.cost``: conv output
    sizes × kernel sizes, every layer output and scratch array): one forward pass, and
    for each term that starts a backward pass (the data loss, each activity penalty) about
    two more, plus one gradient-sized answer per weight and term."""
    decoded = default_price(r)
    inputs = model_inputs(r)
    shapes = {name: tuple(x.shape) for name, x in inputs.items() if name in r.model.inputs}
    if len(shapes) != len(r.model.inputs):
        return decoded  # the core names the missing inputs before computing
    item = max((work_itemsize(x) for x in inputs.values()), default=4)
    price = model_cost(r.model, shapes)
    starts = sum("activity_regularizer" in layer.regularizers for layer in r.model.layers) + (r.loss is not None)
    passes = 1 + 2 * starts if r.return_gradients else 1
    answer = price.parameters * (starts + 2) * (item + encoded(item, r.encoding)) if r.return_gradients else 0
    return decoded + Cost(2 * price.flops * passes, price.bytes(item) * min(passes, 3) + answer)  # 2 ops a multiply-add
