"""Chromium for the browser tests and ``scripts/screenshots.py``: the system's Debian
package driven by Playwright (its own browser download is never used), a page that records
every request it makes and every console error, and a served playground to point it at."""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.deploy.server import clean_env, free_port, serve

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWS = ("regularizers", "dense", "seed003", "train", "model")
DESKTOP = {"width": 1280, "height": 800}
NARROW = {"width": 390, "height": 844}


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        return f"{CHROMIUM} is not installed (apt-get install -y chromium; .ci/run does it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


@contextlib.contextmanager
def served(workdir: Path, **settings: str) -> Iterator[str]:
    """``python -m service`` on a free port (``settings``: extra environment variables);
    yields its base URL."""
    port = free_port()
    env = clean_env({"HOST": "127.0.0.1", "PORT": str(port), "PENALTY_LOG_LEVEL": "warning", **settings})
    with serve([sys.executable, "-m", "service"], env, workdir, port) as base:
        yield base


@contextlib.contextmanager
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Watched:
    """A page, the URLs it requested and the console errors it logged."""

    page: Any
    base: str
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    #: HTTP error statuses the test provokes on purpose (Chromium logs each as a console error).
    allowed_statuses: set[int] = field(default_factory=set)

    def outside_requests(self) -> list[str]:
        """Requests to anything but the service's own origin (``data:`` URLs stay in the page)."""
        origin = urlsplit(self.base)
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme != "data"
            and (urlsplit(url).scheme, urlsplit(url).netloc) != (origin.scheme, origin.netloc)
        ]

    def open(self, view: str) -> None:
        """Load ``/playground#view`` and wait until the view has finished its first answer."""
        self.page.goto(f"{self.base}/playground#{view}")
        self.wait(view)

    def wait(self, view: str, timeout: float = 30_000) -> str:
        """Wait until ``view`` is not busy; returns its state (done, error or idle)."""
        self.page.wait_for_function(
            """view => { const s = document.getElementById(view).dataset.state;
                         return s && s !== 'busy'; }""",
            arg=view,
            timeout=timeout,
        )
        return str(self.page.eval_on_selector(f"#{view}", "e => e.dataset.state"))


def watch(chromium: Any, base: str, viewport: dict[str, int] = DESKTOP) -> Watched:
    page = chromium.new_page(viewport=viewport)
    watched = Watched(page, base)
    page.on("request", lambda request: watched.requests.append(request.url))
    page.on(
        "console",
        lambda message: watched.console_errors.append(message.text) if message.type == "error" else None,
    )
    page.on("pageerror", lambda exc: watched.console_errors.append(f"uncaught: {exc}"))
    return watched


# Reading what a page drew, and asking the service the same question.


def values(pw: Watched, selector: str) -> list[float]:
    """The API numbers drawn by the elements matching ``selector`` (their data-value)."""
    return [float(v) for v in pw.page.eval_on_selector_all(selector, "es => es.map(e => e.dataset.value)")]


def cells(pw: Watched, name: str) -> list[float]:
    return values(pw, f'figure.tensor[data-name="{name}"] g.cell')


def text(pw: Watched, selector: str) -> str:
    return str(pw.page.inner_text(selector))


def curl_bodies(pw: Watched, view: str) -> list[Any]:
    """The JSON bodies of the curl commands the view shows."""
    commands = pw.page.eval_on_selector_all(f"#{view} pre.curl", "es => es.map(e => e.textContent)")
    bodies = []
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "curl" and argv[2].startswith(pw.base + "/v1/")
        bodies.append(json.loads(argv[argv.index("-d") + 1]))
    return bodies


def post(api: httpx.Client, path: str, body: Any) -> Any:
    response = api.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


#: The marks of every browser test module: ``pytestmark = BROWSER_MARKS``.
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing())),
]
