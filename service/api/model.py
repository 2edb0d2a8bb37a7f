"""``POST /v1/model``: a Keras model (JSON, or a ``.keras`` / ``.weights.h5`` upload), every term.

JSON bodies go through :class:`WireRoute`; ``multipart/form-data`` bodies are read by
:mod:`service.keras_files` (bounded, nothing executed) into the same request fields, then
validated by the same model.  The model is priced before it runs (:func:`admit`).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from service import keras_files
from service.api.responses import POST_ERRORS
from service.api.routing import ParsedRequest, WireRoute
from service.config import Settings
from service.core.model import cost, evaluate
from service.errors import ApiError, TooManyElements
from service.schemas import budget_for, decoding
from service.schemas.model import ModelRequest, ModelResponse

#: Multiply-adds one request may cost (forward plus one backward pass per term, ~2x each).
MAX_MODEL_FLOPS = 2_000_000_000


class TooExpensive(ApiError):
    status_code = 413
    code = "too_expensive"


def admit(request: ModelRequest, settings: Settings) -> None:
    """413 before any work when the model's layer outputs or arithmetic are over budget."""
    inputs = request.inputs if isinstance(request.inputs, dict) else {request.model.inputs[0]: request.inputs}
    shapes = {name: tuple(x.shape) for name, x in inputs.items() if name in request.model.inputs}
    if len(shapes) != len(request.model.inputs):
        return  # the core names the missing inputs
    price = cost(request.model, shapes)
    if price.elements > settings.max_request_elements:
        raise TooManyElements(
            f"the model's layer outputs and scratch arrays need {price.elements} elements for inputs "
            f"{ {k: list(v) for k, v in shapes.items()} }; the limit is {settings.max_request_elements}"
        )
    passes = 2 + 2 * (sum("activity_regularizer" in layer.regularizers for layer in request.model.layers)
                      + (request.loss is not None))
    if price.flops * passes > MAX_MODEL_FLOPS:
        raise TooExpensive(
            f"the model costs about {price.flops} multiply-adds per pass and {passes} passes "
            f"({price.flops * passes}); the limit is {MAX_MODEL_FLOPS}"
        )


class ModelRoute(WireRoute):
    """A :class:`WireRoute` that also takes ``multipart/form-data`` uploads."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        json_handler = super().get_route_handler()
        plain_handler = APIRoute.get_route_handler(self)

        async def route_handler(request: Request) -> Response:
            if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
                return await json_handler(request)
            settings: Settings = request.app.state.settings
            limits = keras_files.Limits.of(settings)
            parts = await keras_files.read_form(request, limits)
            body = await run_in_threadpool(keras_files.request_fields, parts, limits)
            scope = dict(request.scope)
            scope["headers"] = [(k, v) for k, v in request.scope["headers"] if k.lower() != b"content-type"]
            scope["headers"].append((b"content-type", b"application/json"))
            parsed = ParsedRequest(scope, request.receive)
            parsed._body = b"{}"
            parsed.parsed = body
            with decoding(budget_for(settings)):
                return await plain_handler(parsed)

        return route_handler


router = APIRouter(prefix="/v1", route_class=ModelRoute, tags=["models"], responses=POST_ERRORS)


@router.post(
    "/model",
    operation_id="model_forward",
    summary="A Keras model: every regularization term, per layer and per weight",
    openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
        "type": "object",
        "properties": {
            "model": {"type": "string", "format": "binary",
                      "description": "a Keras 3 .keras file, or the model JSON"},
            "weights": {"type": "string", "format": "binary", "description": "a .weights.h5 file"},
            "request": {"type": "string", "description": "the JSON of the other fields"},
        },
        "required": ["model"],
    }}}}},
)
def model_forward(request: ModelRequest, http: Request) -> ModelResponse:
    """Outputs, ``data_loss``, every ``"<layer>/<argument>"`` term and ``total``, a per-layer
    summary, ``gradients[weight][term]``, optional layer outputs, and diagnostics."""
    admit(request, http.app.state.settings)
    result = evaluate(
        request.model, request.weights, request.inputs, request.targets, request.loss,
        training=request.training, activity_normalization=request.activity_normalization.value,
        return_gradients=request.return_gradients, return_layer_outputs=request.return_layer_outputs,
    )
    return ModelResponse.of(result, request.encoding)
