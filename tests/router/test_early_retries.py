"""A connection refused several times in a row, each time sent again before the last
refusal's Retry-After, gets its next refusal only once that Retry-After has passed;
every other refusal goes out at once, and admitted requests are never held."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from mpfn.demo import demo_model_version
from mpfn.functions.router.asgi import RouterApp, create_app
from mpfn.functions.router.earlyretry import EarlyRetries, connection_of, hold_for
from mpfn.store import LocalStore
from tests.factories import pool
from tests.router.backend import Backend
from tests.router.conftest import seed, settings

BODY = b'{"inputs":[{"name":"x","shape":[1,16],"datatype":"FP32","data":[0]}]}'
INFER = "/v2/models/demo/infer"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_hold_is_what_is_left_of_the_retry_after() -> None:
    assert hold_for(None, 1.0, 5.0) == 0.0  # never refused
    assert hold_for(5.0, 1.0, 5.25) == 0.75
    assert hold_for(5.0, 1.0, 6.0) == 0.0  # it waited as told
    assert hold_for(5.0, 1.0, 9.0) == 0.0


def test_connections_are_told_apart_by_address_and_port() -> None:
    assert connection_of(("10.0.0.1", 5000)) == ("10.0.0.1", 5000)
    assert connection_of(["10.0.0.1", 5000]) == ("10.0.0.1", 5000)
    assert connection_of(None) is None  # gRPC, or a server that does not say
    assert connection_of(("10.0.0.1", 0)) is None  # Mangum under Lambda: no port


def test_held_from_the_third_early_refusal_in_a_row() -> None:
    clock = Clock()
    early = EarlyRetries(1.0, clock=clock)
    conn = ("a", 1)
    assert early.refusing(conn) == 0.0  # the first refusal
    early.refused(conn)
    for _ in range(2):  # sent again at once: early, but not yet held
        assert early.refusing(conn) == 0.0
        early.refused(conn)
    clock.now += 0.25
    assert early.refusing(conn) == 0.75  # the third early one in a row
    clock.now += 0.75
    early.refused(conn)
    assert early.refusing(conn) == 1.0  # still at full tilt
    early.refused(conn)
    clock.now += 1.0  # then it waits as told: the row is over
    assert early.refusing(conn) == 0.0
    early.refused(conn)


def test_early_is_measured_against_the_wait_each_refusal_asked_for() -> None:
    """A refusal that asked for 600 ms (`retry-after-ms`): sending again after 700 ms is
    not early, after 500 ms it is, and a hold lasts what is left of those 600 ms."""
    clock = Clock()
    early = EarlyRetries(1.0, hold_after=1, clock=clock)
    conn = ("a", 1)
    early.refusing(conn)
    early.refused(conn, 0.6)
    clock.now += 0.7
    assert early.refusing(conn) == 0.0  # it waited as told
    early.refused(conn, 0.6)
    clock.now += 0.5
    assert abs(early.refusing(conn) - 0.1) < 1e-9  # early: held for the last 100 ms
    early.refused(conn)  # no wait given: the whole Retry-After
    clock.now += 0.9
    assert abs(early.refusing(conn) - 0.1) < 1e-9


def test_a_held_refusal_keeps_its_row_while_others_are_refused() -> None:
    """A held refusal goes out just as the Retry-After before it ends; refusals of other
    connections meanwhile must not forget its row, or it would get two more at once."""
    clock = Clock()
    early = EarlyRetries(1.0, clock=clock)
    a, b = ("a", 1), ("b", 2)
    for _ in range(3):
        early.refusing(a)
        early.refused(a)
    hold = early.refusing(a)
    assert hold == 1.0  # held until the last refusal's Retry-After has passed
    clock.now += hold + 0.01  # the event loop wakes the held refusal a little late,
    early.refusing(b)  # after another connection's refusal
    early.refused(b)
    early.refused(a)  # the held refusal goes out
    assert early.refusing(a) == 1.0  # sent again at once: held again, no new row


def test_being_served_ends_the_row() -> None:
    """A pooled connection whose callers each honor Retry-After is sent again early by
    another caller, who is usually served: it is not held."""
    early = EarlyRetries(1.0, clock=Clock())
    conn = ("a", 1)
    for _ in range(10):
        for _ in range(2):
            assert early.refusing(conn) == 0.0
            early.refused(conn)
        early.served(conn)
    assert len(early) == 0
    early.served(None)
    early.served(("b", 2))  # never refused: nothing to forget


def test_unknown_connections_are_never_held() -> None:
    early = EarlyRetries(1.0, hold_after=0, clock=Clock())
    assert early.refusing(None) == 0.0
    early.refused(None)
    assert len(early) == 0


def test_remembers_recent_refusals_only_and_a_bounded_number_of_them() -> None:
    clock = Clock()
    early = EarlyRetries(1.0, hold_after=1, max_connections=3, clock=clock)
    early.refused(("a", 1))
    assert early.refusing(("a", 1)) == 1.0
    assert early.refusing(("a", 2)) == 0.0  # another connection of the same host
    for port in range(2, 6):
        early.refused(("a", port))
    assert len(early) == 3  # the oldest were forgotten first
    assert early.refusing(("a", 1)) == 0.0
    clock.now += 1.5
    early.refused(("b", 1))  # the others' Retry-After passed, but only just: kept
    assert len(early) == 3
    clock.now += 1.0
    early.refused(("b", 2))  # twice their Retry-After passed: forgotten
    assert len(early) == 2  # only b's two connections are left


@asynccontextmanager
async def full_router(
    store: LocalStore, backend: Backend, **overrides: object
) -> AsyncIterator[RouterApp]:
    """A router whose one pool is full, its slots taken and its waiting line full, for
    about a second, by slow requests from another connection: what else arrives is
    refused before it is routed."""
    pa = pool("pa", backend.url, capacity=1)
    seed(store, models=[demo_model_version()], pools=[pa])
    app = create_app(store, settings=settings(queue_min_ms=5000.0, **overrides))
    filler = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("10.9.9.9", 9)), base_url="http://r"
    )
    tasks: list[asyncio.Task[httpx.Response]] = []
    try:
        assert (await filler.post(INFER, content=BODY)).status_code == 200  # loaded
        backend.delay_s = 1.0
        admission = app.runtime.admission
        assert admission is not None
        while not admission.must_shed([pa], "demo") and len(tasks) < 16:
            tasks.append(asyncio.create_task(filler.post(INFER, content=BODY)))
            for _ in range(20):
                await asyncio.sleep(0)  # it takes a slot or its place in line
        assert admission.must_shed([pa], "demo")
        yield app
    finally:
        await asyncio.gather(*tasks, return_exceptions=True)
        await filler.aclose()
        await app.runtime.stop()


def client_on(app: RouterApp, port: int) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=("10.0.0.1", port))
    return httpx.AsyncClient(transport=transport, base_url="http://router")


async def test_an_early_retry_is_held_and_said_so(
    store: LocalStore, backends: tuple[Backend, Backend]
) -> None:
    a, _ = backends
    async with full_router(store, a, retry_spread=0.0) as app:  # every wait exactly 1 s
        clock = Clock()
        app.runtime.early_retries = EarlyRetries(1.0, clock=clock)
        async with client_on(app, 5000) as c, client_on(app, 5001) as other:
            for _ in range(3):  # refused, then sent again at once twice: not held
                r = await c.post(INFER, content=BODY)
                assert r.status_code == 503 and r.headers["retry-after"] == "1"
                assert "held" not in r.headers["x-mpfn-route-reason"]
            clock.now += 0.95  # and again, before the second is up
            again = await c.post(INFER, content=BODY)
            assert again.status_code == 503 and again.headers["retry-after"] == "1"
            reason = again.headers["x-mpfn-route-reason"]
            assert "shed: at capacity" in reason
            assert reason.endswith("; held 50 ms: sent before Retry-After"), reason
            fresh = await other.post(INFER, content=BODY)  # another connection: at once
            assert "held" not in fresh.headers["x-mpfn-route-reason"]
            clock.now += 1.0  # as Retry-After said
            waited = await c.post(INFER, content=BODY)
            assert waited.status_code == 503
            assert "held" not in waited.headers["x-mpfn-route-reason"]
            metrics = (await c.get("/metrics")).text
    assert "mpfn_router_held_refusals_total 1.0" in metrics
    assert 'mpfn_router_rejections_total{reason="at_capacity"} 6.0' in metrics


async def test_holding_can_be_turned_off(
    store: LocalStore, backends: tuple[Backend, Backend]
) -> None:
    a, _ = backends
    async with full_router(store, a, hold_early_retries=False) as app:
        assert app.runtime.early_retries is None
        async with client_on(app, 5000) as c:
            answers = [await c.post(INFER, content=BODY) for _ in range(3)]
    assert [r.status_code for r in answers] == [503, 503, 503]
    assert not any("held" in r.headers["x-mpfn-route-reason"] for r in answers)


async def test_admitted_requests_are_never_held(
    store: LocalStore, backends: tuple[Backend, Backend]
) -> None:
    a, _ = backends
    seed(store, models=[demo_model_version()], pools=[pool("pa", a.url, capacity=1)])
    app = create_app(store, settings=settings())
    try:
        assert app.runtime.early_retries is not None
        early = app.runtime.early_retries
        for _ in range(5):  # refused in a row, at full tilt
            early.refusing(("10.0.0.1", 5000))
            early.refused(("10.0.0.1", 5000))
        async with client_on(app, 5000) as c:
            r = await c.post(INFER, content=BODY)  # at once, and there is room now
        assert r.status_code == 200
        assert "held" not in r.headers["x-mpfn-route-reason"]
        assert len(early) == 0  # served: its row of refusals is over
    finally:
        await app.runtime.stop()


async def test_refusals_spread_their_wait_and_are_held_to_it(
    store: LocalStore, backends: tuple[Backend, Backend]
) -> None:
    """Each refusal says `Retry-After: 1` and a `retry-after-ms` drawn from 500-1500 ms;
    a connection that sends again after the wait it was told is not early, and one that
    keeps sending early is held to what is left of it."""
    a, _ = backends
    async with full_router(store, a) as app:
        clock = Clock()
        app.runtime.early_retries = EarlyRetries(1.0, clock=clock)
        waits = []
        async with client_on(app, 5000) as c:
            for _ in range(12):  # each told how long to wait, and sent again after it
                r = await c.post(INFER, content=BODY)
                assert r.status_code == 503 and r.headers["retry-after"] == "1"
                assert "held" not in r.headers["x-mpfn-route-reason"]
                ms = int(r.headers["retry-after-ms"])
                assert 500 <= ms <= 1500
                waits.append(ms)
                clock.now += min(ms, 1000) / 1000.0
            assert len(set(waits)) > 1  # spread, not one value for all
            for _ in range(3):  # then at once, three times in a row
                r = await c.post(INFER, content=BODY)
            reason = r.headers["x-mpfn-route-reason"]
            told = min(int(r.headers["retry-after-ms"]), 1000)
            held = await c.post(INFER, content=BODY)  # held for the wait the last one told
            assert held.headers["x-mpfn-route-reason"].endswith(
                f"; held {told} ms: sent before Retry-After"
            ), (reason, held.headers["x-mpfn-route-reason"])
