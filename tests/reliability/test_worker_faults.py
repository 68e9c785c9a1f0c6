"""Worker faults under load: a killed, a frozen, a crashing and a slow worker.

Two real ORT workers serve the demo model behind a real router; a bounded load generator
keeps requests in flight while one worker is broken. The other worker stays healthy, so
every request must be answered 200: failover hides the fault from clients.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import httpx

from mpfn.documents import Policy
from tests.reliability.conftest import MakeCluster
from tests.reliability.load import load
from tests.reliability.stack import DEMO_BODY, DEMO_PATH, signal_proc


def test_killed_worker_fails_over_with_no_failed_request(cluster: MakeCluster) -> None:
    c = cluster({"w1": [], "w2": []}, router={})
    w1 = c.workers["w1"]
    report = load(c.router.url, total=300, concurrency=4, triggers={60: lambda: w1.popen.kill()})
    assert not report.failures, report.describe_failures()
    assert w1.popen.poll() is not None, "the worker was not killed during the run"
    served = report.by_pool()
    assert served.get("w1", 0) > 0 and served.get("w2", 0) > 0, served
    last = sorted(report.answers, key=lambda a: a.seq)[-100:]
    assert report.by_pool(last) == {"w2": 100}


def test_frozen_worker_fails_over_with_no_failed_request(cluster: MakeCluster) -> None:
    """SIGSTOP: the worker accepts connections (the kernel does) but never answers."""
    c = cluster(
        {"w1": [], "w2": []},
        # A request waits for a pool's answer at most a third of its deadline while
        # another pool is left to try.
        policies=[Policy(name="demo", timeout_ms=3_000)],
        router={},
    )
    w1 = c.workers["w1"]
    try:
        report = load(
            c.router.url,
            total=200,
            concurrency=4,
            triggers={40: lambda: signal_proc(w1, signal.SIGSTOP)},
        )
    finally:
        signal_proc(w1, signal.SIGCONT)
    assert not report.failures, report.describe_failures()
    served = report.by_pool()
    assert served.get("w2", 0) > served.get("w1", 0), served
    failed_over = [a for a in report.answers if "after w1" in a.reason]
    assert failed_over, "no request was caught on the frozen worker"


async def _crash_mid_request(
    router: str, worker: str, kill: Callable[[], None]
) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=router, timeout=60) as client:
        calls = [asyncio.create_task(client.post(DEMO_PATH, json=DEMO_BODY)) for _ in range(3)]

        async def busy() -> bool:
            text = (await client.get(f"{worker}/metrics")).text
            return any(
                line.startswith("mpfn_worker_inflight ") and float(line.split()[1]) >= 1
                for line in text.splitlines()
            )

        for _ in range(600):  # the requests reach the worker within a few polls
            if await busy():
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the requests never reached the worker")
        kill()
        return list(await asyncio.gather(*calls))


def test_worker_crash_mid_request_fails_over_within_the_deadline(cluster: MakeCluster) -> None:
    """The cheaper worker holds each request for seconds; it dies while holding them."""
    c = cluster(
        {"w1": ["--inject-delay-ms", "5000"], "w2": []},
        # capacity 2: the router's admission limit lets all three requests onto w1
        pools={"w1": {"cost_per_hour": 0.0, "capacity": 2}, "w2": {"cost_per_hour": 50.0}},
        policies=[Policy(name="demo", objective="cheapest", timeout_ms=30_000)],
        router={},
    )
    w1 = c.workers["w1"]
    replies = asyncio.run(_crash_mid_request(c.router.url, w1.url, w1.popen.kill))
    assert [r.status_code for r in replies] == [200, 200, 200], [r.text for r in replies]
    for reply in replies:
        assert reply.headers["x-mpfn-pool"] == "w2"
        assert "attempt 2 after w1" in reply.headers["x-mpfn-route-reason"]


def test_slow_worker_gets_less_traffic_and_no_request_fails(cluster: MakeCluster) -> None:
    c = cluster({"slow": ["--inject-delay-ms", "100"], "fast": []}, router={})
    report = load(c.router.url, total=200, concurrency=4)
    assert not report.failures, report.describe_failures()
    served = report.by_pool()
    assert served.get("fast", 0) > served.get("slow", 0), served
