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
from service.budget import charge
from service.config import Settings
from service.core.model import cost, evaluate
from service.errors import TooManyElements
from service.pricing import model_inputs
from service.schemas import budget_for, decoding
from service.schemas.model import ModelRequest, ModelResponse


def admit(request: ModelRequest, settings: Settings) -> None:
    """413 before any work: layer outputs over the element limit (``too_many_elements``), or
    the model's price (``service.pricing``) over ``PENALTY_MAX_WORK`` / ``_BYTES``
    (``too_expensive``). JSON bodies were charged by :class:`WireRoute` already; uploads are
    charged here, and both meet the element check."""
    shapes = {name: tuple(x.shape) for name, x in model_inputs(request).items() if name in request.model.inputs}
    if len(shapes) != len(request.model.inputs):
        return  # the core names the missing inputs
    price = cost(request.model, shapes)
    if price.elements > settings.max_request_elements:
        raise TooManyElements(
            f"the model's layer outputs and scratch arrays need {price.elements} elements for inputs "
            f"{ {k: list(v) for k, v in shapes.items()} }; the limit is {settings.max_request_elements}"
        )
    charge(request, settings.max_work, settings.max_work_bytes)


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
        sample_weight=request.sample_weight,
    )
    return ModelResponse.of(result, request.encoding)
