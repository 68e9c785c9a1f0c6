"""Routing through the router in-process, against real loopback backends: route headers,
hints, pins, version splits, fallback models, deadlines, breakers and `stats/` snapshots."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from mpfn.demo import demo_model_version
from mpfn.documents import ModelVersion, Policy, Pool
from mpfn.functions.router.asgi import RouterApp
from mpfn.routing import PoolStatsDocument
from mpfn.routing.statsdoc import LatencyAverage
from mpfn.state import Documents
from mpfn.store import LocalStore
from tests.router.backend import Backend
from tests.router.conftest import ManualClock, app_with_clock, make_pool, seed, settings

INFER = "/v2/models/demo/infer"


def priced(pid: str, url: str, cost: float, region: str = "local") -> Pool:
    return make_pool(pid, url).model_copy(update={"cost_per_hour": cost, "region": region})


async def test_every_answer_says_which_pool_and_why(
    store: LocalStore, client: httpx.AsyncClient, backends: tuple[Backend, Backend]
) -> None:
    a, _ = backends
    seed(store, models=[demo_model_version()], pools=[make_pool("pa", a.url)])
    ok = await client.post(INFER, content=b"{}")
    assert ok.headers["x-mpfn-pool"] == "pa"
    assert ok.headers["x-mpfn-route-reason"].startswith("slo-then-cost: ")
    unknown = await client.post("/v2/models/ghost/infer", content=b"{}")
    assert unknown.status_code == 404 and unknown.headers["x-mpfn-pool"] == "none"
    assert unknown.headers["x-mpfn-route-reason"].startswith("not routed")
    a.status = 503
    down = await client.post(INFER, content=b"{}")
    assert down.status_code == 503 and down.headers["x-mpfn-pool"] == "none"
    assert "all 1 attempts failed (" in down.headers["x-mpfn-route-reason"]


@pytest.mark.parametrize(
    ("header", "value", "message"),
    [
        ("x-mpfn-latency-budget-ms", "soon", "x-mpfn-latency-budget-ms must be a positive"),
        ("x-mpfn-latency-budget-ms", "0", "must be a positive number"),
        ("x-mpfn-max-cost", "-1", "x-mpfn-max-cost must be a non-negative"),
        ("x-mpfn-region", " , ", "must name at least one region"),
        ("x-mpfn-pool", "no such/pool", "invalid pool id"),
        ("x-mpfn-pool", "elsewhere", "does not serve model 'demo'"),
        ("x-mpfn-region", "eu-west-1", "not allowed by policy 'default'"),
    ],
)
async def test_malformed_or_forbidden_hints_are_400(
    store: LocalStore,
    client: httpx.AsyncClient,
    backends: tuple[Backend, Backend],
    header: str,
    value: str,
    message: str,
) -> None:
    a, _ = backends
    seed(
        store,
        models=[demo_model_version()],
        pools=[make_pool("pa", a.url)],
        policies=[Policy(name="default", allowed_regions=["local"])],
    )
    r = await client.post(INFER, content=b"{}", headers={header: value})
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]
    assert r.headers["x-mpfn-pool"] == "none" and r.headers["x-mpfn-route-reason"]
    assert not a.seen


async def test_pins_regions_and_budgets(
    store: LocalStore, client: httpx.AsyncClient, backends: tuple[Backend, Backend]
) -> None:
    a, b = backends
    seed(
        store,
        models=[demo_model_version()],
        pools=[priced("pa", a.url, 0.0, "r1"), priced("pb", b.url, 36.0, "r2")],
    )
    for _ in range(4):
        pinned = await client.post(INFER, content=b"{}", headers={"x-mpfn-pool": "pb"})
        assert pinned.headers["x-mpfn-pool"] == "pb"
        assert pinned.headers["x-mpfn-route-reason"].endswith("pinned")
        there = await client.post(INFER, content=b"{}", headers={"x-mpfn-region": "r2"})
        assert there.headers["x-mpfn-pool"] == "pb"
    # pb costs 36 $/h = $0.00001 per ms: any request there is over a $0.0000001 budget.
    cheap = await client.post(
        INFER, content=b"{}", headers={"x-mpfn-max-cost": "0.0000001", "x-mpfn-region": "r2"}
    )
    assert cheap.status_code == 503
    assert "cost $" in cheap.json()["error"] and "over budget" in cheap.json()["error"]
    assert cheap.headers["x-mpfn-route-reason"] == "no candidate; 2 excluded"


async def test_version_split_is_sticky_per_route_key(
    store: LocalStore, client: httpx.AsyncClient, backends: tuple[Backend, Backend]
) -> None:
    a, _ = backends
    seed(
        store,
        models=[demo_model_version(), demo_model_version(version="2")],
        pools=[make_pool("pa", a.url)],
        policies=[Policy(name="demo", version_weights={"1": 1.0, "2": 1.0})],
    )
    for key in ("alice", "bob", "carol", "dave", "erin"):
        for _ in range(3):
            await client.post(INFER, content=b"{}", headers={"x-mpfn-route-key": key})
        paths = {str(s["path"]) for s in a.seen[-3:]}
        assert len(paths) == 1 and paths <= {
            "/v2/models/demo/versions/1/infer",
            "/v2/models/demo/versions/2/infer",
        }
        sent_headers = a.seen[-1]["headers"]
        assert "x-mpfn-route-key" not in {k.lower() for k in sent_headers}
    for _ in range(40):
        await client.post(INFER, content=b"{}")
    assert len({str(s["path"]) for s in a.seen[-40:]}) == 2
    # A request naming its version is not split.
    await client.post("/v2/models/demo/versions/1/infer", content=b"{}")
    assert a.seen[-1]["path"] == "/v2/models/demo/versions/1/infer"


async def test_fallback_model_when_the_primary_fails(
    store: LocalStore, client: httpx.AsyncClient, backends: tuple[Backend, Backend]
) -> None:
    a, b = backends
    a.status = 500
    seed(
        store,
        models=[demo_model_version(name="big"), demo_model_version(name="small")],
        pools=[make_pool("gpu", a.url, models=["big"]), make_pool("cpu", b.url, models=["small"])],
        policies=[Policy(name="big", fallbacks=["small"])],
    )
    r = await client.post("/v2/models/big/infer", content=b"{}")
    assert r.status_code == 200 and r.headers["x-mpfn-pool"] == "cpu"
    assert "; attempt 2 after gpu (gpu: " in r.headers["x-mpfn-route-reason"]
    assert a.seen[-1]["path"] == "/v2/models/big/infer"
    assert b.seen[-1]["path"] == "/v2/models/small/infer"


async def test_openai_fallback_rewrites_the_model_in_the_body(
    store: LocalStore, client: httpx.AsyncClient, backends: tuple[Backend, Backend]
) -> None:
    a, b = backends
    a.status = 503
    seed(
        store,
        models=[
            ModelVersion(name="big-llm", version="1", format="gguf"),
            ModelVersion(name="small-llm", version="1", format="gguf"),
        ],
        pools=[
            make_pool("g", a.url, adapter="openai", models=["big-llm"]),
            make_pool("c", b.url, adapter="openai", models=["small-llm"]),
        ],
        policies=[Policy(name="big-llm", fallbacks=["small-llm"])],
    )
    r = await client.post("/v1/embeddings", json={"model": "big-llm", "input": "hi"})
    assert r.status_code == 200 and r.headers["x-mpfn-pool"] == "c"
    assert json.loads(b.seen[-1]["body"]) == {"model": "small-llm", "input": "hi"}
    assert json.loads(a.seen[-1]["body"])["model"] == "big-llm"


async def test_policy_deadline_bounds_failover(
    store: LocalStore, client: httpx.AsyncClient, backends: tuple[Backend, Backend]
) -> None:
    a, b = backends
    a.delay_s = b.delay_s = 4.0
    seed(
        store,
        models=[demo_model_version()],
        pools=[make_pool("pa", a.url), make_pool("pb", b.url)],
        policies=[Policy(name="default", timeout_ms=300)],
    )
    r = await client.post(INFER, content=b"{}")
    assert r.status_code == 504 and "deadline of 300 ms passed" in r.json()["error"]
    assert len(a.seen) + len(b.seen) == 1  # no second pool was tried after the deadline
    assert a.answered + b.answered == 0  # the router gave up before the backend answered


async def test_circuit_opens_then_a_half_open_probe_closes_it(
    store: LocalStore, backends: tuple[Backend, Backend]
) -> None:
    a, b = backends
    seed(
        store, models=[demo_model_version()], pools=[make_pool("pa", a.url), make_pool("pb", b.url)]
    )
    clock = ManualClock()
    app = app_with_clock(
        store, settings(breaker_failures=2, breaker_cooldown_s=0.3, max_body_bytes=4096), clock
    )
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://router"
        ) as client:
            a.status = 503
            pinned = {"x-mpfn-pool": "pa"}
            for _ in range(2):
                assert (await client.post(INFER, content=b"{}", headers=pinned)).status_code == 503
            assert app.runtime.routing.breaker("pa", clock()) == "open"
            refused = await client.post(INFER, content=b"{}", headers=pinned)
            assert refused.status_code == 503 and "pa: circuit open" in refused.json()["error"]
            assert len(a.seen) == 2  # an open circuit sends nothing
            for _ in range(3):
                r = await client.post(INFER, content=b"{}")
                assert r.headers["x-mpfn-pool"] == "pb"
                assert "1 excluded" in r.headers["x-mpfn-route-reason"]
            a.status = 200
            clock.advance(0.29)
            assert app.runtime.routing.breaker("pa", clock()) == "open"
            clock.advance(0.02)
            assert app.runtime.routing.breaker("pa", clock()) == "half-open"
            probe = await client.post(INFER, content=b"{}", headers=pinned)
            assert probe.status_code == 200 and probe.headers["x-mpfn-pool"] == "pa"
            assert app.runtime.routing.breaker("pa", clock()) == "closed"
    finally:
        await app.runtime.stop()


async def test_stats_snapshots_seed_a_new_router(
    store: LocalStore, app: RouterApp, client: httpx.AsyncClient, backends: tuple[Backend, Backend]
) -> None:
    a, b = backends
    seed(
        store,
        models=[demo_model_version()],
        pools=[make_pool("pa", a.url), make_pool("pb", b.url)],
        policies=[Policy(name="default", objective="fastest")],
    )
    now = time.time()
    docs = Documents(store)
    for pool_id, ms in (("pa", 400.0), ("pb", 4.0)):
        doc = PoolStatsDocument(
            pool=pool_id,
            written_at=now,
            latency=LatencyAverage(ms=ms, at=now, samples=20),
            models={"demo/1": LatencyAverage(ms=ms, at=now, samples=20)},
            loaded=["demo/1"],
        )
        docs.upsert(doc.key, doc)
    answered = [(await client.post(INFER, content=b"{}")).headers["x-mpfn-pool"] for _ in range(6)]
    assert answered == ["pb"] * 6
    assert app.runtime.routing.feedback.latency[("pa", "demo/1")].value == 400.0


async def test_adapter_load_headers_steer_traffic(
    store: LocalStore, client: httpx.AsyncClient, backends: tuple[Backend, Backend]
) -> None:
    a, b = backends
    a.headers = {"x-mpfn-inflight": "0", "x-mpfn-queued": "40"}
    b.headers = {"x-mpfn-inflight": "0", "x-mpfn-queued": "0"}
    seed(
        store, models=[demo_model_version()], pools=[make_pool("pa", a.url), make_pool("pb", b.url)]
    )
    answered = [(await client.post(INFER, content=b"{}")).headers["x-mpfn-pool"] for _ in range(12)]
    # once pa has reported its queue, it is no longer near the best
    assert answered[4:].count("pa") == 0
