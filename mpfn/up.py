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

Every port is checked before anything starts. While the stack runs, `Stack.supervise`
restarts a worker (or the warm loop) that stopped, with exponential backoff, on the same
port and arguments; only a router that stops ends the stack.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from mpfn.containers import Container, ContainerSpec
from mpfn.containers import run as run_container
from mpfn.documents import Pool
from mpfn.registry import Registry
from mpfn.scaling.scalers import TOKEN_ENV
from mpfn.store import LocalStore, Store
from mpfn.upcontrol import ControlServer, make_token

RUNTIME_FILE = "up.json"  # written into the state directory while `mpfn up` runs
RESTART_FIRST_S = 0.5  # the first restart's delay; it doubles with each quick failure
RESTART_MAX_S = 30.0
STABLE_S = 30.0  # a part up this long is healthy again: its next restart is quick


class UpError(RuntimeError):
    """`mpfn up` could not start (or keep) the stack; the message is one line."""


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
    control_port: int = 0  # the control endpoint (the local pools' scaler); 0: none
    grpc_port: int = 0  # the (first) router's gRPC port; 0: REST only
    router_processes: int = 1  # processes serving each router's port

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

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


def port_in_use(port: int) -> bool:
    """Whether something holds 127.0.0.1:`port` (a listener; not a closed connection's
    TIME_WAIT, which the parts' servers bind over as this check does)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def plan_ports(plan: UpPlan) -> list[tuple[str, int]]:
    """Every port the stack listens on, with what listens there. Pure."""
    routers = [(f"router ({s.name})", s.router_port) for s in plan.sites]
    ports = routers or [("router", plan.router_port)]
    control = [("control endpoint", plan.control_port)] if plan.control_port else []
    return ports + [(f"worker {spec.id}", spec.port) for spec in plan.pools] + control


def check_ports(plan: UpPlan, in_use: Callable[[int], bool] = port_in_use) -> None:
    """Raise UpError naming the first port of `plan` that is taken."""
    for what, port in plan_ports(plan):
        if in_use(port):
            hint = "pass --port 0 for a free one" if what.startswith("router") else "start again"
            raise UpError(f"port {port} is in use: {hint}, or stop what uses it ({what})")


_NOISE = re.compile(r"^\s*$|^(INFO|DEBUG):|^\s*(Traceback|File |\^+\s*$|~+)|^During handling")
_ERROR = re.compile(r"error|exception|fail|fatal|denied|in use|not found|invalid|cannot", re.I)


def last_meaningful_line(text: str) -> str:
    """The line of a log that says why a part stopped: the last one that reads like an
    error, else the last one that is not an INFO line or traceback framing."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    kept = [line for line in lines if not _NOISE.match(line)]
    for line in reversed(kept):
        if _ERROR.search(line):
            return line[:300]
    return kept[-1][:300] if kept else ""


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
    state directory is a replica of `primary`. The control endpoint's port is picked last."""
    if site is not None:
        pools = tuple(
            PoolSpec(f"{site}-{n}", "local", site, cost, pick_port(), site=site)
            for n, cost in ((1, 1.20), (2, 0.90))
        )
        return UpPlan(state_dir, port or pick_port(), pools, secure, site=site, primary=primary,
                      control_port=pick_port())  # fmt: skip
    if not sites:
        return UpPlan(
            state_dir=state_dir,
            router_port=port or pick_port(),
            pools=(
                PoolSpec("aws-us-east-1", "aws", "us-east-1", 1.20, pick_port()),
                PoolSpec("gcp-us-central1", "gcp", "us-central1", 0.90, pick_port()),
            ),
            secure=secure,
            control_port=pick_port(),
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
    return UpPlan(state_dir, specs[0].router_port, pools, secure, specs, control_port=pick_port())


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


def local_scaling(plan: UpPlan) -> dict[str, object]:
    """A local pool's `scaling`: one worker or none, through the control endpoint."""
    return {"kind": "local", "api_url": plan.control_url, "min_replicas": 0, "max_replicas": 1}


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
                    **({"scaling": local_scaling(plan)} if plan.control_port else {}),
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
    for index, (site, port, state) in enumerate(routers):
        env: tuple[tuple[str, str], ...] = (("MPFN_STATE", state_of(state)),)
        if site is not None:
            env += (("MPFN_ROUTER_SITE", site),)
        extra: tuple[str, ...] = ()
        if plan.grpc_port and index == 0:
            extra += ("--grpc-port", str(plan.grpc_port))
        if plan.router_processes > 1:
            extra += ("--workers", str(plan.router_processes))
        out.append(
            Component(
                f"router-{site}" if site else "router",
                "router",
                "mpfn.functions.router",
                ("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", *extra),
                f"http://127.0.0.1:{port}/v2/health/ready",
                env,
            )
        )
    return out


class Running(Protocol):
    """A started component: is it still up, why did it stop (one line, and the line of
    its log that says why), note a line in its log, stop it."""

    def alive(self) -> bool: ...
    def exit_reason(self) -> str: ...
    def last_line(self) -> str: ...
    def note(self, line: str) -> None: ...
    def where(self) -> str: ...
    def stop(self) -> None: ...


@dataclass
class _Process:
    proc: subprocess.Popen[bytes]
    log: Path
    offset: int = 0  # where this run's output starts in the (appended) log

    def alive(self) -> bool:
        return self.proc.poll() is None

    def exit_reason(self) -> str:
        return f"exited with code {self.proc.returncode}"

    def last_line(self) -> str:
        try:
            with self.log.open("rb") as f:
                f.seek(max(self.offset, self.log.stat().st_size - 8000))
                return last_meaningful_line(f.read().decode(errors="replace"))
        except OSError:
            return ""

    def note(self, line: str) -> None:
        with contextlib.suppress(OSError), self.log.open("a") as f:
            f.write(f"mpfn up: {line}\n")

    def where(self) -> str:
        return str(self.log)

    def stop(self) -> None:
        stop_processes([self.proc])


@dataclass
class _Container:
    container: Container

    def alive(self) -> bool:
        return self.container.running()

    def exit_reason(self) -> str:
        return f"stopped (container {self.container.name})"

    def last_line(self) -> str:
        return last_meaningful_line(self.container.logs())

    def note(self, line: str) -> None:
        pass  # a container's log is the runtime's: the console has the line

    def where(self) -> str:
        return f"{self.container.tool} logs {self.container.name}"

    def stop(self) -> None:
        self.container.stop()


@dataclass
class _Thread:
    """The warm loop: a thread of this process, sharing the stack's stop event; `log`
    records why it stopped."""

    thread: threading.Thread
    error: list[BaseException]
    log: Path

    def alive(self) -> bool:
        return self.thread.is_alive()

    def exit_reason(self) -> str:
        return f"stopped: {self.error[-1]!r}" if self.error else "stopped"

    def last_line(self) -> str:
        return ""

    def note(self, line: str) -> None:
        with contextlib.suppress(OSError):
            self.log.parent.mkdir(parents=True, exist_ok=True)
            with self.log.open("a") as f:
                f.write(f"mpfn up: {line}\n")

    def where(self) -> str:
        return str(self.log)

    def stop(self) -> None:
        self.thread.join(5)


def start_thread(name: str, target: Callable[[], None], log: Path) -> Running:
    """Run `target` in a daemon thread; what it raised is kept for `exit_reason`."""
    error: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # kept and reported; the supervisor restarts it
            error.append(exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return _Thread(thread, error, log)


Launcher = Callable[[Component], Running]


def process_launcher(logs: Path, env: dict[str, str]) -> Launcher:
    def launch(component: Component) -> Running:
        log = logs / f"{component.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            offset = out.tell()
            proc = subprocess.Popen(
                [sys.executable, "-m", component.module, *component.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**env, **dict(component.env)},
                start_new_session=True,
            )
        return _Process(proc, log, offset)

    return launch


def container_launcher(images: dict[str, str], plan: UpPlan, store_url: str, tool: str) -> Launcher:
    """Containers on the host network, as this user, with the state directory mounted at
    the same path, so every URL and path in the plan means the same inside and out. The
    router's settings (`MPFN_ROUTER_*`, e.g. `MPFN_ROUTER_AUTH`) are passed on, as the
    environment is to processes."""
    mounts = tuple((str(p), str(p)) for p in (plan.state_dir, *(s.state_dir for s in plan.sites)))

    def launch(component: Component) -> Running:
        passed = ("MPFN_ROUTER_", TOKEN_ENV)  # read at launch: the token is made at start
        settings = {k: v for k, v in os.environ.items() if k.startswith(passed)}
        spec = ContainerSpec(
            name=f"mpfn-up-{plan.router_port}-{component.name}",
            image=images[component.target],
            args=component.args,
            env={
                **settings,
                "MPFN_STATE": store_url,
                "PYTHONUNBUFFERED": "1",
                **dict(component.env),
            },
            volumes=mounts,
            user=f"{os.getuid()}:{os.getgid()}",
        )
        return _Container(run_container(spec, tool))

    return launch


def why(what: str, running: Running, reason: str) -> str:
    """One line: what happened to a part, and the line of its log that says why."""
    line, where = running.last_line(), running.where()
    return f"{what} {reason}" + (f": {line}" if line else "") + (f" (see {where})" if where else "")


def _wait_ready(
    url: str, running: Running, what: str, timeout: float = 60.0, verify: Any = True
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running.alive():
            raise UpError(why(what, running, f"{running.exit_reason()} at start"))
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0, verify=verify).status_code == 200:
                return
        time.sleep(0.1)
    raise UpError(why(what, running, f"did not become ready within {timeout:.0f}s"))


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


def restart_delay(failures: int) -> float:
    """Seconds before restarting a part that failed `failures` times in a row (>= 1)."""
    return min(RESTART_MAX_S, RESTART_FIRST_S * 2 ** (failures - 1))


@dataclass
class Supervised:
    """One part and how to start it again: the same component (same port, same arguments).
    `fatal` parts (routers) end the stack when they stop; the others are restarted."""

    name: str  # as shown: "worker aws-us-east-1", "router", "warm loop"
    start: Callable[[], Running]
    running: Running
    fatal: bool = False
    restarts: int = 0
    failures: int = 0  # in a row: reset once the part has stayed up STABLE_S
    started_at: float = 0.0
    due: float | None = None  # when a restart is scheduled
    desired: int = 1  # 0: stopped on purpose (scaled to zero): not restarted


@dataclass
class Stack:
    plan: UpPlan
    supervised: list[Supervised]
    stop_event: threading.Event
    echo: Callable[[str], None] = print
    lock: threading.Lock = field(default_factory=threading.Lock)
    control: ControlServer | None = None

    @property
    def parts(self) -> list[Running]:
        return [s.running for s in self.supervised]

    def stop(self) -> None:
        self.stop_event.set()
        if self.control is not None:
            self.control.stop()
        for part in reversed(self.parts):
            part.stop()
        with contextlib.suppress(FileNotFoundError):
            (self.plan.state_dir / RUNTIME_FILE).unlink()

    def _worker(self, pool: str) -> Supervised | None:
        return next((s for s in self.supervised if s.name == f"worker {pool}"), None)

    def size(self, pool: str) -> int | None:
        """A local pool's size: 1 while its worker should run, 0 when scaled to zero."""
        part = self._worker(pool)
        return None if part is None else part.desired

    def scale(self, pool: str, replicas: int) -> None:
        """Stop a pool's worker (0) or start it now (1); the supervisor keeps it so."""
        with self.lock:
            part = self._worker(pool)
            if part is None or part.desired == replicas:
                return
            part.desired = replicas
            if replicas == 0:
                part.due = None
                part.running.stop()
                self.echo(f"{part.name} scaled to zero")
                return
            if not part.running.alive():
                part.due, part.failures, part.started_at = None, 0, time.monotonic()
                part.running = part.start()
                self.echo(f"{part.name} started (scaled to one)")

    def supervise(self, now: Callable[[], float] = time.monotonic) -> str | None:
        """One round: schedule a restart for every non-fatal part that stopped, start
        those that are due; return why the stack must stop (a router stopped), else None."""
        with self.lock:
            return self._supervise(now)

    def _supervise(self, now: Callable[[], float]) -> str | None:
        for part in self.supervised:
            if self.stop_event.is_set():
                return None
            if part.desired == 0:
                continue  # scaled to zero on purpose
            t = now()
            if part.due is None and part.running.alive():
                if part.failures and t - part.started_at >= STABLE_S:
                    part.failures = 0
                continue
            if part.fatal:
                return why(part.name, part.running, part.running.exit_reason())
            if part.due is None:
                part.failures += 1
                part.restarts += 1
                delay = restart_delay(part.failures)
                part.due = t + delay
                line = (
                    f"{part.name} {part.running.exit_reason()}; "
                    f"restarting in {delay:g} s (restart {part.restarts})"
                )
                self.echo(line)
                part.running.note(line)
            elif t >= part.due:
                part.due, part.started_at = None, t
                try:
                    part.running = part.start()
                except Exception as exc:  # e.g. the container runtime refused: try again
                    part.failures += 1
                    part.due = t + restart_delay(part.failures)
                    self.echo(f"{part.name} did not start: {exc}")
                else:
                    self.echo(f"{part.name} started again")
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
    """Start workers, router and warm loop for `plan`; raise (after cleanup) on failure,
    UpError with one line when a port is taken or a part fails at start.

    `launcher(store_url)` chooses how parts run (default: processes, logs in the state
    directory's `logs/`)."""
    from mpfn.warm.loop import run_forever

    check_ports(plan)
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
    token = make_token(plan.tls_dir) if plan.control_port else None
    if token is not None:  # the warm loop (in this process) and the routers scale with it
        os.environ[TOKEN_ENV] = token
    env = {**os.environ, "MPFN_STATE": local.url, "PYTHONUNBUFFERED": "1"}
    launch = launcher(local.url) if launcher else process_launcher(plan.state_dir / "logs", env)
    stack = Stack(plan, [], threading.Event(), echo)

    def supervised(name: str, start: Callable[[], Running], fatal: bool = False) -> Running:
        stack.supervised.append(
            Supervised(name, start, start(), fatal, started_at=time.monotonic())
        )
        return stack.supervised[-1].running

    def warm() -> None:
        run_forever(
            Registry(store),
            stack.stop_event,
            interval_s=warm_interval_s,
            keep_alive_s=keep_alive_s,
            pinned=frozenset({"demo"}),
            site=plan.site,
        )

    try:
        parts = components(plan, local.url, files)
        workers, routers = parts[: len(plan.pools)], parts[len(plan.pools) :]
        started: list[Running] = []
        for component, spec in zip(workers, plan.pools, strict=True):
            started.append(supervised(f"worker {spec.id}", functools.partial(launch, component)))
            where = f"{spec.cloud}, site {spec.site}" if spec.site else spec.cloud
            echo(f"worker {spec.id} ({where}, ${spec.cost_per_hour}/h): {plan.pool_url(spec)}")
        for component, running, spec in zip(workers, started, plan.pools, strict=True):
            _wait_ready(component.ready_url, running, f"worker {spec.id}", verify=verify)
        for router in routers:
            name = router.name.replace("-", " ", 1)
            running = supervised(name, functools.partial(launch, router), fatal=True)
            _wait_ready(router.ready_url, running, name)
            if plan.grpc_port and router is routers[0]:
                echo(f"router-grpc: 127.0.0.1:{plan.grpc_port}")
        if token is not None:
            stack.control = ControlServer(plan.control_port, token, (stack.size, stack.scale))
        warm_log = plan.state_dir / "logs" / "warm-loop.log"
        supervised("warm loop", lambda: start_thread("mpfn-warm", warm, warm_log))
        (plan.state_dir / RUNTIME_FILE).write_text(
            json.dumps(
                {
                    "router": plan.router_url,
                    "pid": os.getpid(),
                    "pools": {s.id: plan.pool_url(s) for s in plan.pools},
                    "routers": {s.name: s.router_url for s in plan.sites},
                    "sites": {s.name: str(s.state_dir) for s in plan.sites},
                    "control": plan.control_url if plan.control_port else None,
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
