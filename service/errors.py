"""One error hierarchy, one envelope, and every handler, registered in one place.

Every error response, whatever raised it, has the body of API.md::

    {"error": {"code": "shape_mismatch", "message": "...", "details": [{"loc": [...], "msg": "..."}]}}

=========================  ======  ==============================================================
code                       status  raised for
=========================  ======  ==============================================================
``invalid_json``           422     a body that is not JSON, or nests deeper than 200 levels
``unknown_field``          422     a field the model does not have (a typo: ``return_gradiens``)
``invalid_tensor``         422     ragged, non-numeric, non-finite, overflowing or mis-shaped tensors
``invalid_spec``           422     an unknown regularizer/activation/loss or a bad parameter
``validation_error``       422     any other schema error (wrong type, missing field, ...)
``shape_mismatch``         400     well-formed, but shapes do not fit (the core's ``ShapeError``)
``non_finite_result``      400     a result overflowed its datatype (the core's ``NonFiniteError``)
``payload_too_large``      413     a body over ``max_body_bytes``
``too_many_elements``      413     a tensor or request over its element limit
``too_many_layers``        413     a network over ``max_layers``
``too_expensive``          413     a request whose priced work or memory is over ``max_work`` /
                                   ``max_work_bytes`` (``service.budget``)
``unauthorized``           401     API keys are configured and none (or a wrong one) was sent
``request_timeout``        408     the body stopped arriving for ``body_read_timeout`` seconds
``overloaded``             503     the worker's request or in-flight-bytes budget is full
                                   (``Retry-After`` says when to try again)
``unsupported_media_type`` 415     a POST whose Content-Type is not JSON
``not_found``              404     no such route
``method_not_allowed``     405     the route exists, the method does not
``internal_error``         500     a bug: logged with its traceback; no client input should get here
=========================  ======  ==============================================================
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any, ClassVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse as StarletteJSONResponse

from service.core.errors import CoreError, NonFiniteError, ShapeError, SpecError

logger = logging.getLogger("service")

#: Pydantic error types the service raises itself; they become the envelope's code.
OWN_VALIDATION_CODES = ("invalid_tensor", "invalid_spec", "unknown_field")
#: How many validation errors the message quotes (``details`` lists them all).
QUOTED_ERRORS = 3
#: Longest message (a message may quote a value the client sent, which may be long).
MAX_MESSAGE = 1000
#: Longest string of a ``loc`` (a field name is the client's: it may be megabytes).
MAX_LOC_PART = 64
#: Most ``details`` an error body lists; past that, one last entry counts the rest.
MAX_DETAILS = 20

Loc = list[str | int]


class JSONResponse(StarletteJSONResponse):
    """JSON written by orjson; NumPy arrays and scalars are written natively.

    Numbers are never NaN or infinite here: ``service.wire`` refuses them when it
    encodes, so orjson's ``null`` for NaN can not occur.
    """

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


class ApiError(Exception):
    """An error the service answers with a 4xx; ``code`` and ``status_code`` per class."""

    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        details: Sequence[dict[str, Any]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)
        self.headers = dict(headers or {})


class InvalidJson(ApiError):
    status_code = 422
    code = "invalid_json"


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "payload_too_large"


class TooManyElements(ApiError):
    status_code = 413
    code = "too_many_elements"


class TooManyLayers(ApiError):
    status_code = 413
    code = "too_many_layers"


class UnsupportedMediaType(ApiError):
    status_code = 415
    code = "unsupported_media_type"


class TooExpensive(ApiError):
    status_code = 413
    code = "too_expensive"


class Unauthorized(ApiError):
    status_code = 401
    code = "unauthorized"


class RequestTimeout(ApiError):
    status_code = 408
    code = "request_timeout"


class Overloaded(ApiError):
    status_code = 503
    code = "overloaded"


#: The core's errors: a bad spec is a schema error, the others cannot be computed.
CORE_STATUS: dict[type[CoreError], int] = {SpecError: 422, ShapeError: 400, NonFiniteError: 400}


def envelope(code: str, message: str, details: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The error body, bounded whatever the client sent: messages clipped to
    ``MAX_MESSAGE`` characters, each ``loc`` string to ``MAX_LOC_PART``, at most
    ``MAX_DETAILS`` details and then one that counts the rest.

    >>> body = envelope("validation_error", "bad", [{"loc": ["body", "x" * 100], "msg": "m"}] * 25)
    >>> len(body["error"]["details"]), body["error"]["details"][-1]["msg"]
    (21, '5 more errors are not listed')
    >>> len(body["error"]["details"][0]["loc"][1])
    64
    """
    shown = [_bounded(d) for d in details[:MAX_DETAILS]]
    if len(details) > MAX_DETAILS:
        more = len(details) - MAX_DETAILS
        shown.append({"loc": ["body"], "msg": f"{more} more errors are not listed", "type": "more_errors"})
    return {"error": {"code": code, "message": clip(message), "details": shown}}


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` cut to ``limit`` characters (the last one an ellipsis)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _bounded(detail: dict[str, Any]) -> dict[str, Any]:
    bounded = dict(detail)
    if "msg" in bounded:
        bounded["msg"] = clip(str(bounded["msg"]))
    if "loc" in bounded:
        bounded["loc"] = [clip(p, MAX_LOC_PART) if isinstance(p, str) else p for p in bounded["loc"]]
    return bounded


#: Called with (code, status) for every error response (``service.observability`` counts them).
ON_ERROR: list[Callable[[str, int], None]] = []


def error_response(
    status: int,
    code: str,
    message: str,
    details: Sequence[dict[str, Any]] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    for hook in ON_ERROR:
        hook(code, status)
    return JSONResponse(envelope(code, message, details), status_code=status, headers=headers)


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """``" (did you mean 'return_gradient'?)"`` when a choice is close, else ``""``.

    A word much longer than every choice is close to none (and difflib on a megabyte
    string would take seconds), so it is not compared.
    """
    if len(word) > 2 * max(map(len, choices), default=0) + 8:
        return ""
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def dotted(loc: Sequence[str | int]) -> str:
    """``("body", "layers", 1, "kernel")`` -> ``body.layers[1].kernel``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def core_loc(exc: CoreError) -> Loc:
    """A core error's dotted field (``layers.1.kernel``) as a location: in the body, or in
    the ``result`` for a value that overflowed."""
    root = "result" if isinstance(exc, NonFiniteError) else "body"
    if not exc.field:
        return [root]
    return [root, *(int(p) if p.isdigit() else p for p in exc.field.split("."))]


# --------------------------------------------------------------------------- handlers


def _api_error(_: Request | None, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status_code, exc.code, exc.message, exc.details, exc.headers)


def _core_error(_: Request | None, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CoreError)
    status = next((s for cls, s in CORE_STATUS.items() if isinstance(exc, cls)), 400)
    details = [{"loc": core_loc(exc), "msg": exc.message, "type": exc.code}]
    return error_response(status, exc.code, exc.message, details)


def _validation_error(_: Request | None, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [_detail(e) for e in exc.errors()]
    code = details[0]["type"] if details else "validation_error"
    if code not in OWN_VALIDATION_CODES:
        code = "validation_error"
    quoted = [f"{dotted(_bounded(d)['loc'])}: {d['msg']}" for d in details[:QUOTED_ERRORS]]
    more = len(details) - QUOTED_ERRORS
    listed = ", listed in details" if len(details) <= MAX_DETAILS else f", the first {MAX_DETAILS} listed in details"
    message = "; ".join(quoted) + (f" (and {more} more errors{listed})" if more > 0 else "")
    return error_response(422, code, message, details)


def _detail(error: dict[str, Any]) -> dict[str, Any]:
    """A pydantic error without its ``input`` (which may be a whole tensor)."""
    loc = list(error.get("loc", ()))
    if error["type"] == "unknown_field":
        loc.append(error["ctx"]["field"])
    return {"loc": loc, "msg": error["msg"], "type": error["type"]}


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status == 404:
        code = "not_found"
        message = f"no route {request.method} {clip(request.url.path, 200)}; the API is described at /docs"
    elif status == 405:
        code = "method_not_allowed"
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"{clip(request.method, 20)} is not allowed on {clip(request.url.path, 200)}; use {allowed}"
    else:
        code = HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
        message = str(exc.detail)
    return error_response(status, code, message, headers=exc.headers)


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error on %s %s", request.method, clip(request.url.path, 200), exc_info=exc)
    return error_response(500, "internal_error", "internal error; it has been logged")


def render(exc: Exception) -> tuple[JSONResponse, str]:
    """The response the handlers give ``exc``, and its code, outside a request (in the
    process pool of ``service.offload``; the request's own process counts and logs it)."""
    if isinstance(exc, ApiError):
        response = _api_error(None, exc)
    elif isinstance(exc, CoreError):
        response = _core_error(None, exc)
    elif isinstance(exc, RequestValidationError):
        response = _validation_error(None, exc)
    else:
        response = error_response(500, "internal_error", "internal error; it has been logged")
    return response, str(orjson.loads(response.body)["error"]["code"])


def install(app: FastAPI) -> None:
    """Register every handler; each renders the one envelope."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(CoreError, _core_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
