"""State faults under load: the store freezes or dies, a document is corrupt, the warmer
fails half-way.

The router reads the registry from the store in the background and serves from its
in-memory snapshot, so none of these faults may fail a request. A frozen or dead store
only stops refreshes (and usage flushes, which are retried); a corrupt document is
replaced by its last good copy, with one clear log line naming it; what a crashed warmer
leaves behind (a truncated stats snapshot, a garbage plan, an unloaded model) changes
nothing a client can see.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mpfn.store import LocalStore
from tests.factories import pool
from tests.reliability.conftest import MakeCluster
from tests.reliability.load import load
from tests.reliability.stack import (
    MotoState,
    count_lines,
    log_text,
    signal_proc,
    upsert,
    usage_total,
)
from tests.servers.mpfn_procs import publish_demo, start_router, start_worker
from tests.servers.process import Proc, wait_until

REFRESH_FAILED = r"state refresh failed, serving the last snapshot"


class S3Stack:
    """Workers on a LocalStore; the router on an S3 state (moto) listing the same model."""

    def __init__(self, root: Path) -> None:
        self.procs: list[Proc] = []
        self.moto = MotoState(root / "logs", "mpfn-fault-key", "mpfn-fault-secret")
        try:
            self._start(root)
        except BaseException:
            self.close()
            raise

    def _start(self, root: Path) -> None:
        local = LocalStore(root / "state")
        doc = publish_demo(local, root)
        pools = []
        for name in ("w1", "w2"):
            self.procs.append(start_worker(local, root / "logs", name))
            pools.append(pool(name, self.procs[-1].url))
        upsert(self.moto.store(), [doc, *pools])
        self.router = start_router(
            self.moto.url,
            root / "logs",
            cwd=self.moto.project_dir(root / "project"),
            env=self.moto.env(),
        )
        self.procs.append(self.router)

    def close(self) -> None:
        for proc in [self.moto.proc, *self.procs]:
            if proc.popen.poll() is None:
                signal_proc(proc, signal.SIGCONT)
            proc.stop()


@pytest.fixture
def s3_stack(tmp_path: Path) -> Iterator[S3Stack]:
    stack = S3Stack(tmp_path)
    try:
        yield stack
    finally:
        stack.close()


def refresh_failures(router: Proc) -> int:
    return count_lines(log_text(router), REFRESH_FAILED)


def test_router_serves_through_a_frozen_then_dead_store(s3_stack: S3Stack) -> None:
    router, moto = s3_stack.router, s3_stack.moto
    store = moto.store()
    ready = f"{router.url}/v2/health/ready"

    # 1. The store freezes (accepts connections, never answers) while requests flow.
    frozen = load(
        router.url,
        total=3000,
        triggers={50: lambda: signal_proc(moto.proc, signal.SIGSTOP)},
        stop_when=lambda: refresh_failures(router) >= 2,
        min_requests=100,
    )
    assert not frozen.failures, frozen.describe_failures()
    # A frozen store costs a refresh its whole read timeout, so the load may end first:
    # wait until the router has seen two failed refreshes, then load it again.
    wait_until(lambda: refresh_failures(router) >= 2, 120, "two failed refreshes", router)
    still_frozen = load(router.url, total=200)
    assert not still_frozen.failures, still_frozen.describe_failures()
    assert httpx.get(ready).status_code == 200

    # 2. It thaws: the counts the router could not write are written now, none lost.
    # (Writes that timed out while it was frozen may still be applied late, with an older
    # count; the minute's next flush rewrites the absolute count, so traffic goes on.)
    signal_proc(moto.proc, signal.SIGCONT)
    thawed = load(router.url, total=20)
    assert not thawed.failures, thawed.describe_failures()
    total = frozen.ok + still_frozen.ok + thawed.ok
    wait_until(lambda: usage_total(store, "demo") == total, 60, "usage flushed", router)

    # 3. It dies for good: still every request answered, still ready.
    before = refresh_failures(router)
    dead = load(
        router.url,
        total=3000,
        triggers={20: moto.stop},
        stop_when=lambda: refresh_failures(router) >= before + 2,
        min_requests=100,
    )
    assert not dead.failures, dead.describe_failures()
    wait_until(lambda: refresh_failures(router) >= before + 2, 120, "two failed refreshes", router)
    still_dead = load(router.url, total=200)
    assert not still_dead.failures, still_dead.describe_failures()
    assert httpx.get(ready).status_code == 200
    served = dead.by_pool()
    assert served.get("w1", 0) > 0 and served.get("w2", 0) > 0, served


def invalid_lines(router: Proc, key: str) -> int:
    return count_lines(log_text(router), rf"^.*{key}: invalid: .*keeping the last good copy.*$")


def test_corrupt_documents_keep_their_last_good_copy(cluster: MakeCluster) -> None:
    c = cluster({"w1": [], "w2": []}, router={})
    store, router = c.store, c.router
    model_key, pool_key = "models/demo/1.json", "pools/w2.json"
    good = {key: store.get(key) for key in (model_key, pool_key)}

    def corrupt() -> None:
        store.put(model_key, b'{"name": "demo", "version": "1", "format": ')  # cut off
        store.put(pool_key, b'{"id": "w2", "cloud": "local", "endpoint": "not a url"}')

    report = load(
        router.url,
        total=3000,
        triggers={50: corrupt},
        stop_when=lambda: min(invalid_lines(router, k) for k in good) > 0,
        min_requests=300,
    )
    assert not report.failures, report.describe_failures()
    served = report.by_pool(report.answers[-100:])
    assert served.get("w1", 0) > 0 and served.get("w2", 0) > 0, served  # w2 still known
    # Each corrupt version is reported once, with its key and what is wrong with it,
    # however many refreshes see it.
    text = log_text(router)
    assert invalid_lines(router, model_key) == 1, text[-3000:]
    assert invalid_lines(router, pool_key) == 1, text[-3000:]
    assert "endpoint" in next(line for line in text.splitlines() if pool_key in line)

    # A repaired document is used again, and is not reported.
    for key, blob in good.items():
        assert blob is not None
        store.put(key, blob.body)
    after = load(router.url, total=100)
    assert not after.failures, after.describe_failures()
    assert invalid_lines(router, model_key) == 1 and invalid_lines(router, pool_key) == 1


def test_a_failing_warmer_never_affects_routing(cluster: MakeCluster) -> None:
    """What a warmer that dies half-way leaves behind: a truncated stats snapshot, a
    garbage plan, and a model it unloaded from one worker before crashing."""
    c = cluster({"w1": [], "w2": []}, router={})
    store, router = c.store, c.router
    w1 = c.workers["w1"].url

    def warmer_dies() -> None:
        store.put("stats/w1.json", b'{"pool": "w1", "latency_ms": {"demo:1": ')
        store.put("plans/warm.json", b"\x00\xff not a plan")
        assert httpx.post(f"{w1}/v2/repository/models/demo/unload").status_code == 200

    report = load(
        router.url,
        total=3000,
        triggers={50: warmer_dies},
        stop_when=lambda: invalid_lines(router, "stats/w1.json") > 0,
        min_requests=200,
    )
    assert not report.failures, report.describe_failures()
    assert invalid_lines(router, "stats/w1.json") == 1
    # The unloaded model was loaded again on demand by the requests that went to w1.
    assert httpx.get(f"{w1}/v2/models/demo/ready").status_code == 200
    assert report.by_pool(report.answers[-100:]).get("w1", 0) > 0
