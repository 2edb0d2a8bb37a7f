"""Write the OpenAPI document the app serves to ``openapi/openapi.json`` (``make openapi``).

``tests/contract/test_openapi.py`` fails when the committed file differs from the live
spec, so run this after changing a route or a schema.  ``--check`` only compares.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from service.app import create_app
from service.config import Settings

TARGET = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"


def render() -> str:
    """The live spec as the committed file holds it (default settings: nothing from the environment)."""
    spec = create_app(Settings.model_construct()).openapi()
    return json.dumps(spec, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET} is out of date: run `make openapi`", file=sys.stderr)
            return 1
        return 0
    TARGET.parent.mkdir(exist_ok=True)
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(Path.cwd()) if TARGET.is_relative_to(Path.cwd()) else TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
