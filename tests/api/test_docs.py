"""``/docs`` and ``/redoc`` load nothing from outside: every asset is bundled and served."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import service

STATIC = Path(service.__file__).with_name("static")
ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_page_references_only_local_assets(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    assets = ASSET.findall(html)
    assert assets, "the page loads its scripts"
    for url in assets:
        assert url.startswith("/static/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.content == (STATIC / url.removeprefix("/static/")).read_bytes(), url
    assert "/openapi.json" in html


def test_swagger_ui_page_uses_the_bundled_ui(client: TestClient) -> None:
    html = client.get("/docs").text
    assert '<script src="/static/swagger-ui/swagger-ui-bundle.js"></script>' in html
    assert '<link type="text/css" rel="stylesheet" href="/static/swagger-ui/swagger-ui.css">' in html
    assert '"validatorUrl": null' in html


def test_redoc_page_uses_the_bundled_standalone_script(client: TestClient) -> None:
    html = client.get("/redoc").text
    assert '<script src="/static/redoc/redoc.standalone.js"> </script>' in html
    assert "fonts.googleapis" not in html


def test_docs_honour_a_root_path(app: object) -> None:
    """Behind a proxy that mounts the service under a prefix, the assets are looked up there."""
    with TestClient(app, root_path="/penalty") as client:  # type: ignore[arg-type]
        html = client.get("/docs").text
    assert "/penalty/static/swagger-ui/swagger-ui-bundle.js" in html
    assert "url: '/penalty/openapi.json'" in html


def test_assets_ship_with_their_licences() -> None:
    for name in ("swagger-ui/swagger-ui-bundle.js", "swagger-ui/swagger-ui.css", "swagger-ui/LICENSE",
                 "swagger-ui/NOTICE", "redoc/redoc.standalone.js", "redoc/LICENSE", "README.md"):
        assert (STATIC / name).is_file(), name


def test_openapi_json_is_served(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json()["info"]["title"] == "penalty-service"
