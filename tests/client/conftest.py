"""Real routers on loopback for the client tests, started once for the package.

- `ok`: a router on the `served` state, whose pool (the echo backend) answers;
- `keys`: a router on the same state with `auth=keys` (API keys required);
- `broken`: a router on the `broken` state, whose only pool is down: it answers 503;
- `down`: an address nothing listens on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mpfn.auth import issue_key
from mpfn.demo import demo_model_version
from mpfn.entrypoints import RouterAuth, RouterEntry
from mpfn.state import Documents
from mpfn.store import LocalStore
from tests.factories import pool
from tests.servers.echo_backend import echo_backend_server
from tests.servers.mpfn_procs import start_router
from tests.servers.ports import unused_port
from tests.servers.process import Proc, stopping

X = [0.5] * 16
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 16], "data": X}]}
DOUBLED = [2 * v for v in X]  # what the echo backend answers


@dataclass(frozen=True)
class Routers:
    served: LocalStore
    ok: Proc
    keys: Proc
    broken: Proc
    down_url: str
    api_key: str
    logs: Path


def entry(site: str, url: str, auth: RouterAuth = "none", **fields: str) -> RouterEntry:
    return RouterEntry.model_validate({"site": site, "url": url, "auth": auth, **fields})


@pytest.fixture(scope="package")
def routers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Routers]:
    root = tmp_path_factory.mktemp("client")
    logs = root / "logs"
    with contextlib.ExitStack() as stack:
        backend = stack.enter_context(echo_backend_server(logs))
        served, broken = LocalStore(root / "served"), LocalStore(root / "broken")
        model = demo_model_version()
        api_key, key_doc = issue_key("client-test")
        for store, endpoint in (
            (served, backend.url),
            (broken, f"http://127.0.0.1:{unused_port()}"),
        ):
            docs = Documents(store)
            docs.upsert(model.key, model)
            pool_doc = pool("p1", endpoint)
            docs.upsert(pool_doc.key, pool_doc)
        Documents(served).upsert(key_doc.key, key_doc)
        ok = stack.enter_context(stopping(start_router(served, logs, "router-ok")))
        keys = stack.enter_context(
            stopping(start_router(served, logs, "router-keys", settings={"auth": "keys"}))
        )
        down = stack.enter_context(stopping(start_router(broken, logs, "router-broken")))
        yield Routers(
            served=served,
            ok=ok,
            keys=keys,
            broken=down,
            down_url=f"http://127.0.0.1:{unused_port()}",
            api_key=api_key,
            logs=logs,
        )
