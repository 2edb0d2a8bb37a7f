"""``POST /v1/dense`` and ``POST /v1/network``: forward passes with every penalty term."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.responses import POST_ERRORS
from service.api.routing import WireRoute
from service.core.dense import dense
from service.core.network import network
from service.schemas import DenseRequest, DenseResponse, NetworkRequest, NetworkResponse

router = APIRouter(prefix="/v1", route_class=WireRoute, tags=["layers"], responses=POST_ERRORS)


@router.post("/dense", operation_id="dense_forward", summary="One Dense layer, every penalty term")
def dense_forward(request: DenseRequest) -> DenseResponse:
    """``outputs = activation(inputs · kernel + bias)``; the penalty of each regularizer given
    (the activity one divided by the batch size unless ``activity_normalization`` is
    ``none``), and each term's gradient with respect to kernel, bias and inputs."""
    result = dense(
        request.inputs,
        request.kernel,
        request.bias,
        request.activation,
        request.kernel_regularizer,
        request.bias_regularizer,
        request.activity_regularizer,
        activity_normalization=request.activity_normalization.value,
        return_gradients=request.return_gradients,
    )
    return DenseResponse.of(result, request.encoding)


@router.post("/network", operation_id="network_forward", summary="A Dense stack and a data loss")
def network_forward(request: NetworkRequest) -> NetworkResponse:
    """The network's outputs, ``data_loss``, every layer's penalty terms and ``total`` (what
    Keras ``fit`` minimises), and the gradient of every term with respect to every
    parameter it reaches (``total`` is the gradient ``fit`` applies)."""
    result = network(
        request.inputs,
        request.targets,
        [layer.spec() for layer in request.layers],
        request.loss,
        activity_normalization=request.activity_normalization.value,
        return_gradients=request.return_gradients,
        sample_weight=request.sample_weight,
    )
    return NetworkResponse.of(result, request.encoding)
