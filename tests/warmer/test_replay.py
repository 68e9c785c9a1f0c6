"""`mpfn warm replay` without a stack: schedule, bodies, policies, report, the driver
against an httpx mock transport, and settings restored after a replay."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from mpfn.demo import demo_model_version
from mpfn.documents import ModelVersion, TensorSpec
from mpfn.registry import Registry
from mpfn.scaling.size import PoolSize, record_size
from mpfn.simulator.traces import Request
from mpfn.state import Documents
from mpfn.store import KeyNotFound, LocalStore
from mpfn.warm.plan import SETTINGS_KEY, WarmSettings
from mpfn.warm.replay import (
    Arrival,
    Outcome,
    ReplayReport,
    infer_body,
    map_models,
    outcome_from_answer,
    percentiles,
    policy_settings,
    pool_usage,
    schedule,
)
from mpfn.warm.replay_run import Interrupts, drive, stack_settings
from tests.factories import pool

T0 = 1_700_000_000.0


def test_schedule_compresses_time_and_bounds_it() -> None:
    trace = [Request(T0 + 10 * i, "a" if i % 3 else "b") for i in range(100)]
    arrivals, mapping = schedule(trace, 10.0, ["m1", "m2"], max_requests=50, max_seconds=30)
    # 30 s of wall clock at 10x is 300 trace seconds: requests at 0, 10, ..., 300
    assert len(arrivals) == 31
    assert [a.at for a in arrivals[:3]] == [0.0, 1.0, 2.0]
    assert arrivals[-1].trace_time == T0 + 300
    assert mapping == {"a": "m1", "b": "m2"}  # busiest first, round-robin
    assert {a.model for a in arrivals if a.trace_model == "b"} == {"m2"}

    few, _ = schedule(trace, 10.0, ["m1"], max_requests=5)
    assert len(few) == 5
    later, _ = schedule(trace, 10.0, ["m1"], start_at=95, max_requests=3)
    assert [a.trace_time for a in later] == [T0 + 100, T0 + 110, T0 + 120]
    assert later[0].at == pytest.approx(0.5)


def test_registered_names_map_to_themselves() -> None:
    mapping = map_models(["x", "demo", "y", "z"], ["demo", "m1"])
    assert mapping == {"x": "demo", "demo": "demo", "y": "m1", "z": "demo"}
    with pytest.raises(ValueError):
        map_models(["x"], [])


def test_infer_body_follows_the_signature() -> None:
    assert infer_body(demo_model_version()) == {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 16], "data": [0.5] * 16}]
    }
    doc = ModelVersion(
        name="two",
        version="1",
        format="onnx",
        inputs=[
            TensorSpec(name="ids", datatype="INT64", shape=[-1, 3]),
            TensorSpec(name="on", datatype="BOOL", shape=[2]),
        ],
        outputs=[TensorSpec(name="y", datatype="FP32", shape=[-1])],
    )
    ids, on = infer_body(doc)["inputs"]
    assert ids == {"name": "ids", "datatype": "INT64", "shape": [1, 3], "data": [1, 1, 1]}
    assert on["data"] == [True, True]


def test_policies_become_warm_settings_in_compressed_time() -> None:
    base = WarmSettings(pinned=["demo"], replica_rps=3.0)
    assert policy_settings("current", base, 60) == (None, [])
    keep, _ = policy_settings("keepalive:600", base, 60)
    assert keep is not None and keep.keep_alive_s == 10.0 and keep.load_probability == 1.0
    assert keep.pinned == ["demo"] and keep.replica_rps == 3.0  # the rest stays
    none, _ = policy_settings("none", base, 60)
    assert none is not None and none.keep_alive_s == 0.0
    forecast, notes = policy_settings("forecast:budget=533", base, 60)
    assert forecast is not None and forecast.window_s == 15.0 and forecast.load_probability == 0.5
    assert any("budget" in n for n in notes)
    custom, _ = policy_settings("warmer:keep_alive_s=120,use_prophet=false", base, 2)
    assert custom is not None and custom.keep_alive_s == 60 and custom.use_prophet is False
    for bad in ("histogram", "keepalive:x", "bogus", "warmer:nope=1", "forecast:x=1"):
        with pytest.raises(ValueError):
            policy_settings(bad, base, 60)


def test_outcomes_read_the_headers() -> None:
    cold = outcome_from_answer("m", 0.0, 200, 50.0, httpx.Headers({"X-Mpfn-Load-Ms": "12.5"}))
    assert cold.cold and cold.load_ms == 12.5 and cold.answered
    woke = outcome_from_answer(
        "m", 0.0, 200, 900.0, httpx.Headers({"x-mpfn-route-reason": "woke pool a; cost"})
    )
    assert woke.cold and woke.wake_ms is None
    shed = outcome_from_answer("m", 0.0, 503, 1.0, httpx.Headers({"retry-after": "2"}))
    assert shed.shed and not shed.answered and not shed.cold
    warm = outcome_from_answer("m", 0.0, 200, 1.0, httpx.Headers({"x-mpfn-load-ms": "bad"}))
    assert not warm.cold


def test_percentiles_nearest_rank() -> None:
    assert percentiles([]) == {}
    values = [float(i) for i in range(1, 101)]
    assert percentiles(values) == {"p50": 50.0, "p90": 90.0, "p99": 99.0, "max": 100.0}


def test_pool_usage_from_size_history_or_one_replica() -> None:
    scaled = pool("a", cost=2.0, scaling={"kind": "local", "max_replicas": 3})
    size = PoolSize(pool="a", replicas=0, changed_at=T0 + 50, history=[(T0, 2), (T0 + 50, 0)])
    # 100 s of wall clock at 36x: 2 replicas for 50 s -> 100 replica-s -> 1 trace hour
    usage = pool_usage(scaled, size, T0, T0 + 100, 36.0)
    assert usage.source == "scaling" and usage.replica_hours == pytest.approx(1.0)
    assert usage.cost == pytest.approx(2.0)
    flat = pool_usage(pool("b", cost=1.0), None, T0, T0 + 100, 36.0)
    assert flat.source == "assumed-constant" and flat.replica_hours == pytest.approx(1.0)


def test_report_has_the_simulate_fields() -> None:
    outcomes = [
        Outcome("m1", 0.0, 200, 10.0),
        Outcome("m1", 0.0, 200, 30.0, load_ms=20.0),
        Outcome("m2", 1.0, 503, 2.0, retry_after=True),
        Outcome("m2", 1.0, 500, 2.0),
        Outcome("m2", 1.0, error="ConnectError"),
    ]
    report = ReplayReport(
        policy="keepalive:600",
        trace="t.csv",
        router="http://r",
        speedup=10.0,
        scheduled=6,
        outcomes=outcomes,
        wall_start=T0,
        wall_end=T0 + 36,
        trace_start=T0,
        trace_end=T0 + 360,
        stopped="interrupted",
        pools=[pool_usage(pool("p", cost=1.0), None, T0, T0 + 36, 10.0)],
    ).as_dict()
    simulate_keys = [
        "policy", "requests", "cold_starts", "cold_start_rate", "warm_model_hours",
        "models", "window_start", "window_end",
    ]  # fmt: skip
    assert list(report)[: len(simulate_keys)] == simulate_keys
    assert report["requests"] == 5 and report["cold_starts"] == 1 and report["models"] == 2
    assert report["cold_start_rate"] == 0.2 and report["warm_model_hours"] is None
    assert report["answered"] == 2 and report["not_sent"] == 1 and report["shed"] == 1
    assert report["errors"] == {"500": 1} and report["transport_errors"] == {"ConnectError": 1}
    assert report["latency_ms"]["p50"] == 10.0 and report["cold"]["load_ms"]["max"] == 20.0
    assert report["replica_hours"] == pytest.approx(0.1) and report["cost"] == pytest.approx(0.1)
    assert any("assumed" in n for n in report["notes"])
    json.dumps(report)


def _arrivals(n: int, step: float, model: str = "demo") -> list[Arrival]:
    return [Arrival(i * step, T0 + i, "t", model) for i in range(n)]


async def test_drive_sends_every_arrival_with_bounded_concurrency() -> None:
    inflight = peak = 0
    seen: list[dict[str, object]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal inflight, peak
        inflight += 1
        peak = max(peak, inflight)
        await asyncio.sleep(0.02)
        inflight -= 1
        seen.append(json.loads(request.content))
        headers = {"x-mpfn-load-ms": "3.0"} if len(seen) == 1 else {}
        return httpx.Response(200, json={}, headers=headers)

    body: dict[str, object] = {"inputs": []}
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(handler), base_url="http://router"
    ) as client:
        driven = await drive(client, _arrivals(12, 0.0), {"demo": body}, concurrency=3)
    assert driven.stopped == "completed" and len(driven.outcomes) == 12
    assert peak <= 3 and seen == [body] * 12
    assert sum(o.cold for o in driven.outcomes) == 1


async def test_drive_stops_when_told_and_keeps_what_it_has() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.01)
        return httpx.Response(200, json={})

    stop = asyncio.Event()

    def progress(done: int, total: int) -> None:
        if done == 3:
            stop.set()

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(handler), base_url="http://router"
    ) as client:
        driven = await drive(
            client, _arrivals(50, 0.05), {"demo": {}}, stop=stop, progress=progress
        )
    assert driven.stopped == "interrupted"
    assert 3 <= len(driven.outcomes) < 50
    assert driven.wall_end >= driven.wall_start


async def test_drive_cancels_in_flight_requests_at_the_cap() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200, json={})

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(handler), base_url="http://router"
    ) as client:
        driven = await drive(client, _arrivals(2, 0.0), {"demo": {}}, max_seconds=0.2)
    assert driven.stopped == "max-seconds"
    assert [o.error for o in driven.outcomes] == ["cancelled", "cancelled"]


def test_settings_are_restored_even_after_an_interrupt(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "state")
    registry = Registry(store)
    registry.put_pool(pool("s", scaling={"kind": "local", "min_replicas": 1, "max_replicas": 2}))
    registry.put_pool(pool("plain"))
    before = WarmSettings(keep_alive_s=42.0)
    Documents(store).upsert(SETTINGS_KEY, before)
    original = store.get(SETTINGS_KEY)
    assert original is not None
    replay_settings = WarmSettings(keep_alive_s=1.0)
    with pytest.raises(KeyboardInterrupt), stack_settings(store, replay_settings, True) as changed:
        assert changed == ["s"]
        assert Documents(store).find(SETTINGS_KEY, WarmSettings) == replay_settings
        scaling = registry.pool("s").scaling
        assert scaling is not None and scaling.min_replicas == 0
        raise KeyboardInterrupt
    restored = store.get(SETTINGS_KEY)
    assert restored is not None and restored.body == original.body
    scaling = registry.pool("s").scaling
    assert scaling is not None and scaling.min_replicas == 1

    # no settings before: none after; --no-scale-to-zero lifts a minimum of 0 to 1
    store.delete(SETTINGS_KEY)
    registry.put_pool(pool("z", scaling={"kind": "local", "min_replicas": 0, "max_replicas": 2}))
    with stack_settings(store, replay_settings, False) as changed:
        assert changed == ["z"]
        z = registry.pool("z").scaling
        assert z is not None and z.min_replicas == 1
    with pytest.raises(KeyNotFound):
        store.get(SETTINGS_KEY)
    z = registry.pool("z").scaling
    assert z is not None and z.min_replicas == 0


def test_interrupts_call_back_instead_of_raising() -> None:
    import os
    import signal

    calls: list[int] = []
    with Interrupts() as signals:
        signals.on_signal = lambda: calls.append(1)
        os.kill(os.getpid(), signal.SIGINT)
    assert signals.count == 1 and calls == [1]


def test_record_size_feeds_pool_usage(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "state")
    record_size(store, "s", 1, now=T0, reason="start", by="test")
    record_size(store, "s", 0, now=T0 + 10, reason="idle", by="test")
    scaled = pool("s", cost=1.0, scaling={"kind": "local", "max_replicas": 2})
    from mpfn.scaling.size import read_size

    usage = pool_usage(scaled, read_size(store, "s"), T0, T0 + 20, 360.0)
    assert usage.replica_hours == pytest.approx(1.0)
