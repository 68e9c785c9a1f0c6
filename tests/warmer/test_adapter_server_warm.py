"""`mpfn warm run` manages a pool fronted by an adapter server through the repository API.

A `tfserving` pool with `adapter_server: true` points at a real adapter server in front of
the TF Serving stand-in (`tests.servers.tfserving_standin`, NOT TensorFlow Serving); a plain
`ort` pool points at an ORT worker. Both take the same admin token, which the warmer sends
from `MPFN_WORKER_ADMIN_TOKEN`. A pinned model is loaded on both by one run and unloaded
by the next once it is no longer pinned; the stand-in's own model status shows each step.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from mpfn.demo import build_demo_model
from mpfn.registry import Registry
from mpfn.state import Documents
from mpfn.store import LocalStore
from mpfn.warm import WarmPlan, WarmSettings
from mpfn.warm.apply import management_kind
from mpfn.warm.plan import PLAN_KEY, SETTINGS_KEY
from tests.factories import pool
from tests.servers.adapter_server import start_adapter_server
from tests.servers.mpfn_procs import publish_demo, start_worker
from tests.servers.process import Proc, stopping
from tests.servers.tfserving import TFServingProc, tfserving_standin

TOKEN = "warm-admin-token-for-tests"


@dataclass(frozen=True)
class Stack:
    store: LocalStore
    standin: TFServingProc
    adapter: Proc  # the adapter server: the tfserving pool's endpoint
    worker: Proc  # the ORT worker: the ort pool's endpoint


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("adapter-server-warm")
    logs = root / "logs"
    model_file = root / "models" / "demo" / "1" / "model.onnx"
    model_file.parent.mkdir(parents=True)
    model_file.write_bytes(build_demo_model())
    token_file = root / "admin-token"
    token_file.write_text(TOKEN)
    store = LocalStore(root / "state")
    publish_demo(store, root)
    with contextlib.ExitStack() as procs, tfserving_standin(logs) as standin:
        adapter = procs.enter_context(
            stopping(
                start_adapter_server(
                    "tfserving",
                    standin.proc.url,
                    logs,
                    state=store.url,
                    options={
                        "grpc_target": f"127.0.0.1:{standin.grpc_port}",
                        "base_path": f"{root / 'models'}/{{name}}",
                    },
                    extra=("--admin-token-file", str(token_file)),
                )
            )
        )
        worker = procs.enter_context(
            stopping(
                start_worker(
                    store, logs, "ort-worker", "--admin-token-file", str(token_file), preload=None
                )
            )
        )
        registry = Registry(store)
        registry.put_pool(
            pool("tfs", adapter.url, adapter="tfserving", models=["demo"], adapter_server=True)
        )
        registry.put_pool(pool("ort", worker.url))
        yield Stack(store, standin, adapter, worker)


def test_management_kind() -> None:
    assert management_kind(pool("a", adapter="tfserving", adapter_server=True)) == "ort"
    assert management_kind(pool("b", adapter="torchserve", adapter_server=True)) == "ort"
    assert management_kind(pool("c", adapter="tfserving")) == "tfserving"
    assert management_kind(pool("d")) == "ort"
    assert management_kind(pool("e", adapter="openai")) == "openai"


def warm_run(store: LocalStore, *, token: str = TOKEN) -> WarmPlan:
    """`mpfn warm run` in its own process, as an operator runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPFN_")}
    env["MPFN_WORKER_ADMIN_TOKEN"] = token
    proc = subprocess.run(
        [sys.executable, "-m", "mpfn", "--state", str(store.root), "warm", "run", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return Documents(store).get(PLAN_KEY, WarmPlan)


def standin_states(stack: Stack) -> dict[str, str]:
    """version -> state of `demo` in the stand-in's own model status."""
    answer = httpx.get(f"{stack.standin.proc.url}/v1/models/demo", timeout=30)
    if answer.status_code == 404:
        return {}
    return {row["version"]: row["state"] for row in answer.json()["model_version_status"]}


def worker_ready(stack: Stack) -> set[str]:
    rows = httpx.post(
        f"{stack.worker.url}/v2/repository/index",
        json={"ready": True},
        headers={"authorization": f"Bearer {TOKEN}"},
        timeout=30,
    ).json()
    return {f"{row['name']}:{row['version']}" for row in rows}


def pin(store: LocalStore, *models: str) -> None:
    Documents(store).upsert(SETTINGS_KEY, WarmSettings(pinned=list(models), use_prophet=False))


def test_warm_run_loads_and_unloads_through_the_adapter_server(stack: Stack) -> None:
    assert standin_states(stack).get("1") != "AVAILABLE"
    pin(stack.store, "demo")

    plan = warm_run(stack.store)

    assert plan.errors == []
    done = {(a.action, a.pool): a for a in plan.actions if a.status == "done"}
    assert set(done) == {("load", "tfs"), ("load", "ort")}
    assert (done["load", "tfs"].load_ms or 0) > 0  # the adapter server's x-mpfn-load-ms
    assert standin_states(stack) == {"1": "AVAILABLE"}
    assert worker_ready(stack) == {"demo:1"}
    pools = {p.pool: p for p in plan.pools}
    assert pools["tfs"].adapter == "tfserving" and pools["tfs"].error is None

    again = warm_run(stack.store)  # both report demo:1 loaded: nothing to do
    assert again.actions == [] and again.errors == []
    assert {p.pool: p.loaded for p in again.pools} == {"tfs": ["demo:1"], "ort": ["demo:1"]}

    pin(stack.store)
    idle = warm_run(stack.store)

    assert idle.errors == []
    gone = {(a.action, a.pool) for a in idle.actions if a.status == "done"}
    assert gone == {("unload", "tfs"), ("unload", "ort")}
    assert standin_states(stack).get("1") != "AVAILABLE"
    assert worker_ready(stack) == set()


def test_a_wrong_admin_token_is_a_pool_error_not_a_crash(stack: Stack) -> None:
    pin(stack.store, "demo")
    plan = warm_run(stack.store, token="wrong")
    assert plan.actions == []
    errors = " ".join(plan.errors)
    assert "pool tfs:" in errors and "pool ort:" in errors
    assert "tfserving backend" in errors and "ort backend" in errors
    assert standin_states(stack).get("1") != "AVAILABLE"
