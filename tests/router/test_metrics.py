"""Router metrics on `GET /metrics`: counts, latency, failovers, cold starts, circuit state
and in-flight requests, with label values bounded to what the registry knows."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from mpfn.auth import issue_key
from mpfn.demo import demo_model_version
from mpfn.state import Documents
from mpfn.store import LocalStore
from tests.router.backend import Backend, serve
from tests.router.conftest import make_pool, router, seed

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(lbl)[label] for (n, lbl) in samples if n == name and label in dict(lbl)}


async def scrape(client: httpx.AsyncClient) -> Samples:
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


BODY = b'{"inputs":[{"name":"x","shape":[1,16],"datatype":"FP32","data":[0]}]}'


async def test_requests_and_latency_by_model_pool_and_status(
    store: LocalStore, client: httpx.AsyncClient
) -> None:
    async with serve(Backend("a")) as a:
        seed(store, models=[demo_model_version()], pools=[make_pool("pa", a.url)])
        for _ in range(3):
            assert (await client.post("/v2/models/demo/infer", content=BODY)).status_code == 200
        r = await client.post("/v2/models/demo/versions/9/infer", content=BODY)
        assert r.status_code == 404
        samples = await scrape(client)
    assert value(samples, "mpfn_router_requests_total", model="demo", pool="pa", status="2xx") == 3
    assert (
        value(samples, "mpfn_router_request_seconds_count", model="demo", pool="pa", status="2xx")
        == 3
    )
    assert value(samples, "mpfn_router_requests_total", model="demo", pool="none", status="4xx")
    assert value(samples, "mpfn_router_inflight") == 0
    assert value(samples, "mpfn_router_state_refreshes_total", outcome="ok") >= 1
    assert value(samples, "mpfn_router_state_age_seconds") >= 0
    assert not a.seen or all(s["path"] != "/metrics" for s in a.seen)


async def test_unknown_models_never_become_label_values(
    store: LocalStore, client: httpx.AsyncClient
) -> None:
    async with serve(Backend("a")) as a:
        seed(store, models=[demo_model_version()], pools=[make_pool("pa", a.url)])
        names = [f"m{secrets.token_hex(4)}" for _ in range(25)]
        for name in names:
            assert (await client.post(f"/v2/models/{name}/infer", content=BODY)).status_code == 404
        r = await client.post("/v1/embeddings", json={"model": "nope", "input": "x"})
        assert r.status_code == 404
        assert (await client.post("/v1/embeddings", content=b"not json")).status_code == 400
        assert (await client.post("/v2/models/demo/infer", content=BODY)).status_code == 200
        samples = await scrape(client)
    assert label_values(samples, "mpfn_router_requests_total", "model") == {"demo", "_unknown"}
    assert label_values(samples, "mpfn_router_requests_total", "pool") == {"pa", "none"}
    assert (
        value(samples, "mpfn_router_requests_total", model="_unknown", pool="none", status="4xx")
        == 27
    )


async def test_failovers_and_cold_starts(store: LocalStore) -> None:
    async with (
        serve(Backend("bad", status=500)) as bad,
        serve(Backend("good", headers={"x-mpfn-load-ms": "250"})) as good,
        router(store) as client,
    ):
        seed(
            store,
            models=[demo_model_version()],
            pools=[make_pool("bad", bad.url), make_pool("good", good.url)],
        )
        reasons = []
        for _ in range(4):
            r = await client.post("/v2/models/demo/infer", content=BODY)
            assert r.status_code == 200 and r.headers["x-mpfn-pool"] == "good"
            assert r.headers["x-mpfn-load-ms"] == "250"
            reasons.append(r.headers["x-mpfn-route-reason"])
        samples = await scrape(client)
    left_bad = sum("after bad" in reason for reason in reasons)
    assert left_bad >= 1
    assert value(samples, "mpfn_router_failovers_total", model="demo", pool="bad") == left_bad
    assert value(samples, "mpfn_router_cold_starts_total", model="demo", pool="good") == 4
    assert value(samples, "mpfn_router_cold_start_load_seconds_count", pool="good") == 4
    assert value(samples, "mpfn_router_cold_start_load_seconds_sum", pool="good") == 1.0
    assert value(samples, "mpfn_router_requests_total", model="demo", pool="good", status="2xx")


async def test_circuit_state_per_registered_pool(store: LocalStore) -> None:
    async with (
        serve(Backend("bad", status=500)) as bad,
        serve(Backend("good")) as good,
        router(store, breaker_failures=1, breaker_cooldown_s=3600) as client,
    ):
        seed(
            store,
            models=[demo_model_version()],
            pools=[make_pool("bad", bad.url), make_pool("good", good.url)],
        )
        before = await scrape(client)
        for _ in range(3):
            r = await client.post("/v2/models/demo/infer", content=BODY)
            assert r.status_code == 200
        after = await scrape(client)
    assert value(before, "mpfn_router_circuit_state", pool="bad") == 0
    assert value(after, "mpfn_router_circuit_state", pool="bad") == 2  # open
    assert value(after, "mpfn_router_circuit_state", pool="good") == 0
    assert label_values(after, "mpfn_router_circuit_state", "pool") == {"bad", "good"}


class Gate:
    """A loopback backend that holds every request until released."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def infer(self, request: web.Request) -> web.Response:
        await request.read()
        self.arrived.set()
        await self.release.wait()
        return web.json_response({"outputs": []})


