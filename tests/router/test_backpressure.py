"""Backpressure is not failure: a pool that answers 503 + Retry-After or 429 is busy, not
broken. The router tries another pool with room, never opens that pool's circuit, and
sheds with 503 + Retry-After when every pool is full."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from mpfn.demo import demo_model_version
from mpfn.functions.router.asgi import RouterApp
from mpfn.store import LocalStore
from tests.factories import pool
from tests.router.backend import Backend
from tests.router.conftest import seed

BODY = b'{"inputs":[{"name":"x","shape":[1,16],"datatype":"FP32","data":[0]}]}'
INFER = "/v2/models/demo/infer"


def busy(backend: Backend, status: int = 503) -> None:
    backend.status = status
    backend.error_headers = {"Retry-After": "1"}


def seed_two(store: LocalStore, a: Backend, b: Backend) -> None:
    seed(
        store,
        models=[demo_model_version()],
        pools=[pool("pa", a.url, cost=0.0), pool("pb", b.url, cost=10.0)],
    )


async def test_a_busy_pool_is_skipped_and_its_circuit_stays_closed(
    store: LocalStore, app: RouterApp, client: httpx.AsyncClient, backends: tuple[Backend, Backend]
) -> None:
    a, b = backends
    seed_two(store, a, b)
    for status in (503, 429):
        busy(a, status)
        for _ in range(3 * app.runtime.settings.breaker_failures):
            r = await client.post(INFER, content=BODY)
            assert r.status_code == 200, r.text
            assert r.headers["x-mpfn-pool"] == "pb"
    routing = app.runtime.routing
    assert routing.breaker("pa", app.runtime.routing_clock()) == "closed"
    assert a.answered > 0  # pa was asked, and said it was full
    metrics = (await client.get("/metrics")).text
    assert 'mpfn_router_circuit_state{pool="pa"} 0.0' in metrics
    assert 'mpfn_router_failovers_total{model="demo",pool="pa"}' not in metrics


async def test_every_pool_busy_is_shed_with_retry_after(
    store: LocalStore, app: RouterApp, client: httpx.AsyncClient, backends: tuple[Backend, Backend]
) -> None:
    a, b = backends
    seed_two(store, a, b)
    busy(a)
    busy(b, 429)
    for _ in range(2 * app.runtime.settings.breaker_failures):
        r = await client.post(INFER, content=BODY)
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1"
        assert r.json()["error"].startswith("service at capacity")
        assert "shed: at capacity" in r.headers["x-mpfn-route-reason"]
    now = app.runtime.routing_clock()
    assert app.runtime.routing.breaker("pa", now) == "closed"
    assert app.runtime.routing.breaker("pb", now) == "closed"
    metrics = (await client.get("/metrics")).text
    assert 'mpfn_router_rejections_total{reason="at_capacity"} 10.0' in metrics
    a.status = b.status = 200  # the burst is over: the very next request is served
    assert (await client.post(INFER, content=BODY)).status_code == 200


async def test_a_503_without_retry_after_is_still_a_failure(
    store: LocalStore, app: RouterApp, client: httpx.AsyncClient, backends: tuple[Backend, Backend]
) -> None:
    a, b = backends
    seed_two(store, a, b)
    a.status = 503  # no Retry-After: the pool is broken, not full
    r = await client.post(INFER, content=BODY)
    assert r.status_code == 200 and "attempt 2 after pa" in r.headers["x-mpfn-route-reason"]
    metrics = (await client.get("/metrics")).text
    assert 'mpfn_router_failovers_total{model="demo",pool="pa"} 1.0' in metrics


async def test_admission_metrics_are_exported(
    store: LocalStore, app: RouterApp, client: httpx.AsyncClient, backends: tuple[Backend, Backend]
) -> None:
    a, b = backends
    seed_two(store, a, b)
    assert (await client.post(INFER, content=BODY)).status_code == 200
    metrics = (await client.get("/metrics")).text
    assert 'mpfn_router_admission_limit{pool="pa"}' in metrics
    assert "mpfn_router_admission_waiting 0.0" in metrics
    assert "mpfn_router_admission_queue_seconds_count 1.0" in metrics


async def test_a_flood_past_capacity_is_shed_before_routing_and_logged_once(
    store: LocalStore,
    app: RouterApp,
    client: httpx.AsyncClient,
    backends: tuple[Backend, Backend],
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, _ = backends
    a.delay_s = 0.3  # every slot stays taken while the flood arrives
    seed(store, models=[demo_model_version()], pools=[pool("pa", a.url, capacity=1)])
    assert (await client.post(INFER, content=BODY)).status_code == 200  # loaded
    caplog.set_level(logging.WARNING, logger="mpfn.router")
    a.answered = 0
    answers = await asyncio.gather(*(client.post(INFER, content=BODY) for _ in range(40)))
    served = [r for r in answers if r.status_code == 200]
    shed = [r for r in answers if r.status_code == 503]
    assert served and len(served) + len(shed) == 40
    assert a.answered == len(served)  # what was shed never reached the pool
    early = [r for r in shed if r.headers["x-mpfn-route-reason"].startswith("not routed")]
    assert early, [r.headers["x-mpfn-route-reason"] for r in shed]
    for r in early:
        assert r.headers["retry-after"] == "1"
        assert r.json()["error"].startswith("service at capacity")
        assert "shed: at capacity" in r.headers["x-mpfn-route-reason"]
    assert app.runtime.routing.breaker("pa", app.runtime.routing_clock()) == "closed"
    logged = [m for m in (r.getMessage() for r in caplog.records) if "-> 503" in m]
    assert 1 <= len(logged) <= 2  # one line per kind and second, not one per refusal
    a.delay_s = 0.0
    assert (await client.post(INFER, content=BODY)).status_code == 200
