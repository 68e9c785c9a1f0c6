"""Routing with live feedback, end to end: a real router process in front of real ORT
worker processes. A worker is killed under load, one is slowed down, one's circuit
opens and closes again."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mpfn.state import Documents
from mpfn.store import LocalStore
from tests.router.conftest import make_pool
from tests.servers.mpfn_procs import publish_demo, start_router, start_worker
from tests.servers.process import Proc

BODY = {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]}
INFER = "/v2/models/demo/infer"


@dataclass
class Env:
    store: LocalStore
    log_dir: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    root = tmp_path_factory.mktemp("e2e-routing")
    store = LocalStore(root / "state")
    publish_demo(store, root)
    return Env(store, root / "logs")


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes a test starts; all stopped at its end."""
    started: list[Proc] = []
    try:
        yield started
    finally:
        for proc in reversed(started):
            proc.stop()


def add_pools(env: Env, procs: list[Proc], *specs: tuple[str, tuple[str, ...]]) -> None:
    """Start one worker per (pool id, extra worker flags) and register its pool; the
    pools of other tests are removed first."""
    for key in env.store.list("pools/"):
        env.store.delete(key)
    for pool_id, extra in specs:
        worker = start_worker(env.store, env.log_dir, pool_id, *extra)
        procs.append(worker)
        Documents(env.store).upsert(f"pools/{pool_id}.json", make_pool(pool_id, worker.url))


def kill(proc: Proc) -> None:
    """SIGKILL: no graceful shutdown, connections just break."""
    os.killpg(proc.popen.pid, signal.SIGKILL)
    proc.popen.wait(10)


async def load(
    url: str, total: int, concurrency: int, on_done: object = None
) -> list[tuple[int, str]]:
    """Send `total` infer requests with `concurrency` clients; (status, pool) per request
    in the order they were sent. `on_done(n)` is called after the n-th answer."""
    results: list[tuple[int, str]] = [(-1, "")] * total
    sent = done = 0
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def worker() -> None:
            nonlocal sent, done
            while sent < total:
                i, sent = sent, sent + 1
                try:
                    r = await client.post(INFER, json=BODY)
                    results[i] = (r.status_code, r.headers.get("x-mpfn-pool", ""))
                except httpx.HTTPError as exc:
                    results[i] = (0, type(exc).__name__)
                done += 1
                if callable(on_done):
                    on_done(done)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def test_killing_a_worker_under_load_fails_no_request(env: Env, procs: list[Proc]) -> None:
    add_pools(env, procs, ("k1", ()), ("k2", ()))
    router = start_router(env.store, env.log_dir, name="router-kill")
    procs.append(router)
    victim = procs[1]

    def maybe_kill(done: int) -> None:
        if done == 150:
            kill(victim)

    results = asyncio.run(load(router.url, 600, 4, maybe_kill))
    failed = [r for r in results if r[0] != 200]
    assert failed == [], failed[:5]
    assert {pool for _, pool in results[:150]} == {"k1", "k2"}
    assert {pool for _, pool in results[-300:]} == {"k1"}


def test_a_slowed_worker_gets_a_falling_share(env: Env, procs: list[Proc]) -> None:
    add_pools(env, procs, ("fast", ()), ("slow", ("--inject-delay-ms", "40")))
    router = start_router(env.store, env.log_dir, name="router-slow")
    procs.append(router)
    results = asyncio.run(load(router.url, 300, 2))
    assert all(status == 200 for status, _ in results)
    shares = [
        sum(pool == "slow" for _, pool in window) / len(window)
        for window in (results[:10], results[10:100], results[100:])
    ]
    # Before any feedback both pools look alike; once the slow one has answered, its
    # weight in the shared set is its speed relative to the fast one (floored at 5%).
    assert shares[0] > shares[2], shares
    assert shares[1] <= 0.1 and shares[2] <= 0.07, shares


def test_a_circuit_opens_and_a_half_open_probe_closes_it(env: Env, procs: list[Proc]) -> None:
    add_pools(env, procs, ("c1", ()), ("c2", ()))
    router = start_router(
        env.store,
        env.log_dir,
        name="router-breaker",
        settings={"breaker_failures": "2", "breaker_cooldown_s": "1"},
    )
    procs.append(router)
    c2 = procs[1]
    pinned = {"x-mpfn-pool": "c2"}
    with httpx.Client(base_url=router.url, timeout=30) as client:
        assert client.post(INFER, json=BODY, headers=pinned).headers["x-mpfn-pool"] == "c2"
        kill(c2)
        for _ in range(2):
            r = client.post(INFER, json=BODY, headers=pinned)
            assert r.status_code == 503 and "c2: " in r.json()["error"]
        opened = client.post(INFER, json=BODY, headers=pinned)
        assert opened.status_code == 503
        assert "c2: circuit open" in opened.json()["error"]
        assert opened.headers["x-mpfn-route-reason"] == "no candidate; 2 excluded"
        for _ in range(4):
            r = client.post(INFER, json=BODY)
            assert r.status_code == 200 and r.headers["x-mpfn-pool"] == "c1"
            assert "1 excluded" in r.headers["x-mpfn-route-reason"]
        # The pool comes back where it was; after the cool-down one probe closes the circuit.
        procs.append(start_worker(env.store, env.log_dir, "c2", port=c2.port))
        probe = None
        for _ in range(50):
            probe = client.post(INFER, json=BODY, headers=pinned)
            if probe.status_code == 200:
                break
            assert "circuit open" in probe.json()["error"]
            asyncio.run(asyncio.sleep(0.1))
        assert probe is not None and probe.status_code == 200
        assert probe.headers["x-mpfn-pool"] == "c2"
        served = {client.post(INFER, json=BODY).headers["x-mpfn-pool"] for _ in range(30)}
        assert served == {"c1", "c2"}