@asynccontextmanager
async def gated() -> AsyncIterator[tuple[Gate, str]]:
    gate = Gate()
    app = web.Application()
    app.router.add_post("/v2/models/{name}/infer", gate.infer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield gate, f"http://127.0.0.1:{port}"
    finally:
        gate.release.set()
        await runner.cleanup()


async def test_inflight_requests_and_attempts(store: LocalStore, client: httpx.AsyncClient) -> None:
    async with gated() as (gate, url):
        seed(store, models=[demo_model_version()], pools=[make_pool("slow", url)])
        pending = asyncio.create_task(client.post("/v2/models/demo/infer", content=BODY))
        await asyncio.wait_for(gate.arrived.wait(), 30)
        during = await scrape(client)
        gate.release.set()
        assert (await pending).status_code == 200
        after = await scrape(client)
    assert value(during, "mpfn_router_inflight") == 1
    assert value(during, "mpfn_router_pool_inflight", pool="slow") == 1
    assert value(after, "mpfn_router_inflight") == 0
    assert value(after, "mpfn_router_pool_inflight", pool="slow") == 0


async def test_metrics_open_by_default_and_behind_keys_when_configured(
    store: LocalStore,
) -> None:
    plaintext, doc = issue_key("ops")
    Documents(store).upsert(doc.key, doc)
    seed(store, models=[demo_model_version()])
    async with router(store, auth="keys") as client:
        assert (await client.get("/metrics")).status_code == 200
        assert (await client.post("/v2/models/demo/infer", content=BODY)).status_code == 401
        samples = await scrape(client)
        assert value(samples, "mpfn_router_rejections_total", reason="unauthenticated") == 1
    async with router(store, metrics_auth="keys") as client:
        r = await client.get("/metrics")
        assert r.status_code == 401 and "error" in r.json()
        assert r.headers["www-authenticate"].startswith("Bearer")
        r = await client.get("/metrics", headers={"Authorization": f"Bearer {plaintext}"})
        assert r.status_code == 200 and "mpfn_router_requests" in r.text


@pytest.mark.parametrize("path", ["/metrics", "/v2/health/live"])
async def test_open_routes_are_not_counted_as_routed(
    path: str, store: LocalStore, client: httpx.AsyncClient
) -> None:
    assert (await client.get(path)).status_code == 200
    samples = await scrape(client)
    assert not [k for k in samples if k[0] == "mpfn_router_requests_total"]
