"""``python -m service [--host H] [--port P] [--workers N] [--log-level L]``: serve with uvicorn.

Defaults come from the settings (``PENALTY_*``, ``HOST``/``PORT``); the flags override
them.  Each worker builds its app with ``create_app()`` (uvicorn's factory mode), so
``--workers`` > 1 works.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import get_args

import uvicorn

from service.config import LogLevel, get_settings


def main(argv: Sequence[str] | None = None) -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=settings.host, help=f"default {settings.host}")
    parser.add_argument("--port", type=int, default=settings.port, help=f"default {settings.port}")
    parser.add_argument("--workers", type=int, default=settings.workers, help=f"default {settings.workers}")
    parser.add_argument("--log-level", default=settings.log_level, choices=get_args(LogLevel))
    args = parser.parse_args(argv)
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
    )


if __name__ == "__main__":
    main()
