"""How long a 1M-element tensor takes through the running service, per wire form.

    .venv/bin/python -m bench.wire [--elements 1000000] [--repeat 7]

1. Starts ``python -m service`` (uvicorn) on 127.0.0.1 and a free port, POSTs the same
   FP32 tensor to ``/v1/penalty`` as nested JSON arrays, flat ``data`` and ``b64``
   (``return_gradient`` false, so the answer is a few bytes), then with the 1M-element
   gradient sent back as JSON numbers or b64, and prints the median round trip of each
   and the same-run ratio to b64.
2. In process, times the ways of turning the same request body into a validated
   ``PenaltyRequest``: the stdlib ``json`` parser (FastAPI's default), ``orjson``,
   ``model_validate_json``, jiter's ``from_json`` (what ``service.api.routing`` uses), and
   FastAPI's default path with a typed ``list[list[float]]`` body in Python mode.

Medians of ``--repeat`` runs on this machine; ratios are within one run.
"""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict

from bench.common import live_service, medians_ms
from service.api.routing import parse_json
from service.schemas import PenaltyRequest


def bodies(x: np.ndarray) -> dict[str, bytes]:
    common = {"regularizer": {"type": "l1", "l1": 0.1}, "return_gradient": False}
    flat = {"shape": list(x.shape), "datatype": "FP32", "data": x.reshape(-1)}
    b64 = {"shape": list(x.shape), "datatype": "FP32", "b64": base64.b64encode(x.astype("<f4").tobytes()).decode()}
    option = orjson.OPT_SERIALIZE_NUMPY
    return {
        "nested JSON": orjson.dumps({"tensor": x, **common}, option=option),
        "flat JSON data": orjson.dumps({"tensor": flat, **common}, option=option),
        "b64": orjson.dumps({"tensor": b64, **common}, option=option),
    }


def with_gradient(payloads: dict[str, bytes]) -> dict[str, bytes]:
    """The same requests asking for the 1M-element gradient back, as JSON numbers or b64."""
    nested, b64 = orjson.loads(payloads["nested JSON"]), orjson.loads(payloads["b64"])
    return {
        "nested in, JSON gradient out": orjson.dumps({**nested, "return_gradient": True}),
        "b64 in, b64 gradient out": orjson.dumps({**b64, "return_gradient": True, "encoding": "b64"}),
    }


class TypedBody(BaseModel):
    """What a plain FastAPI model for a rank-2 tensor would look like (validated per float)."""

    model_config = ConfigDict(extra="forbid")
    tensor: list[list[float]]
    regularizer: dict[str, Any]
    return_gradient: bool = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    side = round(args.elements**0.5)
    x = np.random.default_rng(0).standard_normal((side, side)).astype(np.float32)
    payloads = bodies(x)

    print(f"1. Through the running service: POST /v1/penalty, {x.size} FP32 elements, "
          f"median of {args.repeat}")
    print(f"   {'form':<30}{'body MB':>9}{'round trip ms':>15}{'vs b64':>8}")
    with live_service() as base, httpx.Client(base_url=base, timeout=60) as client:
        headers = {"Content-Type": "application/json"}
        sent = {**payloads, **with_gradient(payloads)}
        for body in sent.values():
            assert client.post("/v1/penalty", content=body, headers=headers).status_code == 200
        results = medians_ms(
            {name: lambda b=body: client.post("/v1/penalty", content=b, headers=headers)
             for name, body in sent.items()},
            args.repeat,
        )
        for name, ms in results.items():
            print(f"   {name:<30}{len(sent[name]) / 1e6:>9.1f}{ms:>15.1f}{ms / results['b64']:>7.1f}×")

    print("\n2. In process: request body -> validated PenaltyRequest, median ms")
    print(f"   {'path':<58}{'nested':>8}{'flat':>8}{'b64':>8}")
    paths: dict[str, Callable[[bytes], Any]] = {
        "stdlib json.loads + model_validate (FastAPI's parser)": lambda b: PenaltyRequest.model_validate(
            json.loads(b)),
        "orjson.loads + model_validate": lambda b: PenaltyRequest.model_validate(orjson.loads(b)),
        "PenaltyRequest.model_validate_json (jiter)": PenaltyRequest.model_validate_json,
        "parse_json (jiter) + model_validate (this service)": lambda b: PenaltyRequest.model_validate(
            parse_json(b, max_rank=32)),
    }
    typed = "FastAPI default: json.loads + typed list[list[float]] model"
    runs = {(label, form): (lambda p=parse, b=body: p(b))
            for label, parse in paths.items() for form, body in payloads.items()}
    runs[(typed, "nested JSON")] = lambda: np.asarray(
        TypedBody.model_validate(json.loads(payloads["nested JSON"])).tensor, np.float32)
    ms = medians_ms(runs, args.repeat)  # type: ignore[arg-type]
    for label in [*paths, typed]:
        row = "".join(f"{ms[(label, form)]:>8.1f}" if (label, form) in ms else f"{'':>8}" for form in payloads)
        print(f"   {label:<58}{row}")
    print("   (the typed model's row includes np.asarray of its lists, to end with an array too)")

if __name__ == "__main__":
    main()
