"""The playground on a service run with ``PENALTY_API_KEYS``: the page itself loads without a
key, its API calls need the one typed in its header, and the curl it shows names the key's
shell variable, never the key."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser.harness import BROWSER_MARKS, served, text, values, watch

pytestmark = BROWSER_MARKS
KEY = "playground-test-key"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with served(tmp_path_factory.mktemp("keyed-server"), PENALTY_API_KEYS=KEY) as base:
        yield base


def test_the_page_sends_the_typed_key_and_shows_only_its_variable(chromium: Any, keyed: str) -> None:
    pw = watch(chromium, keyed)
    try:
        pw.open("regularizers")  # the page loads without a key; its first computation is refused
        assert pw.page.eval_on_selector("#regularizers", "e => e.dataset.state") == "error"
        assert "unauthorized" in text(pw, '#regularizers [data-error-for="*"]').lower() or \
            "key" in text(pw, '#regularizers [data-error-for="*"]').lower()
        pw.page.fill("#api-key", KEY)
        pw.page.click("#reg-run")
        assert pw.wait("regularizers") == "done"
        command = pw.page.eval_on_selector("#regularizers pre.curl", "e => e.textContent")
        assert KEY not in command
        argv = shlex.split(command.replace("$PENALTY_API_KEY", KEY))
        headers = [argv[i + 1] for i, a in enumerate(argv) if a == "-H"]
        body = argv[argv.index("-d") + 1]
        assert f"X-API-Key: {KEY}" in headers
        answer = httpx.post(f"{keyed}/v1/penalty", content=body,
                            headers={"content-type": "application/json", "x-api-key": KEY}).json()
        assert values(pw, '#regularizers [data-name="penalty"]') == [answer["penalty"]]
        assert not pw.outside_requests()
        assert all(" 401 " in e or "status of 401" in e for e in pw.console_errors), pw.console_errors
    finally:
        pw.page.close()
