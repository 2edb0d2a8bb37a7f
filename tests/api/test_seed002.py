"""Every seed-002 claim of README.md's "Training" section, on the requests of
scripts/seed002.py, through ``POST /v1/train``; and the README's table is that script's output."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("seed002", ROOT / "scripts" / "seed002.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SEED = _script()


@pytest.fixture(scope="module")
def results(client: TestClient) -> dict[str, dict[str, Any]]:
    def post(body: dict[str, Any]) -> Any:
        r = client.post("/v1/train", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    out: dict[str, dict[str, Any]] = SEED.run_all(post)
    return out


def w(results: dict[str, dict[str, Any]], name: str) -> np.ndarray:
    return np.asarray(SEED.kernel(results[name]), dtype=np.float64).reshape(-1)


def test_the_readme_table_is_the_scripts_output(results: dict[str, dict[str, Any]]) -> None:
    assert SEED.table(results) in (ROOT / "README.md").read_text(encoding="utf-8")


def test_l1_needs_the_proximal_step_for_exact_zeros(results: dict[str, dict[str, Any]]) -> None:
    plain, prox = w(results, "L1"), w(results, "L1 + proximal")
    assert np.count_nonzero(plain == 0) == 0 and np.abs(plain[3:]).max() < 0.01  # small, never 0
    assert np.all(prox[3:] == 0) and np.all(prox[:3] != 0)  # exactly the irrelevant features
    assert results["L1 + proximal"]["history"]["weights"]["dense/kernel"]["sparsity"]["0"][-1] == 5 / 8


def test_duplicated_feature_l2_evens_the_split_l1_keeps_it(results: dict[str, dict[str, Any]]) -> None:
    """Both copies get the same data gradient, so w₁ − w₀ moves only by the penalty:
    L2 multiplies it by (1 − 2·lr·λ) per step; L1 moves it by 2·lr·λ only on steps where
    the copies have opposite signs; no penalty leaves it."""
    _, _, w0 = SEED.data()
    gap0 = w0[1, 0] - w0[0, 0]
    lr = float(np.float32(SEED.LR))
    l2 = w(results, "L2")
    assert l2[1] - l2[0] == pytest.approx(gap0 * (1 - 2 * lr * SEED.L2) ** SEED.EPOCHS, rel=1e-3)
    none = w(results, "none")
    assert none[1] - none[0] == pytest.approx(gap0, rel=1e-4)
    l1 = w(results, "L1")
    moves = ((l1[1] - l1[0]) - gap0) / (2 * lr * SEED.L1)
    assert abs(moves - round(moves)) < 1e-2 and 0 < abs(round(moves)) <= 5  # a few opposite-sign steps
    assert abs(l1[1] - l1[0]) > 0.5 * abs(gap0)  # nowhere near an even split


def test_sgd_l2_and_weight_decay_same_trajectory_adam_not(results: dict[str, dict[str, Any]]) -> None:
    a = results["L2"]["history"]["weights"]["dense/kernel"]["l2"]
    b = results["SGD + weight_decay 2λ"]["history"]["weights"]["dense/kernel"]["l2"]
    np.testing.assert_allclose(a, b, rtol=1e-5)  # FP32 rounding only (FP64: 1e-12, test_conventions.py)
    np.testing.assert_allclose(w(results, "L2"), w(results, "SGD + weight_decay 2λ"), rtol=1e-5, atol=1e-5)
    assert np.max(np.abs(w(results, "Adam + L2") - w(results, "AdamW (wd 2λ)"))) > 0.01


def test_data_versus_regularization_split(results: dict[str, dict[str, Any]]) -> None:
    none, l1 = results["none"]["history"]["losses"], results["L1"]["history"]["losses"]
    assert set(l1) == {"data_loss", "dense/kernel_regularizer", "total"} and set(none) == {"data_loss", "total"}
    assert l1["dense/kernel_regularizer"][-1] > 10 * l1["data_loss"][-1]
    assert l1["data_loss"][-1] > none["data_loss"][-1]
    for k in range(len(l1["total"])):
        assert l1["total"][k] == pytest.approx(l1["data_loss"][k] + l1["dense/kernel_regularizer"][k], rel=1e-6)
