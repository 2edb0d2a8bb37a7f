"""``GET /playground`` (the browser playground) and ``GET /`` (a page of links).

The playground is static HTML, CSS and JavaScript in ``service/static/playground``; it
loads nothing from outside the service and calls only the service's own ``/v1`` routes.
Both pages use relative links, so they work under a path prefix (``root_path``) too.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from service import __version__

PLAYGROUND = Path(__file__).resolve().parents[1] / "static" / "playground" / "index.html"

router = APIRouter(include_in_schema=False)

INDEX = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>penalty-service {__version__}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}}</style>
</head>
<body>
<main>
<h1>penalty-service {__version__}</h1>
<p>Keras 3.15's regularization penalties and their gradients, computed exactly as Keras does.</p>
<ul>
<li><a href="playground">Playground</a>: penalties, Dense terms, seed 003 and training runs as pictures</li>
<li><a href="docs">Swagger UI</a>: try every route</li>
<li><a href="redoc">ReDoc</a>: the API reference</li>
<li><a href="openapi.json">openapi.json</a>: the OpenAPI document</li>
</ul>
</main>
</body>
</html>
"""


@router.get("/")
def index() -> HTMLResponse:
    """Links to the playground and the API documentation."""
    return HTMLResponse(INDEX)


@router.get("/playground")
def playground() -> HTMLResponse:
    """The playground's single page (its scripts and styles are under ``/static/playground``)."""
    return HTMLResponse(PLAYGROUND.read_text(encoding="utf-8"))
