"""`mpfn stats refresh|show` and `mpfn route explain` against real worker processes, and a
new router process starting from the snapshots they wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mpfn.documents import Policy
from mpfn.state import Documents
from mpfn.store import LocalStore
from tests.router.conftest import make_pool
from tests.servers.mpfn_procs import publish_demo, start_router, start_worker
from tests.servers.process import Proc

BODY = {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]}


@dataclass
class Setup:
    store: LocalStore
    root: Path
    log_dir: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("cli-routing")
    store = LocalStore(root / "state")
    publish_demo(store, root)
    logs = root / "logs"
    workers: list[Proc] = []
    try:
        fast = start_worker(store, logs, "fast")
        workers.append(fast)
        slow = start_worker(store, logs, "slow", "--inject-delay-ms", "30")
        workers.append(slow)
        docs = Documents(store)
        docs.upsert("pools/fast.json", make_pool("fast", fast.url))
        docs.upsert("pools/slow.json", make_pool("slow", slow.url))
        gpu = make_pool("gpu", fast.url).model_copy(update={"hardware": ["nvidia"]})
        docs.upsert("pools/gpu.json", gpu)
        docs.upsert("pools/gone.json", make_pool("gone", "http://127.0.0.1:9"))
        yield Setup(store, root, logs)
    finally:
        for w in workers:
            w.stop()


def mpfn(setup: Setup, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPFN_")}
    proc = subprocess.run(
        [sys.executable, "-m", "mpfn", "--state", str(setup.store.root), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=setup.root,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def test_stats_refresh_measures_every_pool(setup: Setup) -> None:
    docs = {d["pool"]: d for d in json.loads(mpfn(setup, "stats", "refresh", "--json").stdout)}
    assert set(docs) == {"fast", "slow", "gpu", "gone"}
    assert docs["fast"]["loaded"] == ["demo/1"] and docs["fast"]["errors"] == 0
    assert docs["slow"]["models"]["demo/1"]["ms"] >= 30.0
    assert docs["slow"]["models"]["demo/1"]["samples"] == 3
    assert docs["fast"]["models"]["demo/1"]["ms"] < docs["slow"]["models"]["demo/1"]["ms"]
    assert docs["gone"]["latency"] is None and docs["gone"]["error_rate"] == 1.0
    assert docs["gone"]["last_error"]
    shown = json.loads(mpfn(setup, "stats", "show", "--json").stdout)
    assert sorted(d["pool"] for d in shown) == ["fast", "gone", "gpu", "slow"]
    table = mpfn(setup, "stats", "show").stdout
    assert "fast" in table and "demo/1" in table


def test_route_explain(setup: Setup) -> None:
    out = json.loads(mpfn(setup, "route", "explain", "demo", "--json").stdout)
    assert out["choice"] == "fast"
    assert out["plan"][0] == {"pool": "fast", "model": "demo/1", "expected_ms": pytest.approx(
        out["candidates"][0]["expected_ms"])}  # fmt: skip
    assert {e["pool"]: e["reason"] for e in out["excluded"]} == {
        "gpu": "hardware nvidia not in cpu"
    }
    by_pool = {c["pool"]: c for c in out["candidates"]}
    assert by_pool["slow"]["expected_ms"] >= 30.0
    # the failure rate of the snapshot fades with its age (half-life 60 s)
    assert by_pool["gone"]["error_rate"] > 0.5 and out["candidates"][-1]["pool"] == "gone"
    assert out["route_reason"].startswith("slo-then-cost: ")
    pinned = json.loads(
        mpfn(setup, "route", "explain", "demo", "-H", "x-mpfn-pool=slow", "--json").stdout
    )
    assert pinned["choice"] == "slow" and pinned["route_reason"].endswith("pinned")
    human = mpfn(setup, "route", "explain", "demo", "--header", "x-mpfn-latency-budget-ms: 20")
    assert "choice: fast" in human.stdout and "hardware nvidia not in cpu" in human.stdout
    assert "SLO 20 ms" in human.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ghost"], "unknown model 'ghost'"),
        (["demo", "--version", "9"], "has no version '9'"),
        (["demo", "-H", "x-mpfn-latency-budget-ms=soon"], "must be a positive number"),
        (["demo", "-H", "x-mpfn-pool=nowhere"], "does not serve model"),
        (["demo", "-H", "nonsense"], "expected NAME=VALUE"),
        (["demo", "--protocol", "grpc"], "--protocol must be v2 or openai"),
    ],
)
def test_route_explain_errors_are_one_line(setup: Setup, args: list[str], message: str) -> None:
    proc = mpfn(setup, "route", "explain", *args, ok=False)
    assert proc.returncode == 1
    assert message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_new_router_starts_from_the_snapshots(setup: Setup) -> None:
    mpfn(setup, "stats", "refresh", "--pool", "fast", "--pool", "slow")
    Documents(setup.store).upsert("policies/demo.json", Policy(name="demo", objective="fastest"))
    router = start_router(setup.store, setup.log_dir, name="router-from-stats")
    try:
        with httpx.Client(base_url=router.url, timeout=30) as client:
            pools = [
                client.post("/v2/models/demo/infer", json=BODY).headers["x-mpfn-pool"]
                for _ in range(10)
            ]
    finally:
        router.stop()
        setup.store.delete("policies/demo.json")
    # Without snapshots the first two requests go to different pools; with them the
    # router knows from its first request that the slow pool is not near the fastest.
    assert pools == ["fast"] * 10
