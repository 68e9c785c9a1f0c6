"""`mpfn up`: the embedded local stack in one command.

Creates the local state, pushes the demo model, starts two ONNX Runtime worker pools
that stand in for two clouds (different cost), the router, and the warm loop; stops every
part it started on Ctrl-C / SIGTERM. The plan (ports, pools) and the parts to start are
computed up front by pure functions; the parts run as processes (the default) or as
containers of mpfn's images (`--runtime containers`), through the same launcher shell.

With sites (`--sites a,b`) each site gets its own state replica, its own router (which
knows its site and reads only its replica) and its own two worker pools; the state
directory is the primary, writes to it are replicated to every site, and the warm loop
gathers the sites' usage (`mpfn.replication`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from mpfn.containers import Container, ContainerSpec
from mpfn.containers import run as run_container
from mpfn.documents import Pool
from mpfn.registry import Registry
from mpfn.store import LocalStore, Store

RUNTIME_FILE = "up.json"  # written into the state directory while `mpfn up` runs


@dataclass(frozen=True)
class PoolSpec:
    id: str
    cloud: str
    region: str
    cost_per_hour: float
    port: int
    site: str | None = None


@dataclass(frozen=True)
class SiteSpec:
    name: str
    router_port: int
    state_dir: Path  # the site's replica

    @property
    def router_url(self) -> str:
        return f"http://127.0.0.1:{self.router_port}"


@dataclass(frozen=True)
class UpPlan:
    state_dir: Path  # with sites: the primary
    router_port: int  # with sites: the first site's router
    pools: tuple[PoolSpec, ...]
    secure: bool = False  # pools on TLS (a private CA), requiring a token and mTLS
    sites: tuple[SiteSpec, ...] = ()
    site: str | None = None  # the one site this stack is (its router's site, its pools')
    primary: str | None = None  # with `site`: the primary state writes go to

    @property
    def router_url(self) -> str:
        return f"http://127.0.0.1:{self.router_port}"

    def pool_state(self, spec: PoolSpec) -> Path:
        """The state a pool's worker reads: its site's replica, else the state directory."""
        for site in self.sites:
            if site.name == spec.site:
                return site.state_dir
        return self.state_dir

    def pool_url(self, spec: PoolSpec) -> str:
        return f"{'https' if self.secure else 'http'}://127.0.0.1:{spec.port}"

    @property
    def tls_dir(self) -> Path:
        return self.state_dir / "tls"


@dataclass(frozen=True)
class SecureFiles:
    """What `--secure` makes at start: a private CA, the workers' certificate, the
    router's client certificate and the pools' token; pool documents reference them."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    token: Path


def make_secure_files(directory: Path) -> SecureFiles:
    """A fresh CA and credentials in `directory` (new ones at every start)."""
    import secrets

    from mpfn.poolauth.ca import CA

    ca = CA(directory, "mpfn up private CA")
    server, client = ca.issue("pool"), ca.issue("router", server=False)
    token = directory / "pool-token"
    fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    return SecureFiles(ca.pem, server.cert, server.key, client.cert, client.key, token)


def worker_tls_args(files: SecureFiles) -> tuple[str, ...]:
    return ("--tls-cert", str(files.server_cert), "--tls-key", str(files.server_key),
            "--tls-client-ca", str(files.ca), "--token-file", str(files.token))  # fmt: skip


def pool_security(files: SecureFiles) -> dict[str, object]:
    """The pool document's `auth` and `tls`: references to the files, never their content."""
    return {
        "auth": {"type": "bearer", "token": f"file:{files.token}"},
        "tls": {"ca": f"file:{files.ca}", "cert": f"file:{files.client_cert}",
                "key": f"file:{files.client_key}"},
    }  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def replica_dir(state_dir: Path, site: str) -> Path:
    """Where `mpfn up --sites` keeps a site's replica: beside the state directory."""
    return state_dir.parent / f"{state_dir.name}-sites" / site


def make_plan(
    state_dir: Path,
    port: int,
    pick_port: Callable[[], int] = free_port,
    secure: bool = False,
    sites: tuple[str, ...] = (),
    site: str | None = None,
    primary: str | None = None,
) -> UpPlan:
    """Two pools standing for two clouds with different prices, plus the router port; with
    `sites`, a router, a replica and two pools per site (the first router on `port`);
    with `site`, one site of a larger deployment (pools `<site>-1`, `<site>-2`) whose
    state directory is a replica of `primary`."""
    if site is not None:
        pools = tuple(
            PoolSpec(f"{site}-{n}", "local", site, cost, pick_port(), site=site)
            for n, cost in ((1, 1.20), (2, 0.90))
        )
        return UpPlan(state_dir, port or pick_port(), pools, secure, site=site, primary=primary)
    if not sites:
        return UpPlan(
            state_dir=state_dir,
            router_port=port or pick_port(),
            pools=(
                PoolSpec("aws-us-east-1", "aws", "us-east-1", 1.20, pick_port()),
                PoolSpec("gcp-us-central1", "gcp", "us-central1", 0.90, pick_port()),
            ),
            secure=secure,
        )
    specs = tuple(
        SiteSpec(name, (port if i == 0 and port else pick_port()), replica_dir(state_dir, name))
        for i, name in enumerate(sites)
    )
    pools = tuple(
        PoolSpec(f"{name}-{n}", "local", name, cost, pick_port(), site=name)
        for name in sites
        for n, cost in ((1, 1.20), (2, 0.90))
    )
    return UpPlan(state_dir, specs[0].router_port, pools, secure, specs)


