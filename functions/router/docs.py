"""The router's API documentation pages, Swagger UI at `/docs` and ReDoc at `/redoc`,
served with their JavaScript and CSS from the installed `fastapi-offline` package (under
`/docs/assets/`): no page loads anything from another host, so the docs work offline.
Where those assets are not installed (the router's Lambda package carries Python modules
only), both pages are a plain HTML page linking the OpenAPI schema."""

from __future__ import annotations

import html
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS_PATH", "add_docs", "assets_dir", "plain_page"]

DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"
ASSETS_PATH = "/docs/assets"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"


ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def assets_dir() -> Path | None:
    """The directory holding swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js
    and favicon.png; None when they are not installed."""
    try:
        static = Path(str(files("fastapi_offline") / "static"))
    except (ImportError, TypeError):
        return None
    return static if all((static / name).is_file() for name in ASSETS) else None


def plain_page(title: str, openapi_url: str) -> HTMLResponse:
    """The docs page without Swagger UI or ReDoc: a link to the schema."""
    url = html.escape(openapi_url, quote=True)
    return HTMLResponse(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title></head><body><h1>{html.escape(title)}</h1><p>The interactive API docs are "
        f"not installed with this router. The OpenAPI schema is at "
        f"<a href='{url}'>{url}</a>.</p></body></html>"
    )


def add_docs(app: FastAPI, openapi_path: str = "/openapi.json") -> None:
    """Serve `/docs`, `/redoc` and their assets on `app` (built with docs_url=None and
    redoc_url=None)."""
    assets = assets_dir()
    if assets is not None:
        app.mount(ASSETS_PATH, StaticFiles(directory=assets), name="docs-assets")

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        base = root(request)
        if assets is None:
            return plain_page(app.title, base + openapi_path)
        return get_swagger_ui_html(
            openapi_url=base + openapi_path,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=base + OAUTH2_REDIRECT_PATH,
            swagger_js_url=f"{base}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{base}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{base}{ASSETS_PATH}/favicon.png",
            # no validator badge: it would be fetched from validator.swagger.io
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(OAUTH2_REDIRECT_PATH, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_PATH, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        base = root(request)
        if assets is None:
            return plain_page(app.title, base + openapi_path)
        return get_redoc_html(
            openapi_url=base + openapi_path,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{base}{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{base}{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )
