"""Serving survives the loss of a whole site: real processes, two sites, each router
reading only its own site's replica.

Site A's replica is an S3 bucket (moto) reached through a link the test can cut
(`tests.servers.link`); site B's replica is the primary (a local directory). A has a
router and a worker pool, B a router and two worker pools. Under load on B's router,
every process of A is killed and A's store made unreachable: no request fails. A router
of B started during the outage serves. A model pushed during the outage reaches B at
once and A after it comes back (`sync_sites`), with nothing lost. Under load on A's
router, A's own pool dies and its requests fail over to B's pools.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from mpfn.artifacts import push_model
from mpfn.demo import build_demo_model, demo_model_version
from mpfn.registry import Registry
from mpfn.replication import Site, Sites, open_state, read_sites, sync_sites, write_sites
from mpfn.replication.fanout import ReplicatedStore, behind_sites
from mpfn.store import LocalStore
from mpfn.store.s3 import S3Store
from tests.factories import pool
from tests.servers.link import Link, link
from tests.servers.moto_s3 import moto_server
from tests.servers.mpfn_procs import start_router, start_worker
from tests.servers.process import Proc

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 16], "data": [0.5] * 16}]}
KEYS = {"AWS_ACCESS_KEY_ID": "mpfn-site-key", "AWS_SECRET_ACCESS_KEY": "mpfn-site-secret"}
FAST: dict[str, Any] = {
    "connect_timeout": 1.0,
    "read_timeout": 2.0,
    "max_attempts": 1,
    "region": "us-east-1",
}


@dataclass
class Sites2:
    root: Path
    primary: LocalStore  # site B's replica
    a_store: S3Store
    a_link: Link
    a_env: dict[str, str]
    procs: dict[str, Proc] = field(default_factory=dict)

    def writer(self) -> ReplicatedStore:
        store = open_state(self.primary.url)
        assert isinstance(store, ReplicatedStore)
        return store

    def a_worker(self, port: int | None = None) -> Proc:
        return start_worker(self.a_store.url, self.root / "logs", "a-1", preload=None,
                            env=self.a_env, port=port)  # fmt: skip

    def a_router(self) -> Proc:
        return start_router(self.a_store.url, self.root / "logs", "router-a",
                            settings={"site": "a"}, env=self.a_env)  # fmt: skip

    def b_router(self, name: str = "router-b") -> Proc:
        return start_router(self.primary, self.root / "logs", name, settings={"site": "b"})

    def push(self, name: str) -> None:
        path = self.root / f"{name}.onnx"
        path.write_bytes(build_demo_model())
        store = self.writer()
        ref = push_model(store, path, name=name, version="1")
        Registry(store).add_model(demo_model_version(ref, name=name))


@pytest.fixture
def sites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sites2]:
    for key, value in KEYS.items():
        monkeypatch.setenv(key, value)  # this process writes A's replica as the CLI would
    with contextlib.ExitStack() as stack:
        moto = stack.enter_context(moto_server(tmp_path / "logs"))
        a_link = stack.enter_context(link("127.0.0.1", moto.port))
        options = {"s3": {"endpoint_url": a_link.url, **FAST}}
        a_store = S3Store("site-a", "mpfn", endpoint_url=a_link.url, **FAST)
        a_store.client.create_bucket(Bucket="site-a")
        primary = LocalStore(tmp_path / "site-b")
        a_site, b_site = Site(state=a_store.url, options=options), Site(state=primary.url)
        write_sites(primary, Sites(sites={"a": a_site, "b": b_site}))
        a_env = {**KEYS, "AWS_ENDPOINT_URL_S3": a_link.url, "AWS_DEFAULT_REGION": "us-east-1"}
        made = Sites2(tmp_path, primary, a_store, a_link, a_env)
        made.push("demo")
        made.procs["a-1"] = made.a_worker()
        made.procs["b-1"] = start_worker(primary, tmp_path / "logs", "b-1", preload=None)
        made.procs["b-2"] = start_worker(primary, tmp_path / "logs", "b-2", preload=None)
        registry = Registry(made.writer())
        for pid, proc in made.procs.items():
            registry.put_pool(pool(pid, proc.url, site=pid[0], region=pid[0], capacity=8))
        made.procs["router-a"] = made.a_router()
        made.procs["router-b"] = made.b_router()
        try:
            yield made
        finally:
            for proc in made.procs.values():
                proc.stop()


@contextlib.contextmanager
def load(url: str, model: str = "demo", clients: int = 3) -> Iterator[Counter[str]]:
    """Requests to `url` from `clients` threads until the block ends: status -> count
    (a connection error counts as `error`)."""
    seen: Counter[str] = Counter()
    done = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while not done.is_set():
                try:
                    answer = http.post(f"{url}/v2/models/{model}/infer", json=BODY)
                    seen[str(answer.status_code)] += 1
                    if answer.status_code != 200:
                        seen[f"body {answer.text[:200]}"] += 1
                except httpx.HTTPError as exc:
                    seen[f"error {type(exc).__name__}"] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    try:
        yield seen
    finally:
        done.set()
        for t in threads:
            t.join(60)


def infer(router: Proc, model: str, **headers: str) -> httpx.Response:
    return httpx.post(f"{router.url}/v2/models/{model}/infer", json=BODY, headers=headers,
                      timeout=60)  # fmt: skip


def kill(proc: Proc) -> None:
    proc.popen.send_signal(signal.SIGKILL)
    proc.popen.wait(10)


def test_site_b_serves_through_the_loss_of_site_a_and_a_catches_up(sites: Sites2) -> None:
    assert infer(sites.procs["router-a"], "demo").status_code == 200
    with load(sites.procs["router-b"].url) as seen:
        time.sleep(1.0)
        for name in ("router-a", "a-1"):
            kill(sites.procs[name])
        sites.a_link.cut()  # A's store: unreachable

        late_router = sites.b_router("router-b-late")  # started during the outage
        sites.procs["router-b-late"] = late_router
        assert infer(late_router, "demo").status_code == 200

        sites.push("late")  # a write during the outage: the primary has it, A missed it
        assert behind_sites(sites.primary) == {"a"}
        deadline = time.monotonic() + 10
        while infer(late_router, "late").status_code != 200:  # after the router's refresh
            assert time.monotonic() < deadline, "B never served the model pushed during the outage"
            time.sleep(0.2)
        time.sleep(1.0)
    assert seen["200"] > 50, seen
    assert set(seen) == {"200"}, seen  # not one request failed

    sites.a_link.restore()
    listed = read_sites(sites.primary)
    assert listed is not None
    [report] = sync_sites(sites.primary, listed, only=["a"])  # what `mpfn state sync` runs
    assert report.ok, report
    assert report.copied >= 3  # the model document, its manifest and blob, the index
    assert behind_sites(sites.primary) == set()
    assert {m.name for m in Registry(sites.a_store).models()} == {"demo", "late"}

    worker = sites.a_worker(port=sites.procs["a-1"].port)  # A comes back where it was
    sites.procs["a-1"] = worker
    router = sites.procs["router-a"] = sites.a_router()
    answer = infer(router, "late", **{"x-mpfn-pool": "a-1"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-mpfn-pool"] == "a-1"


def test_site_a_fails_over_to_site_b_when_its_own_pool_dies(sites: Sites2) -> None:
    router = sites.procs["router-a"]
    with load(router.url) as seen:
        time.sleep(1.0)
        kill(sites.procs["a-1"])
        time.sleep(2.0)
    assert seen["200"] > 50, seen
    assert set(seen) == {"200"}, seen
    answer = infer(router, "demo")
    assert answer.status_code == 200 and answer.headers["x-mpfn-pool"] in {"b-1", "b-2"}
