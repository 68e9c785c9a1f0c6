"""Metrics where nothing scrapes: CloudWatch embedded-metric-format lines (one batch per
flush) and pushes to a real Prometheus Pushgateway on loopback."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mpfn.demo import demo_model_version
from mpfn.functions.router.asgi import create_app
from mpfn.functions.router.lambda_handler import event_loop, make_handler
from mpfn.functions.router.settings import RouterSettings
from mpfn.store import LocalStore
from mpfn.telemetry.emf import EmfExporter, histogram_values
from mpfn.telemetry.push import Pusher
from tests.router.backend import Backend, serve
from tests.router.conftest import make_pool, seed, settings
from tests.servers.mpfn_procs import publish_demo, start_router, start_worker
from tests.servers.ports import unused_port
from tests.servers.process import Proc, wait_until
from tests.servers.pushgateway import gateway_value

BODY = b'{"inputs":[{"name":"x","shape":[1,16],"datatype":"FP32","data":[0]}]}'
UNITS = {"Count", "Seconds", "Milliseconds", "None"}


def assert_emf(doc: dict[str, Any]) -> None:
    """The structure CloudWatch requires of an embedded-metric-format document."""
    meta = doc["_aws"]
    assert isinstance(meta["Timestamp"], int) and meta["Timestamp"] > 1_600_000_000_000
    assert meta["CloudWatchMetrics"]
    for directive in meta["CloudWatchMetrics"]:
        assert isinstance(directive["Namespace"], str) and directive["Namespace"]
        assert directive["Dimensions"]
        for dimension_set in directive["Dimensions"]:
            assert 1 <= len(dimension_set) <= 30
            for name in dimension_set:
                assert isinstance(doc[name], str) and 0 < len(doc[name]) <= 1024
        assert 1 <= len(directive["Metrics"]) <= 100
        for metric in directive["Metrics"]:
            assert set(metric) == {"Name", "Unit"} and metric["Unit"] in UNITS
            v = doc[metric["Name"]]
            values = v if isinstance(v, list) else [v]
            assert 1 <= len(values) <= 100
            assert all(isinstance(x, int | float) and math.isfinite(x) for x in values)


def emf_docs(text: str) -> list[dict[str, Any]]:
    docs = [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]
    for doc in docs:
        assert_emf(doc)
    return docs


def metric(docs: list[dict[str, Any]], name: str, **dims: str) -> Any:
    found = [d[name] for d in docs if name in d and all(d.get(k) == v for k, v in dims.items())]
    assert len(found) <= 1, found
    return found[0] if found else None


def test_histogram_values_follow_the_distribution() -> None:
    bounds = [0.001, 0.01, 0.1, math.inf]
    assert histogram_values(bounds, [0, 0, 0, 0]) == []
    assert histogram_values(bounds, [2, 1, 0, 1]) == [0.0005, 0.0005, 0.0055, 0.1]
    many = histogram_values(bounds, [900, 100, 0, 0])
    assert len(many) == 100 and many.count(0.0005) == 90 and many.count(0.0055) == 10


def test_exporter_reports_increases_once_per_flush() -> None:
    registry = CollectorRegistry()
    requests = Counter("demo_requests", "r", ["model"], registry=registry)
    latency = Histogram("demo_seconds", "l", ["model"], buckets=(0.1, 1.0), registry=registry)
    Gauge("demo_inflight", "g", registry=registry).set(3)
    exporter = EmfExporter(registry, namespace="mpfn", fixed={"service": "router"})
    requests.labels("m").inc(5)
    latency.labels("m").observe(0.05)
    first = emf_docs("\n".join(exporter.flush()))
    assert metric(first, "demo_requests_total", model="m") == 5
    assert metric(first, "demo_seconds", model="m") == [0.05]
    assert metric(first, "demo_inflight", service="router") == 3
    (doc,) = [d for d in first if "model" in d]
    (directive,) = doc["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "mpfn"
    assert directive["Dimensions"] == [["service", "model"]]
    units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert units == {"demo_requests_total": "Count", "demo_seconds": "Seconds"}
    second = emf_docs("\n".join(exporter.flush()))
    assert metric(second, "demo_requests_total", model="m") is None  # nothing new
    requests.labels("m").inc(2)
    assert metric(emf_docs("\n".join(exporter.flush())), "demo_requests_total", model="m") == 2


def test_settings_choose_the_export_from_the_environment() -> None:
    assert RouterSettings.from_env({}).emf is False
    assert RouterSettings.from_env({"AWS_LAMBDA_FUNCTION_NAME": "r"}).emf is True
    pushing = RouterSettings.from_env(
        {"AWS_LAMBDA_FUNCTION_NAME": "r", "MPFN_PUSHGATEWAY_URL": "http://127.0.0.1:9091"}
    )
    assert pushing.emf is False and pushing.pushgateway_url == "http://127.0.0.1:9091"
    assert RouterSettings.from_env({"MPFN_ROUTER_EMF": "on"}).emf is True
    with pytest.raises(ValueError, match="MPFN_ROUTER_EMF"):
        RouterSettings.from_env({"MPFN_ROUTER_EMF": "maybe"})
    with pytest.raises(ValueError, match="pushgateway_url"):
        RouterSettings(pushgateway_url="ftp://x")


async def test_router_writes_emf_lines_per_flush_not_per_request(
    store: LocalStore, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(store, settings=settings(emf=True, usage_flush_s=3600))
    transport = httpx.ASGITransport(app=app)
    try:
        async with (
            serve(Backend("a")) as a,
            httpx.AsyncClient(transport=transport, base_url="http://router") as client,
        ):
            seed(store, models=[demo_model_version()], pools=[make_pool("pa", a.url)])
            for _ in range(5):
                r = await client.post("/v2/models/demo/infer", content=BODY)
                assert r.status_code == 200
            await client.post("/v2/models/unknown-model/infer", content=BODY)
            assert '"_aws"' not in capsys.readouterr().out  # nothing per request
            await app.maintain()
            docs = emf_docs(capsys.readouterr().out)
            assert docs and all(d["service"] == "router" for d in docs)
            assert {d["_aws"]["CloudWatchMetrics"][0]["Namespace"] for d in docs} == {"mpfn"}
            dims = {"model": "demo", "pool": "pa", "status": "2xx"}
            assert metric(docs, "mpfn_router_requests_total", **dims) == 5
            assert len(metric(docs, "mpfn_router_request_seconds", **dims)) == 5
            unknown = {"model": "_unknown", "pool": "none", "status": "4xx"}
            assert metric(docs, "mpfn_router_requests_total", **unknown) == 1
            assert metric(docs, "mpfn_router_circuit_state", pool="pa") == 0
            await app.maintain()
            quiet = emf_docs(capsys.readouterr().out)
            assert metric(quiet, "mpfn_router_requests_total", **dims) is None
            await client.post("/v2/models/demo/infer", content=BODY)
            await app.maintain()
            again = emf_docs(capsys.readouterr().out)
            assert metric(again, "mpfn_router_requests_total", **dims) == 1
    finally:
        await app.runtime.stop()


def test_lambda_keep_warm_ping_flushes_emf_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = LocalStore(tmp_path / "state")
    publish_demo(store, tmp_path)
    worker = start_worker(store, tmp_path / "logs", "emf")
    try:
        seed(store, pools=[make_pool("lw", worker.url)])
        app = create_app(store, settings=settings(emf=True, usage_flush_s=3600))
        handler = make_handler(app)
        event = {
            "version": "2.0",
            "rawPath": "/v2/models/demo/infer",
            "rawQueryString": "",
            "headers": {"host": "fn.lambda-url.us-east-1.on.aws"},
            "requestContext": {
                "http": {"method": "POST", "path": "/v2/models/demo/infer", "sourceIp": "1.2.3.4"},
            },
            "body": json.dumps(
                {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0] * 16}]}
            ),
            "isBase64Encoded": False,
        }
        for _ in range(3):
            assert handler(event, None)["statusCode"] == 200
        capsys.readouterr()
        ack = handler({"source": "aws.scheduler", "detail-type": "Scheduled Event"}, None)
        assert ack["ok"] is True
        docs = emf_docs(capsys.readouterr().out)
        dims = {"model": "demo", "pool": "lw", "status": "2xx"}
        assert metric(docs, "mpfn_router_requests_total", **dims) == 3
        event_loop().run_until_complete(app.runtime.stop())
    finally:
        worker.stop()


async def test_router_pushes_to_the_pushgateway_at_each_flush(
    store: LocalStore, pushgateway: Proc
) -> None:
    app = create_app(
        store,
        settings=settings(
            pushgateway_url=pushgateway.url, instance_id="push-1", usage_flush_s=3600
        ),
    )
    transport = httpx.ASGITransport(app=app)
    labels = {"job": "mpfn-router", "instance": "push-1", "model": "demo", "pool": "pa"}
    try:
        async with (
            serve(Backend("a")) as a,
            httpx.AsyncClient(transport=transport, base_url="http://router") as client,
        ):
            seed(store, models=[demo_model_version()], pools=[make_pool("pa", a.url)])
            for _ in range(4):
                assert (await client.post("/v2/models/demo/infer", content=BODY)).status_code == 200
            await app.maintain()
            assert app.runtime.pusher is not None and app.runtime.pusher.pushed == 1
            got = gateway_value(pushgateway.url, "mpfn_router_requests_total", **labels)
            assert got == 4
            await client.post("/v2/models/demo/infer", content=BODY)
            await app.maintain()  # a push replaces the group: counts never double
            got = gateway_value(pushgateway.url, "mpfn_router_requests_total", **labels)
            assert got == 5
    finally:
        await app.runtime.stop()


def test_router_process_pushes_in_the_background(tmp_path: Path, pushgateway: Proc) -> None:
    store = LocalStore(tmp_path / "state")
    seed(store, models=[demo_model_version()])
    router = start_router(
        store,
        tmp_path / "logs",
        env={"MPFN_PUSHGATEWAY_URL": pushgateway.url, "MPFN_ROUTER_INSTANCE_ID": "bg-1"},
    )
    try:
        r = httpx.post(f"{router.url}/v2/models/demo/infer", content=BODY, timeout=10.0)
        assert r.status_code == 503  # known model, no pool
        labels = {"instance": "bg-1", "model": "demo", "pool": "none", "status": "5xx"}
        wait_until(
            lambda: gateway_value(pushgateway.url, "mpfn_router_requests_total", **labels) == 1,
            30.0,
            "pushed router metrics",
            router,
        )
    finally:
        router.stop()


def test_unreachable_pushgateway_never_raises() -> None:
    registry = CollectorRegistry()
    Counter("demo_requests", "r", registry=registry).inc()
    pusher = Pusher(registry, f"http://127.0.0.1:{unused_port()}", job="j", timeout_s=2.0)
    assert pusher.push() is False and pusher.failed == 1
