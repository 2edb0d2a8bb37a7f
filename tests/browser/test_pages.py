"""``/`` and ``/playground`` without a browser: the links, and that every file the
playground loads is a file of the package, served from the service itself."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

import service

PLAYGROUND = Path(service.__file__).with_name("static") / "playground"
ASSET = re.compile(r"""(?:src|href)=["']([^"'#]+)["']""")
IMPORT = re.compile(r"""from\s+["'](\./[\w.]+)["']""")
URL = re.compile(r"""(?:https?:)?//[\w-]+\.[\w.-]+""")
#: The only absolute URL in the sources: SVG's XML namespace, a name, never fetched.
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def test_root_links_the_playground_and_the_docs(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    links = re.findall(r'href="([^"]+)"', response.text)
    assert links == ["playground", "docs", "redoc", "openapi.json"]
    for link in links:
        assert client.get("/" + link).status_code == 200, link


def test_playground_is_the_packaged_page(client: TestClient) -> None:
    response = client.get("/playground")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == (PLAYGROUND / "index.html").read_text(encoding="utf-8")


def test_every_asset_is_served_from_the_package(client: TestClient) -> None:
    html = client.get("/playground").text
    assets = [a for a in ASSET.findall(html) if a.startswith("static/")]
    assert "static/playground/style.css" in assets and "static/playground/js/main.js" in assets
    modules = [a for a in assets if a.endswith(".js")]
    seen: set[str] = set()
    while modules:
        asset = modules.pop()
        if asset in seen:
            continue
        seen.add(asset)
        response = client.get("/" + asset)
        assert response.status_code == 200, asset
        folder = asset.rsplit("/", 1)[0]
        modules += [f"{folder}/{name[2:]}" for name in IMPORT.findall(response.text)]
    assert {a.rsplit("/", 1)[1] for a in seen} == {p.name for p in (PLAYGROUND / "js").glob("*.js")}
    for asset in assets:
        assert client.get("/" + asset).status_code == 200, asset


def test_no_source_names_an_outside_address() -> None:
    for path in PLAYGROUND.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8").replace(SVG_NAMESPACE, "")
            assert not URL.findall(text), f"{path.name}: {URL.findall(text)}"


def test_readme_links_the_playground_and_its_screenshots() -> None:
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert "http://127.0.0.1:8000/playground" in readme
    images = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", readme)
    assert {"docs/screenshots/regularizers.png", "docs/screenshots/dense.png",
            "docs/screenshots/seed003.png"} <= set(images)
    for image in images:
        assert (root / image).read_bytes().startswith(b"\x89PNG"), image
