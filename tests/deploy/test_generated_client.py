"""Generate a Python client from openapi/openapi.json with openapi-python-client, import it
from a temporary folder (nothing is installed or committed), and call the live server
through it: /v1/penalty, /v1/dense and /v1/network, checked against the seed (4.8) and the
Keras 3.15.1 reference vectors.  Generation runs with the generator's defaults, and the
model names it derives from operation ids and schema titles are asserted to read well.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tests.deploy import server
from tests.reference import vectors

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "penalty_client"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def pc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The generated package, importable as `penalty_client` for this module only."""
    out = tmp_path_factory.mktemp("client")
    done = subprocess.run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path", str(ROOT / "openapi" / "openapi.json"),
            "--output-path", str(out / PACKAGE),
            "--meta", "none",
        ],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def client(pc: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    port = server.free_port()
    argv = [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port)]
    cwd = tmp_path_factory.mktemp("server")
    env = server.clean_env({"PYTHONPATH": str(ROOT)})
    with server.serve(argv, env, cwd, port) as base, pc.Client(base_url=base, timeout=30) as c:
        yield c


def test_generated_names_read_well(pc: ModuleType) -> None:
    models = importlib.import_module(f"{PACKAGE}.models")
    api = importlib.import_module(f"{PACKAGE}.api")
    for name in ("PenaltyRequest", "DenseResponse", "ParameterGradients", "TermGradients",
                 "WeightGradients", "LossName", "ErrorResponse"):
        assert hasattr(models, name), name
    assert not [n for n in dir(models) if "Type0" in n or "AdditionalProperty" in n]
    operations = {
        f"{tag.name}.{op.name}"
        for tag in pkgutil.iter_modules(api.__path__)
        for op in pkgutil.iter_modules([str(Path(api.__path__[0]) / tag.name)])
    }
    assert operations == {
        "penalties.compute_penalty", "penalties.compute_penalties", "layers.dense_forward",
        "layers.network_forward", "discovery.list_regularizers", "discovery.list_activations",
        "discovery.list_losses", "operations.liveness", "operations.readiness", "models.model_forward",
        "training.optimizer_step", "training.train", "discovery.list_conventions",
        "discovery.list_optimizers",
    }


def _case(family: str, case_id: str) -> dict[str, Any]:
    (case,) = [c for c in vectors.cases(family) if c["id"] == case_id]
    return case


def _array(tensor: Any) -> np.ndarray:
    """A generated TensorOut model as an ndarray."""
    return vectors.tensor(tensor.to_dict())


def test_penalty_of_the_seed_is_4_8(client: Any) -> None:
    from penalty_client.api.penalties import compute_penalty
    from penalty_client.models import (
        Datatype,
        L1Regularizer,
        PenaltyRequest,
        PenaltyResponse,
        TensorWithData,
    )

    body = PenaltyRequest(
        tensor=TensorWithData(data=[3.0] * 16, shape=[2, 2, 4], datatype=Datatype.FP32),
        regularizer=L1Regularizer(type_="l1", l1=0.1),
    )
    result = compute_penalty.sync(client=client, body=body)
    assert isinstance(result, PenaltyResponse)
    assert result.penalty == pytest.approx(4.8, rel=1e-6)
    assert isinstance(result.regularizer, L1Regularizer) and result.regularizer.l1 == 0.1
    np.testing.assert_allclose(_array(result.gradient), np.full((2, 2, 4), 0.1), rtol=1e-6)


def test_errors_arrive_as_the_error_model(client: Any) -> None:
    from penalty_client.api.penalties import compute_penalty
    from penalty_client.models import ErrorResponse, OrthogonalRegularizer, PenaltyRequest

    body = PenaltyRequest(
        tensor=[[[1.0, 2.0]]], regularizer=OrthogonalRegularizer(type_="orthogonal")
    )
    response = compute_penalty.sync_detailed(client=client, body=body)
    assert response.status_code == 400
    assert isinstance(response.parsed, ErrorResponse)
    assert response.parsed.error.code and "rank" in response.parsed.error.message


def test_dense_matches_keras(client: Any) -> None:
    from penalty_client.api.layers import dense_forward
    from penalty_client.models import (
        ActivityNormalization,
        DenseRequest,
        DenseResponse,
        L1Regularizer,
        L2Regularizer,
    )

    case = _case("dense", "seed_dense3_l1_l2_l1_ones_2x2x4_times3")
    request = case["request"]
    body = DenseRequest(
        inputs=vectors.tensor(request["inputs"]).tolist(),
        kernel=vectors.tensor(request["kernel"]).tolist(),
        bias=vectors.tensor(request["bias"]).tolist(),
        kernel_regularizer=L1Regularizer(type_="l1", l1=0.1),
        bias_regularizer=L2Regularizer(type_="l2", l2=0.1),
        activity_regularizer=L1Regularizer(type_="l1", l1=0.1),
        activity_normalization=ActivityNormalization.BATCH,
    )
    result = dense_forward.sync(client=client, body=body)
    assert isinstance(result, DenseResponse)
    expected = case["expected"]
    np.testing.assert_allclose(
        _array(result.outputs), vectors.tensor(expected["outputs"]), rtol=1e-6
    )
    assert result.losses.to_dict() == pytest.approx(expected["losses"], rel=1e-6)
    assert [
        result.losses[k] for k in ("activity_regularizer", "kernel_regularizer", "bias_regularizer")
    ] == (pytest.approx(case["keras_layer_losses"], rel=1e-6))
    for parameter, terms in expected["gradients"].items():
        for term, tensor in terms.items():
            got = _array(result.gradients[parameter][term])
            np.testing.assert_allclose(got, vectors.tensor(tensor), rtol=1e-5, atol=1e-7)


def test_network_matches_keras(client: Any) -> None:
    from penalty_client.api.layers import network_forward
    from penalty_client.models import NetworkRequest, NetworkResponse

    case = _case("network", "seed003_leaky_relu_hidden_activity_l1_mse")
    result = network_forward.sync(client=client, body=NetworkRequest.from_dict(case["request"]))
    assert isinstance(result, NetworkResponse)
    expected = case["expected"]
    np.testing.assert_allclose(
        _array(result.outputs), vectors.tensor(expected["outputs"]), rtol=1e-5, atol=1e-7
    )
    assert result.losses.to_dict() == pytest.approx(expected["losses"], rel=1e-5)
    assert set(result.gradients.to_dict()) == set(expected["gradients"])
    for parameter, terms in expected["gradients"].items():
        assert set(result.gradients[parameter].to_dict()) == set(terms)
        for term, tensor in terms.items():
            got = _array(result.gradients[parameter][term])
            np.testing.assert_allclose(got, vectors.tensor(tensor), rtol=1e-5, atol=1e-6)
