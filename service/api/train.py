"""``POST /v1/train``: a training run, answered as JSON or streamed as Server-Sent Events.

With ``Accept: text/event-stream`` the run streams ``progress`` events (at most one per
``PROGRESS_SECONDS``, and the last step's) and then one ``result`` event holding the JSON
answer's body, or one ``error`` event holding the error envelope.  The first step runs
before the stream starts, so a request that cannot run is a plain 4xx.  The stream is a
generator pulled by the server: when the client disconnects the server stops pulling, so
the run stops after the step in progress (tests/api/test_train_stream.py measures it).
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from service.api.responses import POST_ERRORS
from service.api.routing import WireRoute
from service.config import Settings
from service.core import keras_config, training
from service.core.dense_models import NotSupported, dense_stack
from service.core.errors import CoreError
from service.core.model import Model, cost
from service.core.network import LayerSpec
from service.core.training_steps import batch_shapes
from service.errors import ApiError, TooExpensive, TooManyElements, core_loc, envelope
from service.schemas.training import TrainProgress, TrainRequest, TrainResponse

router = APIRouter(prefix="/v1", route_class=WireRoute, tags=["training"], responses=POST_ERRORS)

#: Shortest interval between two progress events.
PROGRESS_SECONDS = 0.1
EVENT_STREAM = "text/event-stream"


class TrainFields(ApiError):
    status_code = 422
    code = "validation_error"


def _network(request: TrainRequest) -> tuple[list[LayerSpec], Model | None]:
    """A Dense stack (``layers``, or a ``model`` that is a chain of Dense layers: the fast
    path) or, for any other Keras model, the parsed model."""
    if (request.model is None) == (request.layers is None):
        raise TrainFields("send exactly one of `layers` (a Dense stack, as /v1/network takes it) and "
                          "`model` + `weights` (a Keras model, as /v1/model takes it)")
    if request.layers is not None:
        return [layer.spec() for layer in request.layers], None
    assert request.model is not None
    if request.weights is None:
        raise TrainFields("`model` needs `weights` ('<layer>/<weight>' → tensor)")
    if not isinstance(request.inputs, dict):
        try:
            return dense_stack(request.model.root, request.weights.root), None
        except NotSupported:
            pass
    return [], keras_config.from_config(request.model.root)


def _config(request: TrainRequest) -> training.TrainConfig:
    layers, model = _network(request)
    return training.TrainConfig(
        request.inputs, request.targets, layers, request.loss,
        request.optimizer, request.epochs, request.batch_size, request.shuffle, request.seed,
        request.activity_normalization.value, request.l1_proximal, request.record.every,
        tuple(request.record.sparsity_tolerances), request.state.core() if request.state else None,
        model=model, weights=None if model is None or request.weights is None else request.weights.root,
    )


def _admit(cfg: training.TrainConfig, settings: Settings) -> float:
    """Refuse a run over the budget (413); the deadline of one that is admitted."""
    training.check(cfg)
    per_epoch = training.steps_per_epoch(training.samples(cfg), cfg.batch_size)
    steps = cfg.epochs * per_epoch
    if steps > settings.max_train_steps:
        raise TooExpensive(f"the run has {steps} steps ({cfg.epochs} epochs × {per_epoch}); "
                           f"the limit is {settings.max_train_steps}")
    if cfg.model is not None:
        shapes = batch_shapes(training.model_inputs(cfg), cfg.batch_size)
        elements = cost(cfg.model, shapes).elements
        if elements > settings.max_request_elements:
            raise TooManyElements(f"one batch needs {elements} elements of layer outputs and scratch arrays "
                                  f"(inputs {', '.join(f'{k} {list(v)}' for k, v in shapes.items())}); the limit "
                                  f"is {settings.max_request_elements}: use a smaller batch_size")
    work = training.price(cfg)
    if work > settings.max_train_work:
        raise TooExpensive(f"the run costs {work:.3g} work units (steps × cost of one step); the limit "
                           f"is {settings.max_train_work:.3g}: train fewer epochs or a smaller network")
    numbers = training.history_size(cfg)
    if numbers > settings.max_train_history:
        raise TooExpensive(f"the history would hold {numbers} numbers; the limit is "
                           f"{settings.max_train_history}: record fewer steps (record.every)")
    return time.monotonic() + settings.max_train_seconds


def _finish(loop: Generator[training.Progress, None, training.TrainResult]) -> training.TrainResult:
    try:
        while True:
            next(loop)
    except StopIteration as done:
        result: training.TrainResult = done.value
        return result
    except training.TooExpensive as exc:
        raise TooExpensive(exc.message) from None


def _event(name: str, data: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n\n"


def _stream(first: training.Progress, loop: Generator[training.Progress, None, training.TrainResult],
            request: TrainRequest) -> Iterator[bytes]:
    yield _event("progress", TrainProgress(**vars(first)).model_dump())
    last = time.monotonic()
    try:
        while True:
            try:
                p = next(loop)
            except StopIteration as done:
                yield _event("result", TrainResponse.of(done.value, request).model_dump())
                return
            now = time.monotonic()
            if now - last >= PROGRESS_SECONDS or p.step == p.steps:
                last = now
                yield _event("progress", TrainProgress(**vars(p)).model_dump())
    except training.TooExpensive as exc:
        yield _event("error", envelope(TooExpensive.code, exc.message))
    except CoreError as exc:
        yield _event("error", envelope(exc.code, exc.message, [{"loc": core_loc(exc), "msg": exc.message,
                                                                 "type": exc.code}]))


@router.post("/train", operation_id="train", summary="A training run and its trajectories",
             responses={200: {"content": {EVENT_STREAM: {}}, "description": "JSON, or with "
                              "`Accept: text/event-stream` progress events then one result (or error) event."},
                        413: POST_ERRORS[413]})
def train(body: TrainRequest, request: Request) -> TrainResponse:
    """Minibatches in order (``shuffle: false`` is Keras's ``fit(shuffle=False)``), one
    optimizer step per batch; every term's value and gradient norm per recorded step, each
    weight's L1/L2/max-abs and sparsity, ``epoch_losses`` as Keras's History, the final
    weights and optimizer state.  Priced before it starts (413 ``too_expensive``)."""
    settings: Settings = request.app.state.settings
    cfg = _config(body)
    deadline = _admit(cfg, settings)
    loop = training.run(cfg, deadline=deadline)
    if EVENT_STREAM not in request.headers.get("accept", ""):
        return TrainResponse.of(_finish(loop), body)
    try:
        first = next(loop)
    except StopIteration:  # pragma: no cover - a run has at least one step
        raise AssertionError("a run has at least one step") from None
    except training.TooExpensive as exc:
        raise TooExpensive(exc.message) from None
    return StreamingResponse(  # type: ignore[return-value]
        _stream(first, loop, body), media_type=EVENT_STREAM,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