def ensure_demo_model(store: Store) -> str:
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


def register_pools(store: Store, plan: UpPlan, files: SecureFiles | None = None) -> None:
    registry = Registry(store)
    for spec in plan.pools:
        registry.put_pool(
            Pool.model_validate(
                {
                    **(pool_security(files) if files else {}),
                    "id": spec.id,
                    "cloud": spec.cloud,
                    "region": spec.region,
                    "adapter": "ort",
                    "endpoint": plan.pool_url(spec),
                    "hardware": ["cpu"],
                    "cost_per_hour": spec.cost_per_hour,
                    "capacity": 4,
                    **({"site": spec.site} if spec.site else {}),
                }
            )
        )


@dataclass(frozen=True)
class Component:
    """One long-running part of the stack: `python -m MODULE ARGS` as a process, or the
    image of `target` (whose entry point is that module) with the same ARGS."""

    name: str
    target: str
    module: str
    args: tuple[str, ...]
    ready_url: str
    env: tuple[tuple[str, str], ...] = ()  # on top of the stack's environment


def components(plan: UpPlan, store_url: str, files: SecureFiles | None = None) -> list[Component]:
    """The workers, then the routers (one, or one per site), as started for `plan`. Pure.
    With sites, each part reads its site's replica, and each router knows its site."""
    tls = worker_tls_args(files) if files else ()

    def state_of(path: Path) -> str:
        return store_url if path == plan.state_dir else LocalStore(path, create=False).url

    out = [
        Component(
            f"worker-{spec.id}",
            "worker",
            "mpfn.adapters.ort_worker",
            (
                "--host", "127.0.0.1", "--port", str(spec.port),
                "--state", state_of(plan.pool_state(spec)),
                "--cache-dir", str(plan.state_dir / "cache" / spec.id), *tls,
            ),
            f"{plan.pool_url(spec)}/v2/health/ready",
        )
        for spec in plan.pools
    ]  # fmt: skip
    routers: list[tuple[str | None, int, Path]] = [(plan.site, plan.router_port, plan.state_dir)]
    if plan.sites:
        routers = [(s.name, s.router_port, s.state_dir) for s in plan.sites]
    for site, port, state in routers:
        env: tuple[tuple[str, str], ...] = (("MPFN_STATE", state_of(state)),)
        if site is not None:
            env += (("MPFN_ROUTER_SITE", site),)
        out.append(
            Component(
                f"router-{site}" if site else "router",
                "router",
                "mpfn.functions.router",
                ("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
                f"http://127.0.0.1:{port}/v2/health/ready",
                env,
            )
        )
    return out


class Running(Protocol):
    """A started component: is it still up, why did it stop, stop it."""

    def alive(self) -> bool: ...
    def failure(self) -> str: ...
    def stop(self) -> None: ...


@dataclass
class _Process:
    proc: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def failure(self) -> str:
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        return f"exited with code {self.proc.returncode}; log {self.log}:\n{tail}"

    def stop(self) -> None:
        stop_processes([self.proc])


@dataclass
class _Container:
    container: Container

    def alive(self) -> bool:
        return self.container.running()

    def failure(self) -> str:
        return f"container {self.container.name} stopped:\n{self.container.logs()}"

    def stop(self) -> None:
        self.container.stop()


Launcher = Callable[[Component], Running]


def process_launcher(logs: Path, env: dict[str, str]) -> Launcher:
    def launch(component: Component) -> Running:
        log = logs / f"{component.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", component.module, *component.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**env, **dict(component.env)},
                start_new_session=True,
            )
        return _Process(proc, log)

    return launch


