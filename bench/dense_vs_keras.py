"""A Dense layer with all three penalties: the service's core and its HTTP route vs Keras eager.

Same shapes, same regularizers (kernel L1, bias L2, activity L1 after relu), float32.
Three measurements, each the median of repeated runs:

* ``core``: ``service.core.dense.dense`` in-process (values only, then with every
  term's gradient);
* ``http``: ``POST /v1/dense`` through a real uvicorn on 127.0.0.1 (b64 tensors), the
  whole round trip — send, parse, validate, compute, encode, receive — with the request
  body serialised once beforehand (the client's JSON library is not timed);
* ``keras``: Keras 3 eager — ``layer(x)`` then ``sum(layer.losses)``, and with a
  persistent ``tf.GradientTape``, each term's gradient wrt kernel, bias and inputs
  and the totals (what the service returns) — run by another
  interpreter that has Keras (``--keras-python``, default /work/kerasenv/bin/python;
  Keras is not a dependency of the service), skipped if it is missing.

    python -m bench.dense_vs_keras [--batch 256] [--features 512] [--units 256] [--repeats 30]
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.common import live_service, medians_ms
from service.core.dense import dense

REGS = {
    "kernel_regularizer": {"type": "l1", "l1": 0.01},
    "bias_regularizer": {"type": "l2", "l2": 0.01},
    "activity_regularizer": {"type": "l1", "l1": 0.01},
}

#: The checkout's root: the Keras interpreter imports bench.keras_dense from it.
REPO = Path(__file__).resolve().parents[1]

KERAS_SCRIPT = """
import json, os, statistics, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, keras, tensorflow as tf
from bench.keras_dense import every_term
a = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
x = rng.normal(size=(a["batch"], a["features"])).astype(np.float32)
k = rng.normal(size=(a["features"], a["units"])).astype(np.float32) * 0.05
b = rng.normal(size=a["units"]).astype(np.float32) * 0.05
layer = keras.layers.Dense(a["units"], activation="relu",
    kernel_regularizer=keras.regularizers.L1(0.01), bias_regularizer=keras.regularizers.L2(0.01),
    activity_regularizer=keras.regularizers.L1(0.01))
layer.build((None, a["features"])); layer.set_weights([k, b])
xt = tf.constant(x)
def values():
    y = layer(xt); return y.numpy(), float(sum(layer.losses))
def grads():
    return every_term(layer, xt)  # the same work as the service (bench/keras_dense.py)
def med(f):
    f(); ts = []
    for _ in range(a["repeats"]):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts)
print(json.dumps({"values": med(values), "gradients": med(grads), "keras": keras.__version__}))
"""


def b64(a: np.ndarray) -> dict[str, Any]:
    return {"shape": list(a.shape), "datatype": "FP32", "b64": base64.b64encode(a.tobytes()).decode()}


def http_timings(x: np.ndarray, k: np.ndarray, b: np.ndarray, repeats: int) -> dict[str, float]:
    body = {"inputs": b64(x), "kernel": b64(k), "bias": b64(b), "activation": "relu", **REGS,
            "encoding": "b64"}
    # serialised once, outside the timing: the client's JSON library is not the service's cost
    raw = {g: json.dumps({**body, "return_gradients": g}).encode() for g in (False, True)}
    headers = {"content-type": "application/json"}
    with live_service() as base, httpx.Client(base_url=base, timeout=60) as client:

        def call(gradients: bool) -> None:
            client.post("/v1/dense", content=raw[gradients], headers=headers).raise_for_status()

        return medians_ms({"values": lambda: call(False), "gradients": lambda: call(True)}, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--features", type=int, default=512)
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--keras-python", default="/work/kerasenv/bin/python")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, args.features)).astype(np.float32)
    k = rng.normal(size=(args.features, args.units)).astype(np.float32) * 0.05
    b = rng.normal(size=args.units).astype(np.float32) * 0.05

    rows: dict[str, dict[str, float]] = {
        "core (in-process)": medians_ms(
            {
                "values": lambda: dense(x, k, b, "relu", **REGS, return_gradients=False),
                "gradients": lambda: dense(x, k, b, "relu", **REGS),
            },
            args.repeats,
        ),
        "service (HTTP, b64)": http_timings(x, k, b, args.repeats),
    }
    keras_version = None
    if Path(args.keras_python).exists():
        shape = {"batch": args.batch, "features": args.features, "units": args.units, "repeats": args.repeats}
        out = subprocess.run([args.keras_python, "-c", KERAS_SCRIPT, json.dumps(shape)],
                             capture_output=True, text=True, check=True, cwd=REPO)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        keras_version = result.pop("keras")
        rows[f"Keras {keras_version} eager"] = {k: seconds * 1e3 for k, seconds in result.items()}

    print(f"Dense({args.units}, relu) on ({args.batch}, {args.features}) float32 with kernel L1, "
          f"bias L2 and activity L1; median of {args.repeats} runs")
    print()
    print("| implementation | values ms | values + gradients ms |")
    print("|---|---:|---:|")
    for name, t in rows.items():
        print(f"| {name} | {t['values']:.2f} | {t['gradients']:.2f} |")
    if keras_version:
        keras = rows[f"Keras {keras_version} eager"]
        for name in ("core (in-process)", "service (HTTP, b64)"):
            print(f"\nKeras / {name}: values {keras['values'] / rows[name]['values']:.1f}x, "
                  f"with gradients {keras['gradients'] / rows[name]['gradients']:.1f}x")


if __name__ == "__main__":
    main()
