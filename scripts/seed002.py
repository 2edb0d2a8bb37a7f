"""Seed 002 reproduced with real responses of ``POST /v1/train``.

One synthetic regression: ``y = 2·x0 + x2 + noise`` where ``x1`` is an exact copy of
``x0`` (a duplicated feature) and ``x3..x7`` are irrelevant.  One linear Dense layer,
the same initial weights, full-batch steps; the runs differ only in the regularizer or
the optimizer:

    python scripts/seed002.py                 # in-process app; prints the README table
    python scripts/seed002.py --url http://127.0.0.1:8000 --png docs/img/seed002.png

The table goes into README.md ("Training"); the PNG is committed beside it.
tests/api/test_seed002.py runs the same requests and asserts every claim the README makes.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

FEATURES, SAMPLES, EPOCHS, LR = 8, 200, 300, 0.05
L1, L2 = 0.05, 0.05


def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(SAMPLES, FEATURES))
    x[:, 1] = x[:, 0]  # the duplicated feature
    y = 2 * x[:, :1] + x[:, 2:3] + 0.1 * rng.normal(size=(SAMPLES, 1))
    w0 = rng.normal(size=(FEATURES, 1)) * 0.5
    return x, y, w0


def request(regularizer: dict[str, Any] | None, optimizer: dict[str, Any], *, proximal: bool = False) -> dict[str, Any]:
    x, y, w0 = data()
    layer: dict[str, Any] = {"kernel": w0.tolist(), "bias": [0.0]}
    if regularizer:
        layer["kernel_regularizer"] = regularizer
    return {"layers": [layer], "inputs": x.tolist(), "targets": y.tolist(), "loss": "mse",
            "optimizer": optimizer, "epochs": EPOCHS, "batch_size": SAMPLES, "l1_proximal": proximal,
            "record": {"every": 1, "sparsity_tolerances": [0.0, 0.001, 0.01]}}


SGD = {"name": "sgd", "learning_rate": LR}
ADAM = {"name": "adam", "learning_rate": 0.01}
#: name -> request; the pairs at the end are compared with each other.
RUNS: dict[str, dict[str, Any]] = {
    "none": request(None, SGD),
    "L1": request({"type": "l1", "l1": L1}, SGD),
    "L2": request({"type": "l2", "l2": L2}, SGD),
    "L1 + proximal": request({"type": "l1", "l1": L1}, SGD, proximal=True),
    "SGD + weight_decay 2λ": request(None, {**SGD, "weight_decay": 2 * L2, "exclude_from_weight_decay": ["bias"]}),
    "Adam + L2": request({"type": "l2", "l2": L2}, ADAM),
    "AdamW (wd 2λ)": request(None, {"name": "adamw", "learning_rate": 0.01, "weight_decay": 2 * L2,
                                    "exclude_from_weight_decay": ["bias"]}),
}


def run_all(post: Any) -> dict[str, dict[str, Any]]:
    """``post(body) -> response JSON`` for every run."""
    return {name: post(body) for name, body in RUNS.items()}


def kernel(result: dict[str, Any]) -> np.ndarray:
    w = result["weights"]["dense/kernel"]
    return np.asarray(w["data"], dtype=np.float32 if w["datatype"] == "FP32" else np.float64).reshape(w["shape"])


def table(results: dict[str, dict[str, Any]]) -> str:
    rows = ["| run | data loss | regularization | w₀, w₁ (duplicated) | w₂ (true 1) | "
            "max \\|w\\| irrelevant | exact zeros | \\|w\\| ≤ 0.01 |",
            "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        w = kernel(r).reshape(-1)
        h = r["history"]["losses"]
        reg = sum(v[-1] for k, v in h.items() if k not in ("data_loss", "total"))
        sp = r["history"]["weights"]["dense/kernel"]["sparsity"]
        rows.append(f"| {name} | {h['data_loss'][-1]:.4f} | {reg:.4f} | {w[0]:.3f}, {w[1]:.3f} | {w[2]:.3f} | "
                    f"{np.abs(w[3:]).max():.4f} | {round(sp['0'][-1] * FEATURES)} of 8 | "
                    f"{round(sp['0.01'][-1] * FEATURES)} of 8 |")
    return "\n".join(rows)


def plot(results: dict[str, dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name in ("none", "L1", "L2", "L1 + proximal"):
        h = results[name]["history"]
        axes[0].plot(h["step"], h["losses"]["data_loss"], label=f"{name}: data")
        reg = [k for k in h["losses"] if k not in ("data_loss", "total")]
        for k in reg:
            axes[0].plot(h["step"], h["losses"][k], "--", label=f"{name}: {k.split('/')[1]}")
        axes[1].plot(h["step"], h["weights"]["dense/kernel"]["sparsity"]["0"], label=name)
    axes[0].set_yscale("log")
    axes[0].set_title("data loss vs regularization loss (SGD)")
    axes[1].set_title("fraction of kernel weights exactly 0")
    for name in ("L2", "SGD + weight_decay 2λ", "Adam + L2", "AdamW (wd 2λ)"):
        h = results[name]["history"]
        axes[2].plot(h["step"], h["weights"]["dense/kernel"]["l2"], label=name,
                     linestyle=":" if "weight_decay" in name else "-")
    axes[2].set_title("‖kernel‖₂: SGD L2 ≡ weight decay; Adam+L2 ≠ AdamW")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running service (default: the app in-process)")
    parser.add_argument("--png", help="write the plot here")
    args = parser.parse_args()
    if args.url:
        import httpx

        def post(body: dict[str, Any]) -> Any:
            return httpx.post(args.url.rstrip("/") + "/v1/train", json=body, timeout=120).json()
    else:
        from fastapi.testclient import TestClient

        from service.app import create_app

        client = TestClient(create_app())

        def post(body: dict[str, Any]) -> Any:
            r = client.post("/v1/train", json=body)
            r.raise_for_status()
            return r.json()

    results = run_all(post)
    print(table(results))
    same = np.max(np.abs(kernel(results["L2"]) - kernel(results["SGD + weight_decay 2λ"])))
    differ = np.max(np.abs(kernel(results["Adam + L2"]) - kernel(results["AdamW (wd 2λ)"])))
    print(json.dumps({"max |Δw| SGD L2 vs weight decay": float(same),
                      "max |Δw| Adam+L2 vs AdamW": float(differ)}))
    if args.png:
        plot(results, args.png)


if __name__ == "__main__":
    main()
