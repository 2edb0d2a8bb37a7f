"""Make the README's playground screenshots with Chromium: ``python scripts/screenshots.py``.

Starts the service, opens each view of ``/playground`` at 1280×800 (and the Dense view at
390 px wide), lets it compute its example, and writes ``docs/screenshots/<view>.png``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser.harness import (  # noqa: E402
    DESKTOP,
    NARROW,
    Watched,
    browser,
    chromium_missing,
    served,
    watch,
)

OUT = ROOT / "docs" / "screenshots"
MODEL = ROOT / "tests" / "browser" / "fixtures" / "dense.keras"
TRAIN_RUNS = ("none", "l1", "l2", "l1prox", "sgd_l2", "sgd_wd", "adam_l2", "adamw")


def shoot(page: Watched, name: str) -> None:
    path = OUT / f"{name}.png"
    page.page.screenshot(path=str(path), full_page=True)
    print(f"wrote {path.relative_to(ROOT)}")


def prepare(page: Watched, view: str) -> str:
    """Open ``view`` and run its example; returns its state (done, error or idle)."""
    page.open(view)
    if view == "train":
        for run in TRAIN_RUNS:
            page.page.check(f"#train-run-{run}")
        page.page.click("#train-run")
        return page.wait(view, timeout=300_000)
    if view == "model":
        page.page.set_input_files("#model-file", str(MODEL))
        page.page.click("#model-run")
        return page.wait(view)
    return page.wait(view)


def main() -> int:
    reason = chromium_missing()
    if reason:
        print(f"cannot take screenshots: {reason}", file=sys.stderr)
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as workdir, served(Path(workdir)) as base, browser() as chromium:
        for view in ("regularizers", "dense", "seed003", "train", "model"):
            page = watch(chromium, base, DESKTOP)
            state = prepare(page, view)
            if state != "done" or page.console_errors or page.outside_requests():
                print(f"{view}: state {state}, console {page.console_errors}, "
                      f"outside {page.outside_requests()}", file=sys.stderr)
                return 1
            shoot(page, view)
            page.page.close()
        narrow = watch(chromium, base, NARROW)
        narrow.open("dense")
        shoot(narrow, "dense-390px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
