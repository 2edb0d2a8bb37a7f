"""``python -m service [--host H] [--port P] [--workers N] [--log-level L]``: serve with uvicorn.

Defaults come from the settings (``PENALTY_*``, ``HOST``/``PORT``); the flags override
them and are validated by the same model, so a bad flag or variable exits with status 2
and one line naming it.  Each worker builds its app with ``create_app()`` (uvicorn's
factory mode, reading the environment, where the flags are written first), so
``--workers`` > 1 works; Prometheus metrics are then kept in multiprocess mode (see
:func:`service.observability.prepare_metrics_dir`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from pydantic import ValidationError

#: flag -> setting field
FLAGS = {"--host": "host", "--port": "port", "--workers": "workers", "--log-level": "log_level"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def main(argv: Sequence[str] | None = None) -> None:
    from service.runtime import prepare_blas_environment

    prepare_blas_environment()  # before anything loads NumPy (and OpenBLAS), here and in the workers
    from service.config import describe_error, settings_from, unknown_variables

    parser = _Parser(prog="python -m service", description=__doc__.splitlines()[0])
    for flag, field in FLAGS.items():
        parser.add_argument(flag, dest=field, metavar=field.upper(), help=f"overrides PENALTY_{field.upper()}")
    args = vars(parser.parse_args(argv))
    try:
        settings = settings_from(args)
    except ValidationError as exc:
        flags = {field: flag for flag, field in FLAGS.items() if args.get(field) is not None}
        parser.exit(2, f"{parser.prog}: {describe_error(exc, flags)}\n")
    for name in unknown_variables():
        print(f"{parser.prog}: warning: {name} is not a setting (ignored); see README 'Operating it'",
              file=sys.stderr)
    # The workers read the environment: the flags go there first.
    for field, value in args.items():
        if value is not None:
            os.environ[f"PENALTY_{field.upper()}"] = str(getattr(settings, field))
    serve(settings)


def serve(settings: object) -> None:
    """Run uvicorn as ``uvicorn.run`` would, with :class:`service.server.ServiceConfig`
    (uvicorn's config plus the header-block bound) and its httptools-based protocol."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from service.config import Settings
    from service.observability import log_config, prepare_metrics_dir
    from service.server import ServiceConfig, ServiceProtocol

    assert isinstance(settings, Settings)
    prepare_metrics_dir(settings.workers)
    config = ServiceConfig(
        "service.app:create_app",
        max_header_bytes=settings.max_header_bytes,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        log_config=log_config(settings),
        access_log=not settings.log_json,
        http=ServiceProtocol,
        limit_concurrency=settings.limit_concurrency,
        timeout_keep_alive=settings.timeout_keep_alive,
        timeout_graceful_shutdown=settings.timeout_graceful_shutdown,
        server_header=False,
    )
    server = uvicorn.Server(config)
    try:
        if config.workers > 1:
            Multiprocess(config, sockets=[config.bind_socket()]).run()
        else:
            server.run()
    except KeyboardInterrupt:
        pass
    if config.workers == 1 and not server.started:
        sys.exit(STARTUP_FAILURE)

if __name__ == "__main__":
    main()
