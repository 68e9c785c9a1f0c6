"""`mpfn up`: the embedded local stack in one command.

Creates the local state, pushes the demo model, starts two ONNX Runtime worker pools
that stand in for two clouds (different cost), the router, and the warm loop; stops every
process it started on Ctrl-C / SIGTERM. The plan (ports, pools) is computed up front by a
pure function; this module's other functions are the process shell around it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from mpfn.documents import Pool
from mpfn.registry import Registry
from mpfn.store import LocalStore

RUNTIME_FILE = "up.json"  # written into the state directory while `mpfn up` runs


@dataclass(frozen=True)
class PoolSpec:
    id: str
    cloud: str
    region: str
    cost_per_hour: float
    port: int


@dataclass(frozen=True)
class UpPlan:
    state_dir: Path
    router_port: int
    pools: tuple[PoolSpec, ...]

    @property
    def router_url(self) -> str:
        return f"http://127.0.0.1:{self.router_port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_plan(state_dir: Path, port: int, pick_port: Callable[[], int] = free_port) -> UpPlan:
    """Two pools standing for two clouds with different prices, plus the router port."""
    return UpPlan(
        state_dir=state_dir,
        router_port=port or pick_port(),
        pools=(
            PoolSpec("aws-us-east-1", "aws", "us-east-1", 1.20, pick_port()),
            PoolSpec("gcp-us-central1", "gcp", "us-central1", 0.90, pick_port()),
        ),
    )


def ensure_demo_model(store: LocalStore) -> str:
    """Push the demo model as `demo:1` unless it is already registered."""
    from mpfn.artifacts import push_model
    from mpfn.demo import build_demo_model, demo_model_version

    registry = Registry(store)
    if "1" in registry.versions("demo"):
        return "demo:1"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demo.onnx"
        path.write_bytes(build_demo_model())
        ref = push_model(store, path, name="demo", version="1", fmt="onnx")
    registry.add_model(demo_model_version(ref))
    return "demo:1"


def register_pools(store: LocalStore, plan: UpPlan) -> None:
    registry = Registry(store)
    for spec in plan.pools:
        registry.put_pool(
            Pool.model_validate(
                {
                    "id": spec.id,
                    "cloud": spec.cloud,
                    "region": spec.region,
                    "adapter": "ort",
                    "endpoint": f"http://127.0.0.1:{spec.port}",
                    "hardware": ["cpu"],
                    "cost_per_hour": spec.cost_per_hour,
                    "capacity": 4,
                }
            )
        )


def _spawn(argv: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )


def _wait_ready(
    url: str, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 60.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{what} exited with code {proc.returncode}; log {log}:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f}s; see {log}")


def stop_all(procs: list[subprocess.Popen[bytes]], timeout: float = 10.0) -> None:
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@dataclass
class Stack:
    plan: UpPlan
    procs: list[subprocess.Popen[bytes]]
    stop_event: threading.Event
    warm_thread: threading.Thread | None = None

    def stop(self) -> None:
        self.stop_event.set()
        stop_all(self.procs)
        if self.warm_thread is not None:
            self.warm_thread.join(5)
        with contextlib.suppress(FileNotFoundError):
            (self.plan.state_dir / RUNTIME_FILE).unlink()


def start_stack(
    plan: UpPlan,
    *,
    keep_alive_s: float = 600.0,
    warm_interval_s: float = 30.0,
    echo: Callable[[str], None] = print,
) -> Stack:
    """Start workers, router and warm loop for `plan`; raise (after cleanup) on failure."""
    from mpfn.warm.loop import run_forever

    store = LocalStore(plan.state_dir)
    echo("pushing the demo model ...")
    ensure_demo_model(store)
    register_pools(store, plan)
    env = {**os.environ, "MPFN_STATE": store.url, "PYTHONUNBUFFERED": "1"}
    logs = plan.state_dir / "logs"
    stack = Stack(plan, [], threading.Event())
    try:
        for spec in plan.pools:
            log = logs / f"worker-{spec.id}.log"
            argv = [
                sys.executable,
                "-m",
                "mpfn.adapters.ort_worker",
                "--host",
                "127.0.0.1",
                "--port",
                str(spec.port),
                "--state",
                store.url,
                "--cache-dir",
                str(plan.state_dir / "cache" / spec.id),
            ]
            proc = _spawn(argv, log, env)
            stack.procs.append(proc)
            echo(
                f"worker {spec.id} ({spec.cloud}, ${spec.cost_per_hour}/h): "
                f"http://127.0.0.1:{spec.port}"
            )
        for spec, proc in zip(plan.pools, stack.procs, strict=True):
            _wait_ready(
                f"http://127.0.0.1:{spec.port}/v2/health/ready",
                proc,
                f"worker {spec.id}",
                logs / f"worker-{spec.id}.log",
            )
        log = logs / "router.log"
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "mpfn.functions.router.app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(plan.router_port),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        router = _spawn(argv, log, env)
        stack.procs.append(router)
        _wait_ready(f"{plan.router_url}/v2/health/ready", router, "router", log)
        stack.warm_thread = threading.Thread(
            target=run_forever,
            args=(Registry(store), stack.stop_event),
            kwargs={
                "interval_s": warm_interval_s,
                "keep_alive_s": keep_alive_s,
                "pinned": frozenset({"demo"}),
            },
            name="mpfn-warm",
            daemon=True,
        )
        stack.warm_thread.start()
        (plan.state_dir / RUNTIME_FILE).write_text(
            json.dumps(
                {
                    "router": plan.router_url,
                    "pid": os.getpid(),
                    "pools": {s.id: f"http://127.0.0.1:{s.port}" for s in plan.pools},
                }
            )
        )
    except BaseException:
        stack.stop()
        raise
    return stack


def read_router_url(state_dir: Path) -> str | None:
    """The router URL of a running `mpfn up` on this state directory, if any."""
    try:
        return str(json.loads((state_dir / RUNTIME_FILE).read_text())["router"])
    except (OSError, ValueError, KeyError):
        return None
