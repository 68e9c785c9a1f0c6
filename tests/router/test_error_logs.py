"""Every answer of the router that is not 2xx is logged once at WARNING: method, path,
status, the error's message and the route reason; never a key or a query string."""

from __future__ import annotations

import logging

import httpx
import pytest

from mpfn.auth import issue_key
from mpfn.demo import demo_model_version
from mpfn.functions.router.asgi import create_app
from mpfn.state import Documents
from mpfn.store import LocalStore
from tests.router.backend import Backend
from tests.router.conftest import make_pool, seed, settings


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "mpfn.router" and r.levelno == logging.WARNING
    ]


async def test_error_answers_are_logged(
    store: LocalStore, backends: tuple[Backend, Backend], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = backends
    b.status = 400  # the backend's own error, relayed
    seed(
        store,
        models=[demo_model_version(), demo_model_version(name="other")],
        pools=[
            make_pool("pa", a.url, models=["demo"]),
            make_pool("pb", b.url, models=["other"]),
            make_pool("dead", "http://127.0.0.1:9", models=["ghost"]),
        ],
    )
    plaintext, doc = issue_key("demo-only", models=["demo"])
    Documents(store).upsert(doc.key, doc)
    app = create_app(store, settings=settings(auth="keys"))
    auth = {"Authorization": f"Bearer {plaintext}"}
    caplog.set_level(logging.WARNING, logger="mpfn.router")
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
            ok = await client.post("/v2/models/demo/infer", content=b"{}", headers=auth)
            assert ok.status_code == 200
            assert warnings(caplog) == []  # 2xx answers are not logged
            answers = [
                await client.get("/v2/models/demo?api_key=sneaky"),  # 401, no key
                await client.post("/v2/models/other/infer", content=b"{}", headers=auth),  # 403
                await client.get("/v1/nowhere", headers=auth),  # 404
                await client.get("/v2/models/demo", headers={"Authorization": "Bearer x_y"}),
            ]
            assert [r.status_code for r in answers] == [401, 403, 404, 401]
        lines = warnings(caplog)
        assert len(lines) == 4, lines
        assert lines[0].startswith("GET /v2/models/demo -> 401: missing API key")
        assert lines[1].startswith("POST /v2/models/other/infer -> 403: API key 'demo-only'")
        assert "(route: rejected: model outside the API key's scope)" in lines[1]
        assert lines[2].startswith("GET /v1/nowhere -> 404: Invalid URL (GET /v1/nowhere)")
        assert lines[3].startswith("GET /v2/models/demo -> 401: ")
        for line in lines:
            assert plaintext not in line and plaintext.split("_")[-1] not in line
            assert "sneaky" not in line and "x_y" not in line and "\n" not in line
    finally:
        await app.runtime.stop()


async def test_routed_failures_are_logged_with_their_reason(
    store: LocalStore, backends: tuple[Backend, Backend], caplog: pytest.LogCaptureFixture
) -> None:
    a, _ = backends
    a.status = 422
    seed(
        store,
        models=[demo_model_version(), demo_model_version(name="ghost")],
        pools=[
            make_pool("pa", a.url, models=["demo"]),
            make_pool("dead", "http://127.0.0.1:9", models=["ghost"]),
        ],
    )
    app = create_app(store, settings=settings())
    caplog.set_level(logging.WARNING, logger="mpfn.router")
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
            relayed = await client.post("/v2/models/demo/infer", content=b"{}")
            assert relayed.status_code == 422
            down = await client.post("/v2/models/ghost/infer", content=b"{}")
            assert down.status_code == 503
        relayed_line, down_line = warnings(caplog)
        assert relayed_line.startswith("POST /v2/models/demo/infer -> 422: a says no (route: ")
        assert down_line.startswith("POST /v2/models/ghost/infer -> 503: no healthy backend: dead")
        assert "all 1 attempts failed" in down_line
    finally:
        await app.runtime.stop()
