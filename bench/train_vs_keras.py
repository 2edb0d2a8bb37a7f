"""A training run: the service's loop in-process and over HTTP vs Keras ``model.fit``.

Same data, weights, regularizers (kernel L2 and activity L1 on the hidden layer, kernel L1
on the output), Adam, MSE, float32, ``shuffle=False``:

* ``core``: ``service.core.training.train`` in-process (every term and gradient norm
  recorded at every step: more work than ``fit`` does);
* ``http``: ``POST /v1/train`` (JSON answer, b64 tensors) through a real uvicorn;
* ``keras``: ``model.fit(x, t, batch_size, epochs, shuffle=False, verbose=0)`` (compiled
  once; each timed call continues training) in another interpreter that has Keras
  (``--keras-python``), skipped if it is missing.

    python -m bench.train_vs_keras [--samples 1024] [--features 32] [--units 64]
        [--batch 32] [--epochs 5] [--repeats 7]
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
from service.core import optimizers
from service.core.network import LayerSpec
from service.core.training import TrainConfig, steps_per_epoch, train

KERAS_SCRIPT = """
import json, os, statistics, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, keras
a = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
x = rng.normal(size=(a["samples"], a["features"])).astype(np.float32)
t = (x[:, :1] * 2 - x[:, 1:2]).astype(np.float32)
k1 = (rng.normal(size=(a["features"], a["units"])) * 0.1).astype(np.float32)
k2 = (rng.normal(size=(a["units"], 1)) * 0.1).astype(np.float32)
inp = keras.Input((a["features"],))
d1 = keras.layers.Dense(a["units"], activation="tanh", kernel_regularizer=keras.regularizers.L2(0.001),
                        activity_regularizer=keras.regularizers.L1(0.001))
d2 = keras.layers.Dense(1, kernel_regularizer=keras.regularizers.L1(0.001))
model = keras.Model(inp, d2(d1(inp)))
d1.set_weights([k1, np.zeros(a["units"], np.float32)]); d2.set_weights([k2, np.zeros(1, np.float32)])
model.compile(optimizer=keras.optimizers.Adam(0.001), loss="mse")
def fit():
    model.fit(x, t, batch_size=a["batch"], epochs=a["epochs"], shuffle=False, verbose=0)
fit(); ts = []
for _ in range(a["repeats"]):
    t0 = time.perf_counter(); fit(); ts.append(time.perf_counter() - t0)
print(json.dumps({"run": statistics.median(ts), "keras": keras.__version__}))
"""


def data(a: argparse.Namespace) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(a.samples, a.features)).astype(np.float32)
    t = (x[:, :1] * 2 - x[:, 1:2]).astype(np.float32)
    k1 = (rng.normal(size=(a.features, a.units)) * 0.1).astype(np.float32)
    k2 = (rng.normal(size=(a.units, 1)) * 0.1).astype(np.float32)
    return x, t, k1, k2


def b64(a: np.ndarray) -> dict[str, Any]:
    return {"shape": list(a.shape), "datatype": "FP32", "b64": base64.b64encode(a.tobytes()).decode()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("samples", 1024), ("features", 32), ("units", 64), ("batch", 32), ("epochs", 5),
                          ("repeats", 7)):
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--keras-python", default="/work/kerasenv/bin/python")
    args = parser.parse_args()
    x, t, k1, k2 = data(args)
    zeros1, zeros2 = np.zeros(args.units, np.float32), np.zeros(1, np.float32)
    layers = [LayerSpec(kernel=k1, bias=zeros1, activation="tanh", kernel_regularizer={"type": "l2", "l2": 0.001},
                        activity_regularizer={"type": "l1", "l1": 0.001}),
              LayerSpec(kernel=k2, bias=zeros2, kernel_regularizer={"type": "l1", "l1": 0.001})]
    cfg = TrainConfig(x, t, layers, "mse", optimizers.get({"name": "adam", "learning_rate": 0.001}),
                      epochs=args.epochs, batch_size=args.batch)
    body = {"inputs": b64(x), "targets": b64(t), "loss": "mse", "optimizer": {"name": "adam", "learning_rate": 0.001},
            "epochs": args.epochs, "batch_size": args.batch, "encoding": "b64",
            "layers": [{"kernel": b64(k1), "bias": b64(zeros1), "activation": "tanh",
                        "kernel_regularizer": {"type": "l2", "l2": 0.001},
                        "activity_regularizer": {"type": "l1", "l1": 0.001}},
                       {"kernel": b64(k2), "bias": b64(zeros2), "kernel_regularizer": {"type": "l1", "l1": 0.001}}]}
    raw = json.dumps(body).encode()
    with live_service() as base, httpx.Client(base_url=base, timeout=300) as client:

        def http() -> None:
            client.post("/v1/train", content=raw, headers={"content-type": "application/json"}).raise_for_status()

        rows = medians_ms({"core (in-process)": lambda: train(cfg), "service (HTTP)": http}, args.repeats)
    if Path(args.keras_python).exists():
        shape = {k: getattr(args, k) for k in ("samples", "features", "units", "batch", "epochs", "repeats")}
        out = subprocess.run([args.keras_python, "-c", KERAS_SCRIPT, json.dumps(shape)],
                             capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        rows[f"Keras {result['keras']} fit"] = result["run"] * 1e3
    steps = args.epochs * steps_per_epoch(args.samples, args.batch)
    print(f"Dense({args.units}, tanh) → Dense(1) on ({args.samples}, {args.features}) float32, batch "
          f"{args.batch}, {args.epochs} epochs = {steps} Adam steps; median of {args.repeats} runs")
    print()
    print("| implementation | run ms | per step ms |")
    print("|---|---:|---:|")
    for name, ms in rows.items():
        print(f"| {name} | {ms:.1f} | {ms / steps:.3f} |")


if __name__ == "__main__":
    main()
