"""`/docs` (Swagger UI) and `/redoc` work offline: every asset comes from the router."""

from __future__ import annotations

import re

import httpx
import pytest

from mpfn.functions.router.asgi import create_app
from mpfn.functions.router.docs import plain_page
from mpfn.store import LocalStore
from tests.router.conftest import settings

EXTERNAL = re.compile(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", re.IGNORECASE)
ASSET = re.compile(r"""(?:src|href)="([^"]+)\"""")


@pytest.mark.parametrize("root", ["", "/api"])
async def test_docs_pages_and_assets_are_local(store: LocalStore, root: str) -> None:
    app = create_app(store, settings=settings(auth="keys"))  # the docs stay open
    transport = httpx.ASGITransport(app=app, root_path=root)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
            for page, expected in (
                ("/docs", "swagger-ui-bundle.js"),
                ("/redoc", "redoc.standalone.js"),
            ):
                r = await client.get(root + page)
                assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
                html = r.text
                assert not EXTERNAL.search(html), EXTERNAL.search(html)
                assert f"'{root}/openapi.json'" in html or f'"{root}/openapi.json"' in html
                assets = ASSET.findall(html)
                assert any(a.endswith(expected) for a in assets), assets
                for asset in assets:
                    assert asset.startswith(f"{root}/docs/assets/"), asset
                    served = await client.get(asset)
                    assert served.status_code == 200, asset
                    assert len(served.content) > 1000, asset
            assert (await client.get(root + "/openapi.json")).status_code == 200
            assert (await client.get(root + "/docs/oauth2-redirect")).status_code == 200
    finally:
        await app.runtime.stop()


def test_plain_page_without_assets_links_the_schema_only() -> None:
    page = bytes(plain_page("mpfn router", "/api/openapi.json").body).decode()
    assert "href='/api/openapi.json'" in page and not EXTERNAL.search(page)
