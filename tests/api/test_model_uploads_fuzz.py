"""Corrupted .keras uploads (random bytes changed in the archive, or in its HDF5 weights):
every answer is a 200 or a 4xx envelope, never a 500 or a crash."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from tests.reference.vectors import cases

KERAS_FILE = Path(__file__).resolve().parents[1] / "reference" / "keras_files" / "two_inputs.keras"


def test_corrupted_uploads_are_never_server_errors(client: TestClient) -> None:
    case = next(c for c in cases("models") if c["id"] == "two_inputs")
    fields = json.dumps({k: case[k] for k in ("inputs", "targets", "loss")})
    data = KERAS_FILE.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        config, h5 = z.read("config.json"), z.read("model.weights.h5")
    rng = np.random.default_rng(1)
    seen = set()
    for i in range(120):
        if i % 2:
            corrupted = bytearray(h5)
            for _ in range(int(rng.integers(1, 20))):
                corrupted[int(rng.integers(0, len(corrupted)))] = int(rng.integers(0, 256))
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as z:
                z.writestr("config.json", config)
                z.writestr("model.weights.h5", bytes(corrupted))
            upload = buf.getvalue()
        else:
            broken = bytearray(data)
            for _ in range(int(rng.integers(1, 10))):
                broken[int(rng.integers(0, len(broken)))] = int(rng.integers(0, 256))
            upload = bytes(broken)
        r = client.post("/v1/model", files={"model": ("m.keras", upload), "request": (None, fields)})
        assert r.status_code < 500, r.text
        if r.status_code != 200:
            assert set(r.json()["error"]) == {"code", "message", "details"}
        seen.add(r.status_code)
    assert 422 in seen
