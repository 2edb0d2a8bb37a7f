"""``python -m service``: serve the API with uvicorn (HOST/PORT from the environment)."""

from __future__ import annotations

import os

import uvicorn


def main() -> None:
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8000")),
    )


if __name__ == "__main__":
    main()
