"""Overload must not become an outage: a stack driven well past its capacity keeps
serving at capacity, sheds the excess with 503 + Retry-After, and opens no breaker.

Two real ORT workers with room for little (one inference at a time, one waiting, 20 ms
each) behind a real router, and many more concurrent clients than that. Not timed: the
assertions are about what is answered, not how fast (benchmarks/overload.py measures).
"""

from __future__ import annotations

import asyncio
import collections

import httpx
import pytest

from mpfn.auth import issue_key
from mpfn.state import Documents
from tests.reliability.conftest import MakeCluster
from tests.reliability.load import LoadReport, load, run_load
from tests.reliability.stack import DEMO_BODY, DEMO_PATH

SMALL_WORKER = ["--max-concurrency", "1", "--max-queue", "1", "--inject-delay-ms", "20"]


@pytest.mark.parametrize("admission", ["on", "off"])
def test_past_capacity_no_breaker_opens_and_healthy_pools_keep_serving(
    cluster: MakeCluster, admission: str
) -> None:
    """With admission on, the router itself holds the excess back; with it off, the
    workers' own 503 + Retry-After are taken as backpressure, never as failures."""
    c = cluster({"w1": SMALL_WORKER, "w2": SMALL_WORKER}, router={"admission": admission})
    report = load(c.router.url, total=600, concurrency=48)
    statuses = collections.Counter(a.status for a in report.answers)
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[503] > 0, "the load never went past capacity"
    shed = [a for a in report.answers if a.status == 503]
    assert all("shed: at capacity" in a.reason for a in shed), shed[0]
    served = report.by_pool([a for a in report.answers if a.status == 200])
    assert served.get("w1", 0) > 0 and served.get("w2", 0) > 0, served
    last = sorted(report.answers, key=lambda a: a.seq)[-100:]
    assert report.by_pool([a for a in last if a.status == 200]).keys() == {"w1", "w2"}
    metrics = httpx.get(f"{c.router.url}/metrics").text
    circuits = [line for line in metrics.splitlines() if line.startswith("mpfn_router_circuit")]
    assert circuits and all(line.endswith(" 0.0") for line in circuits), circuits
    assert "mpfn_router_failovers_total{" not in metrics  # busy is not a failure
    after = httpx.post(f"{c.router.url}{DEMO_PATH}", json=DEMO_BODY)  # the burst is over
    assert after.status_code == 200, after.text


def test_one_flooding_key_does_not_starve_another(cluster: MakeCluster) -> None:
    """Two API keys on the same model and pools: one floods far past capacity, the other
    sends a few requests at a time. The waiting line is shared by key, so the quiet key's
    requests get slots in turn and are served; the flood is what gets shed."""
    worker = ["--max-concurrency", "1", "--inject-delay-ms", "20"]  # its queue: 64
    c = cluster({"w1": worker, "w2": worker})
    keys = {}
    for name in ("flood", "quiet"):
        plaintext, doc = issue_key(name)
        Documents(c.store).upsert(doc.key, doc)
        keys[name] = {"Authorization": f"Bearer {plaintext}"}
    c.start_router(auth="keys")

    async def both() -> tuple[LoadReport, LoadReport]:
        flood = run_load(c.router.url, total=1500, concurrency=48, headers=keys["flood"])
        quiet = run_load(c.router.url, total=100, concurrency=2, headers=keys["quiet"])
        return await asyncio.gather(flood, quiet)

    flood, quiet = asyncio.run(both())
    assert len(flood.failures) > 0, "the flood never went past capacity"
    assert {a.status for a in [*flood.answers, *quiet.answers]} <= {200, 503}
    assert quiet.ok >= 0.9 * len(quiet.answers), quiet.describe_failures()
