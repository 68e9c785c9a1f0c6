"""A router served by several processes: `/metrics` from any of them covers all of them,
each process admits its share of every pool, and pushed metrics keep one group each."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import grpc
import httpx
import pytest

from mpfn.functions.router.__main__ import parse_args
from mpfn.functions.router.metrics import RouterMetrics
from mpfn.functions.router.runtime import push_instance
from mpfn.functions.router.settings import RouterSettings
from mpfn.functions.router.siblings import Siblings, merge
from mpfn.protocol import grpc_predict_v2_pb2 as pb
from mpfn.protocol.grpc_codec import SERVICE
from mpfn.store import LocalStore
from mpfn.up import UpPlan, components
from tests.router.test_metrics import parse, value
from tests.servers.mpfn_procs import start_entry_router

REQUESTS = "mpfn_router_requests_total"
SECONDS = "mpfn_router_request_seconds_count"


def rendered(requests: int, *, circuit: float = 0.0, age: float = 1.0) -> bytes:
    """One process's metrics: `requests` 2xx answers from pool p1, a circuit and an age."""
    metrics = RouterMetrics()
    for _ in range(requests):
        metrics.observe("demo", "p1", 200, 0.002)
    text = metrics.render().decode()
    text += (
        "# HELP mpfn_router_circuit_state c\n# TYPE mpfn_router_circuit_state gauge\n"
        f'mpfn_router_circuit_state{{pool="p1"}} {circuit}\n'
        "# HELP mpfn_router_state_age_seconds a\n# TYPE mpfn_router_state_age_seconds gauge\n"
        f"mpfn_router_state_age_seconds {age}\n"
    )
    return text.encode()


def test_merge_adds_counts_and_keeps_the_worst_circuit_and_age() -> None:
    merged = parse(merge([rendered(3, age=0.5), rendered(4, circuit=2.0, age=4.0)]).decode())
    labels = {"model": "demo", "pool": "p1", "status": "2xx"}
    assert value(merged, REQUESTS, **labels) == 7
    assert value(merged, SECONDS, model="demo", pool="p1", status="2xx") == 7
    buckets = [v for (n, _), v in merged.items() if n == "mpfn_router_request_seconds_bucket"]
    assert max(buckets) == 7
    assert value(merged, "mpfn_router_circuit_state", pool="p1") == 2.0
    assert value(merged, "mpfn_router_state_age_seconds") == 4.0


def test_merge_of_one_text_is_that_text() -> None:
    text = rendered(5)
    assert parse(merge([text]).decode()) == parse(text.decode())


def test_series_of_one_process_only_are_kept() -> None:
    one = RouterMetrics()
    one.observe("demo", "p1", 200, 0.002)
    other = RouterMetrics()
    other.observe("demo", "p2", 503, 0.002)
    merged = parse(merge([one.render(), other.render()]).decode())
    assert value(merged, REQUESTS, model="demo", pool="p1", status="2xx") == 1
    assert value(merged, REQUESTS, model="demo", pool="p2", status="5xx") == 1


async def test_siblings_answer_for_each_other_and_gone_ones_are_skipped(tmp_path: Path) -> None:
    two, three = rendered(2), rendered(3)
    a = Siblings(tmp_path, lambda: two, name="a")
    b = Siblings(tmp_path, lambda: three, name="b")
    gone = tmp_path / "gone.sock"  # a socket nothing listens on any more
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(gone))
    await a.start()
    await b.start()
    try:
        for one in (a, b):
            merged = parse((await one.render_all()).decode())
            assert value(merged, REQUESTS, model="demo", pool="p1", status="2xx") == 5
        assert not gone.exists()
    finally:
        await a.stop()
        await b.stop()
    assert list(tmp_path.iterdir()) == []
    assert await a.render_all() == two  # alone: its own metrics, unmerged


def test_each_process_admits_its_share() -> None:
    one = RouterSettings()
    three = RouterSettings(processes=3)
    assert three.admission_config.per_capacity == pytest.approx(one.limit_per_capacity / 3)
    assert three.admission_config.max_limit == pytest.approx(one.max_limit / 3)
    assert three.line_bound == 342  # 1024 / 3, rounded up
    assert RouterSettings(processes=1024, max_limit=256).admission_config.max_limit == 1.0
    env = {"MPFN_ROUTER_PROCESSES": "4", "MPFN_ROUTER_METRICS_DIR": "/run/m"}
    settings = RouterSettings.from_env(env)
    assert (settings.processes, settings.metrics_dir) == (4, "/run/m")
    with pytest.raises(ValueError, match="processes must be >= 1"):
        RouterSettings(processes=0)


def test_workers_come_from_the_flag_or_web_concurrency() -> None:
    assert parse_args([], {}).workers == 1
    assert parse_args([], {"WEB_CONCURRENCY": "3"}).workers == 3
    assert parse_args(["--workers", "2"], {"WEB_CONCURRENCY": "3"}).workers == 2
    with pytest.raises(SystemExit):
        parse_args(["--workers", "0"], {})


def test_each_process_pushes_under_a_group_of_its_own() -> None:
    assert push_instance(RouterSettings(), "w-1") == "w-1"
    assert push_instance(RouterSettings(instance_id="edge"), "edge-1") == "edge"
    several = push_instance(RouterSettings(instance_id="edge", processes=2), "edge-1")
    assert several == f"edge-{os.getpid()}"


def test_two_processes_serve_one_port_and_report_together(tmp_path: Path) -> None:
    """`python -m mpfn.functions.router --workers 2 --grpc-port P`: every scrape counts
    every request, whichever process answers it; the gRPC port is served too; the private
    socket directory goes with the router."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    store = LocalStore(tmp_path / "state")
    proc, grpc_port = start_entry_router(
        store, tmp_path / "logs", args=["--workers", "2"], grpc=True, env={"TMPDIR": str(tmp)}
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:  # bound by each
            live = channel.unary_unary(
                f"/{SERVICE}/ServerLive",
                request_serializer=pb.ServerLiveRequest.SerializeToString,
                response_deserializer=pb.ServerLiveResponse.FromString,
            )
            assert live(pb.ServerLiveRequest(), timeout=10).live
        sent = 40
        for _ in range(sent):  # a connection each: the kernel spreads them over processes
            with httpx.Client(base_url=proc.url) as client:
                assert client.post("/v2/models/nope/infer", json={}).status_code == 404
        (shared,) = tmp.iterdir()
        sockets = sorted(shared.glob("*.sock"))
        assert len(sockets) == 2
        own = [parse(asyncio.run(_read(path)).decode()) for path in sockets]
        labels = {"model": "_unknown", "pool": "none", "status": "4xx"}
        assert sum(value(one, REQUESTS, **labels) for one in own) == sent
        for _ in range(10):  # each scrape may reach either process
            with httpx.Client(base_url=proc.url) as client:
                scraped = parse(client.get("/metrics").text)
            assert value(scraped, REQUESTS, **labels) == sent
    finally:
        proc.stop()
    assert list(tmp.iterdir()) == []


async def _read(path: Path) -> bytes:
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        return await reader.read()
    finally:
        writer.close()


def test_mpfn_up_runs_each_router_on_several_processes(tmp_path: Path) -> None:
    plan = UpPlan(tmp_path, 8080, (), router_processes=2)
    (router,) = components(plan, LocalStore(tmp_path).url)
    assert router.args[-2:] == ("--workers", "2")
    (router,) = components(UpPlan(tmp_path, 8080, ()), LocalStore(tmp_path).url)
    assert "--workers" not in router.args
