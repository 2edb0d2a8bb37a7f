"""Shared fixtures: the app built from explicit test settings, and clients for it.

Settings are passed to ``create_app`` (never patched); every limit is given explicitly so
that ``PENALTY_*`` variables in a developer's shell cannot change what the tests see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings

#: The defaults of ``Settings``, restated so that the environment cannot leak in.
TEST_LIMITS: dict[str, Any] = {
    "max_body_bytes": 64 * 1024 * 1024,
    "max_tensor_elements": 1 << 24,
    "max_request_elements": 1 << 25,
    "max_layers": 64,
    "max_nesting_depth": 32,
    "max_train_work": 20_000_000_000,
    "max_train_steps": 100_000,
    "max_train_seconds": 60.0,
    "max_train_history": 4_000_000,
    "log_level": "warning",
}


def make_settings(**overrides: Any) -> Settings:
    return Settings(**{**TEST_LIMITS, **overrides})


@pytest.fixture(scope="session")
def settings() -> Settings:
    return make_settings()


@pytest.fixture(scope="session")
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture(scope="session")
def client(app: FastAPI) -> Iterator[TestClient]:
    """A client that raises any server-side exception (so a 500 can never pass unnoticed)."""
    with TestClient(app, raise_server_exceptions=True) as test_client:
        yield test_client


@pytest.fixture
def make_client() -> Iterator[Callable[..., TestClient]]:
    """``make_client(max_body_bytes=100)``: a client for an app with some settings changed."""
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        test_client = TestClient(create_app(make_settings(**overrides)), raise_server_exceptions=True)
        clients.append(test_client.__enter__())
        return test_client

    yield make
    for test_client in clients:
        test_client.__exit__(None, None, None)
