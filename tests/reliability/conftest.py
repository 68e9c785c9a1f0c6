"""Fixtures for fault tests: a fresh stack of real processes per test, torn down afterwards.

`cluster` builds a LocalStore with the demo model, ORT workers (each with its own flags),
one pool per worker, optional policies, and a router process. Every test breaks its own
stack, so nothing is shared between tests.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mpfn.documents import Policy
from mpfn.store import LocalStore
from tests.factories import pool
from tests.reliability.stack import signal_proc, upsert
from tests.servers.mpfn_procs import publish_demo, start_router, start_worker
from tests.servers.process import Proc


@dataclass
class Cluster:
    root: Path
    store: LocalStore
    workers: dict[str, Proc] = field(default_factory=dict)
    routers: list[Proc] = field(default_factory=list)

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def router(self) -> Proc:
        return self.routers[-1]

    def start_router(self, name: str = "router", **settings: str) -> Proc:
        proc = start_router(self.store.url, self.logs, name, settings=settings)
        self.routers.append(proc)
        return proc

    def close(self) -> None:
        for proc in [*self.routers, *self.workers.values()]:
            with contextlib.suppress(ProcessLookupError):
                signal_proc(proc, signal.SIGCONT)  # a frozen process cannot shut down
            proc.stop()


MakeCluster = Callable[..., Cluster]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[MakeCluster]:
    made: list[Cluster] = []

    def make(
        workers: Mapping[str, Sequence[str]],
        *,
        pools: Mapping[str, Mapping[str, Any]] | None = None,
        policies: Sequence[Policy] = (),
        router: Mapping[str, str] | None = None,
    ) -> Cluster:
        """`workers`: name -> extra worker flags; `pools`: name -> extra Pool fields;
        `router`: settings for the router (None: no router yet)."""
        c = Cluster(tmp_path, LocalStore(tmp_path / "state"))
        made.append(c)
        publish_demo(c.store, tmp_path)
        for name, flags in workers.items():
            c.workers[name] = start_worker(c.store, c.logs, name, *flags)
        upsert(
            c.store,
            [pool(n, w.url, **(pools or {}).get(n, {})) for n, w in c.workers.items()],
        )
        upsert(c.store, policies)
        if router is not None:
            c.start_router(**router)
        return c

    yield make
    for c in made:
        c.close()
