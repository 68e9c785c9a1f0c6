"""Fixtures for router tests: a seeded local store and a router app served in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import httpx
import pytest
from pydantic import HttpUrl

from mpfn.documents import ModelVersion, Policy, Pool
from mpfn.functions.router.asgi import RouterApp, create_app
from mpfn.functions.router.settings import RouterSettings
from mpfn.state import Documents
from mpfn.store import LocalStore


def make_pool(pid: str, endpoint: str, adapter: str = "ort", models: Iterable[str] = ()) -> Pool:
    return Pool(
        id=pid, cloud="local", adapter=adapter, endpoint=HttpUrl(endpoint), models=list(models)
    )


def seed(
    store: LocalStore,
    models: Iterable[ModelVersion] = (),
    pools: Iterable[Pool] = (),
    policies: Iterable[Policy] = (),
) -> None:
    docs = Documents(store)
    for doc in [*models, *pools, *policies]:
        docs.upsert(doc.key, doc)  # type: ignore[attr-defined]


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "state")


def settings(**overrides: object) -> RouterSettings:
    base: dict[str, object] = {"instance_id": "test", "refresh_ttl_s": 0.05}
    base.update(overrides)
    return RouterSettings(**base)  # type: ignore[arg-type]


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
