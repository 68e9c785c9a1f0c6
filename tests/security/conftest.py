"""Fixtures for security tests: a router in front of a worker and two recording backends.

`edge` is one stack per module: an ORT worker (management API open, so a management
request that got through would take effect), a registered recording backend `rec` that
serves the models `echo` and `redirect-NNN` (which answer with a redirect to the trap),
and an unregistered recording backend `trap` that no request may ever reach.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mpfn.store import LocalStore
from tests.factories import pool
from tests.reliability.stack import upsert
from tests.servers import recorder
from tests.servers.mpfn_procs import publish_demo, start_router, start_worker
from tests.servers.process import Proc

REDIRECTS = (301, 302, 303, 307, 308)
MAX_BODY = 256 * 1024


@dataclass
class Recorder:
    proc: Proc
    log: Path

    @property
    def url(self) -> str:
        return self.proc.url

    def seen(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]


def start_recorder(log_dir: Path, name: str, redirect_url: str = "") -> Recorder:
    log = log_dir / f"{name}-requests.jsonl"
    return Recorder(recorder.start_recorder(log_dir, name, log, redirect_url), log)


@dataclass
class Edge:
    store: LocalStore
    worker: Proc
    rec: Recorder
    trap: Recorder
    router: Proc


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    root = tmp_path_factory.mktemp("edge")
    logs = root / "logs"
    store = LocalStore(root / "state")
    publish_demo(store, root)
    procs: list[Proc] = []
    try:
        trap = start_recorder(logs, "trap")
        procs.append(trap.proc)
        rec = start_recorder(logs, "rec", f"{trap.url}/v2/repository/models/demo/unload")
        procs.append(rec.proc)
        worker = start_worker(store, logs, "w1", "--max-body-mb", "1")
        procs.append(worker)
        served = ["echo", *(f"redirect-{n}" for n in REDIRECTS)]
        upsert(store, [pool("w1", worker.url), pool("rec", rec.url, models=served)])
        router = start_router(store.url, logs, settings={"max_body_bytes": str(MAX_BODY)})
        procs.append(router)
        yield Edge(store, worker, rec, trap, router)
    finally:
        for proc in reversed(procs):
            proc.stop()