def container_launcher(images: dict[str, str], plan: UpPlan, store_url: str, tool: str) -> Launcher:
    """Containers on the host network, as this user, with the state directory mounted at
    the same path, so every URL and path in the plan means the same inside and out."""
    mounts = tuple((str(p), str(p)) for p in (plan.state_dir, *(s.state_dir for s in plan.sites)))

    def launch(component: Component) -> Running:
        spec = ContainerSpec(
            name=f"mpfn-up-{plan.router_port}-{component.name}",
            image=images[component.target],
            args=component.args,
            env={"MPFN_STATE": store_url, "PYTHONUNBUFFERED": "1", **dict(component.env)},
            volumes=mounts,
            user=f"{os.getuid()}:{os.getgid()}",
        )
        return _Container(run_container(spec, tool))

    return launch


def _wait_ready(
    url: str, running: Running, what: str, timeout: float = 60.0, verify: Any = True
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running.alive():
            raise RuntimeError(f"{what} {running.failure()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0, verify=verify).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f}s")


def stop_processes(procs: list[subprocess.Popen[bytes]], timeout: float = 10.0) -> None:
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
    parts: list[Running]
    stop_event: threading.Event
    warm_thread: threading.Thread | None = None

    def stop(self) -> None:
        self.stop_event.set()
        for part in reversed(self.parts):
            part.stop()
        if self.warm_thread is not None:
            self.warm_thread.join(5)
        with contextlib.suppress(FileNotFoundError):
            (self.plan.state_dir / RUNTIME_FILE).unlink()

    def failed(self) -> str | None:
        """Why a part stopped, if one did."""
        for part in self.parts:
            if not part.alive():
                return part.failure()
        return None


def replicate_to_sites(local: LocalStore, plan: UpPlan, echo: Callable[[str], None]) -> Store:
    """With sites: list them in the primary, catch every replica up with it, and return
    the store that fans writes out to them; else the local store itself."""
    if not plan.sites:
        return local
    from mpfn.replication import Site, Sites, open_state, sync_sites, write_sites

    sites = Sites(sites={s.name: Site(state=str(s.state_dir)) for s in plan.sites})
    write_sites(local, sites)
    for report in sync_sites(local, sites):
        if not report.ok:
            raise RuntimeError(f"site {report.site}: replica not synced: {report.error}")
        echo(f"site {report.site}: replica {sites.sites[report.site].state} in sync")
    return open_state(local.url)


def start_stack(
    plan: UpPlan,
    *,
    keep_alive_s: float = 600.0,
    warm_interval_s: float = 30.0,
    echo: Callable[[str], None] = print,
    launcher: Callable[[str], Launcher] | None = None,
    primary_options: dict[str, Any] | None = None,
) -> Stack:
    """Start workers, router and warm loop for `plan`; raise (after cleanup) on failure.

    `launcher(store_url)` chooses how parts run (default: processes, logs in the state
    directory's `logs/`)."""
    from mpfn.warm.loop import run_forever

    local = LocalStore(plan.state_dir)
    if plan.site:  # one site of a deployment: write the primary, read the replica
        from mpfn.replication import open_state

        store = open_state(plan.primary or local.url, primary_options)
    else:
        store = replicate_to_sites(local, plan, echo)
    echo("pushing the demo model ...")
    ensure_demo_model(store)
    files = make_secure_files(plan.tls_dir) if plan.secure else None
    register_pools(store, plan, files)
    verify: Any = True
    if files is not None:
        verify = ssl.create_default_context(cafile=files.ca)
        verify.load_cert_chain(files.client_cert, files.client_key)
        echo(f"pools on TLS: private CA {files.ca}, token and client certificate required")
    env = {**os.environ, "MPFN_STATE": local.url, "PYTHONUNBUFFERED": "1"}
    launch = launcher(local.url) if launcher else process_launcher(plan.state_dir / "logs", env)
    stack = Stack(plan, [], threading.Event())
    try:
        parts = components(plan, local.url, files)
        workers, routers = parts[: len(plan.pools)], parts[len(plan.pools) :]
        for component, spec in zip(workers, plan.pools, strict=True):
            stack.parts.append(launch(component))
            where = f"{spec.cloud}, site {spec.site}" if spec.site else spec.cloud
            echo(f"worker {spec.id} ({where}, ${spec.cost_per_hour}/h): {plan.pool_url(spec)}")
        for component, running in zip(workers, stack.parts, strict=True):
            _wait_ready(component.ready_url, running, component.name, verify=verify)
        for router in routers:
            stack.parts.append(launch(router))
            _wait_ready(router.ready_url, stack.parts[-1], router.name)
        stack.warm_thread = threading.Thread(
            target=run_forever,
            args=(Registry(store), stack.stop_event),
            kwargs={
                "interval_s": warm_interval_s,
                "keep_alive_s": keep_alive_s,
                "pinned": frozenset({"demo"}),
                "site": plan.site,
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
                    "pools": {s.id: plan.pool_url(s) for s in plan.pools},
                    "routers": {s.name: s.router_url for s in plan.sites},
                    "sites": {s.name: str(s.state_dir) for s in plan.sites},
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
