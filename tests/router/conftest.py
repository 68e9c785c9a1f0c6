"""Fixtures for router tests: a seeded local store and a router app served in-process."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from mpfn.documents import ModelVersion, Policy, Pool
from mpfn.functions.router.asgi import RouterApp, create_app
from mpfn.functions.router.settings import RouterSettings
from mpfn.state import Documents
from mpfn.store import LocalStore
from tests.factories import pool
from tests.router.backend import Backend, serve

if TYPE_CHECKING:
    import httpx2  # the openai SDK's HTTP client

make_pool = pool  # the name the router tests import


def seed(
    store: LocalStore,
    models: Iterable[ModelVersion] = (),
    pools: Iterable[Pool] = (),
    policies: Iterable[Policy] = (),
) -> None:
    docs = Documents(store)
    every: list[ModelVersion | Pool | Policy] = [*models, *pools, *policies]
    for doc in every:
        docs.upsert(doc.key, doc)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "state")


def error_text(response: httpx.Response | httpx2.Response) -> str:
    """The message of a router error: `{"error": "..."}`, or OpenAI's
    `{"error": {"message": ...}}` on OpenAI routes."""
    error = response.json()["error"]
    return str(error["message"] if isinstance(error, dict) else error)


def settings(**overrides: Any) -> RouterSettings:
    """Test settings: any RouterSettings field can be overridden by keyword."""
    base: dict[str, Any] = {"instance_id": "test", "refresh_ttl_s": 0.05}
    base.update(overrides)
    return RouterSettings(**base)


class ManualClock:
    """A wall clock that moves only when a test says so (starts at the real time)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@asynccontextmanager
async def router(store: LocalStore, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A router app on `store` with `overrides` to its settings, as an ASGI client."""
    app = create_app(store, settings=settings(**overrides))
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as c:
            yield c
    finally:
        await app.runtime.stop()


def app_with_clock(
    store: LocalStore, router_settings: RouterSettings, clock: ManualClock
) -> RouterApp:
    """The router app with `clock` as its routing clock (breakers, latency ages)."""
    return create_app(store, settings=router_settings, routing_clock=clock)


@pytest.fixture
async def app(store: LocalStore) -> AsyncIterator[RouterApp]:
    router = create_app(store, settings=settings(max_body_bytes=4096))
    yield router
    await router.runtime.stop()


@pytest.fixture
async def client(app: RouterApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://router") as c:
        yield c


@pytest.fixture
async def backends() -> AsyncIterator[tuple[Backend, Backend]]:
    """Two real loopback backends, `a` and `b`, recording what reaches them."""
    async with serve(Backend("a")) as a, serve(Backend("b")) as b:
        yield a, b
