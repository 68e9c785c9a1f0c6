"""Usage counts across router restarts: nothing lost, nothing counted twice.

Routers count answered requests per (model, minute) and create documents with absolute
counts, `usage/<model>/.../<minute>-<instance>.<seq>.json`; the latest sequence of each
(instance, minute) counts. A router stopped with SIGTERM writes what it has not flushed
yet; the next router process has a new instance id, so it writes documents of its own
next to the old ones. Whatever the restarts, the sum over the counting usage documents
equals the requests answered for the model, and requests for unknown models count
nowhere.
"""

from __future__ import annotations

import httpx

from tests.reliability.conftest import Cluster, MakeCluster
from tests.reliability.load import LoadReport, load
from tests.reliability.stack import DEMO_BODY, usage_docs, usage_total
from tests.servers.process import Proc


def unknown_model_requests(router: Proc, n: int) -> None:
    with httpx.Client(base_url=router.url) as client:
        for i in range(n):
            reply = client.post(f"/v2/models/nope-{i % 3}/infer", json=DEMO_BODY)
            assert reply.status_code == 404


def answered(reports: list[LoadReport]) -> int:
    return sum(r.ok for r in reports)


def test_usage_counts_survive_restarts_exactly(cluster: MakeCluster) -> None:
    c: Cluster = cluster({"w1": [], "w2": []})
    reports: list[LoadReport] = []

    # Router A never flushes on its own: only its SIGTERM shutdown writes the counts.
    a = c.start_router("router-a", usage_flush_s="3600")
    reports.append(load(a.url, total=150))
    unknown_model_requests(a, 10)
    assert usage_total(c.store, "demo") == 0
    a.stop()
    after_a = usage_docs(c.store, "demo")
    assert sum(d["count"] for d in after_a.values()) == answered(reports) == 150

    # Router B flushes every 0.2 s and is stopped (SIGTERM) while requests are in flight;
    # requests it refused while shutting down are neither answered nor counted.
    b = c.start_router("router-b")
    reports.append(
        load(
            b.url,
            total=2000,
            triggers={100: b.stop},
            stop_when=lambda: b.popen.poll() is not None,
            min_requests=100,
        )
    )
    assert reports[-1].ok >= 100

    # Router C starts afresh on the same state and adds its own documents.
    cc = c.start_router("router-c")
    reports.append(load(cc.url, total=120))
    cc.stop()

    docs = usage_docs(c.store, "demo")
    per: dict[str, int] = {}
    for d in docs.values():
        per[d["instance"]] = per.get(d["instance"], 0) + d["count"]
    counted = sum(d["count"] for d in docs.values())
    assert counted == answered(reports), (per, [r.ok for r in reports])
    instances = {d["instance"] for d in docs.values()}
    assert len(instances) == 3, instances  # one per router process
    for key, doc in after_a.items():  # A's documents were never overwritten
        assert docs[key] == doc
    assert not any(k.startswith("usage/nope") for k in c.store.list("usage/"))
