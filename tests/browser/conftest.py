"""Fixtures for the browser tests: one served playground and one Chromium per session, and
per test a page whose every request must stay on the service's origin and whose console
must stay free of errors. Each test leaves a screenshot in ``tests/browser/artifacts``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.harness import Watched, browser, chromium_missing, served, watch

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
#: What Chromium logs for a response with an error status; a test that provokes one allows it.
HTTP_ERROR_LOG = re.compile(r"^Failed to load resource: the server responded with a status of (\d+)")


@pytest.fixture(scope="session")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    reason = chromium_missing()
    if reason:
        pytest.skip(reason)
    with served(tmp_path_factory.mktemp("playground-server")) as url:
        yield url


@pytest.fixture(scope="session")
def chromium(base: str) -> Iterator[Any]:
    with browser() as launched:
        yield launched


@pytest.fixture(scope="session")
def api(base: str) -> Iterator[httpx.Client]:
    """An independent client for the same server: what the page draws is compared with it."""
    with httpx.Client(base_url=base, timeout=60) as client:
        yield client


@pytest.fixture
def pw(chromium: Any, base: str, request: pytest.FixtureRequest) -> Iterator[Watched]:
    """A watched page; ``pw.allowed_statuses`` lists HTTP error statuses the test provokes."""
    watched = watch(chromium, base, getattr(request, "param", None) or {"width": 1280, "height": 800})
    try:
        yield watched
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.name)
        try:
            watched.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        finally:
            watched.page.close()
    errors = [
        text
        for text in watched.console_errors
        if not (
            (m := HTTP_ERROR_LOG.match(text)) and int(m.group(1)) in watched.allowed_statuses
        )
    ]
    assert not watched.outside_requests(), f"requests left the service: {watched.outside_requests()}"
    assert not errors, f"console errors: {errors}"
