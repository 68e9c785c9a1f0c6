"""mpfn's own processes for tests: ONNX Runtime workers, uvicorn routers and `mpfn up`.

Workers serve the demo model from a state store; routers read a state store. Routers get
a listening socket bound here (`uvicorn --fd`); workers, which take only a port number, are
restarted on other ports if theirs was taken (`tests.servers.ports`).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from mpfn.artifacts.models import push_model
from mpfn.demo import build_demo_model, demo_model_version
from mpfn.documents import ModelVersion
from mpfn.state import Documents
from mpfn.store import Store
from tests.servers.ports import listening_socket, start_on_free_ports
from tests.servers.process import PYTHON, Proc, start

ROUTER_APP = "mpfn.functions.router.app:app"


def publish_demo(store: Store, workdir: Path) -> ModelVersion:
    """Push the demo model's artifact into `store` and register its ModelVersion."""
    path = workdir / "demo.onnx"
    path.write_bytes(build_demo_model())
    ref = push_model(store, path, name="demo", version="1")
    doc = demo_model_version(ref)
    Documents(store).upsert(doc.key, doc)
    return doc


def _state_url(state: Store | str) -> str:
    return state if isinstance(state, str) else state.url


def worker_argv(state: Store | str, cache_dir: Path, port: int, *extra: str) -> list[str]:
    return [
        PYTHON, "-m", "mpfn.adapters.ort_worker",
        "--host", "127.0.0.1", "--port", str(port),
        "--state", _state_url(state),
        "--cache-dir", str(cache_dir),
        "--intra-op-threads", "1",
        *extra,
    ]  # fmt: skip


def start_worker(
    state: Store | str,
    log_dir: Path,
    name: str = "ort-worker",
    *extra: str,
    preload: str | None = "demo",
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    cache_dir: Path | None = None,
) -> Proc:
    """An ORT worker on `state`; `preload` a model it loads before it is ready (None: none);
    `extra` flags such as `--inject-delay-ms 30`; `port` to restart one where it was."""

    def launch(ports: list[int]) -> Proc:
        flags = [*(["--preload", preload] if preload else []), *extra]
        cache = cache_dir or log_dir / f"cache-{name}-{ports[0]}"
        ready = f"/v2/models/{preload}/ready" if preload else "/v2/health/ready"
        return start(
            worker_argv(state, cache, ports[0], *flags),
            port=ports[0],
            log_dir=log_dir,
            name=name,
            env=dict(env or {}),
            ready_url=f"http://127.0.0.1:{ports[0]}{ready}",
        )

    if port is not None:
        return launch([port])
    return start_on_free_ports(1, launch)


@contextlib.contextmanager
def worker(
    state: Store | str,
    log_dir: Path,
    name: str = "ort-worker",
    *extra: str,
    preload: str | None = "demo",
    env: Mapping[str, str] | None = None,
    cache_dir: Path | None = None,
) -> Iterator[Proc]:
    """`start_worker` as a context: the worker stops afterwards."""
    proc = start_worker(state, log_dir, name, *extra, preload=preload, env=env, cache_dir=cache_dir)
    try:
        yield proc
    finally:
        proc.stop()


def start_router(
    state: Store | str,
    log_dir: Path,
    name: str = "router",
    *,
    settings: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    log_level: str = "warning",
    log_config: Path | None = None,
) -> Proc:
    """A uvicorn router on `state`; `settings` are `MPFN_ROUTER_*` values by field name
    (`{"refresh_ttl_s": "0.2"}`), `env` more environment variables."""
    sock = listening_socket()
    # uvicorn takes an inherited socket for a Unix one and never sets TCP_NODELAY on its
    # connections; accepted sockets inherit it from the listener (Linux), so set it here,
    # or every keep-alive response waits ~40 ms for delayed ACKs
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    port = int(sock.getsockname()[1])
    # A `log_config` decides everything about logging, access lines included.
    logging = (
        ["--log-config", str(log_config)]
        if log_config
        else ["--no-access-log", "--log-level", log_level]
    )
    argv = [PYTHON, "-m", "uvicorn", ROUTER_APP, "--fd", str(sock.fileno()), *logging]
    variables = {
        "MPFN_STATE": _state_url(state),
        "MPFN_ROUTER_REFRESH_TTL_S": "0.2",
        "MPFN_ROUTER_USAGE_FLUSH_S": "0.2",
        **{f"MPFN_ROUTER_{key.upper()}": value for key, value in (settings or {}).items()},
        **(env or {}),
    }
    try:
        return start(
            argv,
            port=port,
            log_dir=log_dir,
            name=name,
            env=variables,
            cwd=cwd,
            ready_url=f"http://127.0.0.1:{port}/v2/health/ready",
            pass_fds=[sock.fileno()],
        )
    finally:
        sock.close()


def spawn_up(cwd: Path, state: Path, env: Mapping[str, str], *extra: str) -> subprocess.Popen[str]:
    """`mpfn up --port 0`, its output (stdout and stderr) on a text pipe; not waited for."""
    return subprocess.Popen(
        [PYTHON, "-m", "mpfn", "up", "--port", "0", "--state", str(state), *extra],
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def start_up(
    cwd: Path, state: Path, env: Mapping[str, str], *extra: str
) -> tuple[subprocess.Popen[str], str, list[str]]:
    """`mpfn up --port 0` as a user runs it (`extra`: more flags, such as `--runtime
    containers`); returns the process, the router URL it printed and its output so far
    (the process keeps writing to its stdout pipe)."""
    proc = spawn_up(cwd, state, env, *extra)
    lines: list[str] = []
    routers: list[str] = []
    wanted = len(extra[extra.index("--sites") + 1].split(",")) if "--sites" in extra else 1
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(("router: ", "router (")):  # `router (SITE): URL` per site
            routers.append(line.split()[-1])
            if len(routers) == wanted:
                return proc, routers[0], lines
    proc.wait(30)
    raise RuntimeError("mpfn up printed no router address:\n" + "".join(lines))


def start_tls_worker(
    state: Store | str, root: Path, name: str, cert: Path, key: Path, *extra: str
) -> Proc:
    """An ORT worker serving HTTPS with `cert`/`key` (`extra`: `--tls-client-ca`,
    `--token-file`, ...); ready once its port answers (probing HTTPS is the caller's)."""

    def launch(ports: list[int]) -> Proc:
        argv = worker_argv(state, root / f"cache-{name}", ports[0], "--preload", "demo",
                           "--tls-cert", str(cert), "--tls-key", str(key), *extra)  # fmt: skip
        return start(argv, port=ports[0], log_dir=root / "logs", name=name)

    return start_on_free_ports(1, launch)


def start_grpc_worker(
    state: Store | str, log_dir: Path, name: str = "ort-worker-grpc", *extra: str
) -> tuple[Proc, int]:
    """An ORT worker serving the demo model over REST and gRPC (`--grpc-port`); returns the
    process and its gRPC port (both ports taken free together, retried on a conflict)."""

    def launch(ports: list[int]) -> tuple[Proc, int]:
        argv = worker_argv(state, log_dir / f"cache-{name}-{ports[0]}", ports[0],
                           "--preload", "demo", "--grpc-port", str(ports[1]), *extra)  # fmt: skip
        proc = start(
            argv,
            port=ports[0],
            log_dir=log_dir,
            name=name,
            ready_url=f"http://127.0.0.1:{ports[0]}/v2/models/demo/ready",
        )
        return proc, ports[1]

    return start_on_free_ports(2, launch)


def start_grpc_router(
    state: Store | str,
    log_dir: Path,
    name: str = "router-grpc",
    *,
    settings: Mapping[str, str] | None = None,
) -> tuple[Proc, int]:
    """A router serving REST and gRPC (`python -m mpfn.functions.router --grpc-port`);
    returns the process and its gRPC port."""
    return start_entry_router(state, log_dir, name, grpc=True, settings=settings)


def start_entry_router(
    state: Store | str,
    log_dir: Path,
    name: str = "router-entry",
    *,
    args: Sequence[str] = (),
    grpc: bool = False,
    settings: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[Proc, int]:
    """A router started as its container is (`python -m mpfn.functions.router ARGS`),
    with `--grpc-port` when `grpc`; returns the process and its gRPC port (0: none).
    `settings` are `MPFN_ROUTER_*` values by field name, `env` more variables."""

    def launch(ports: list[int]) -> tuple[Proc, int]:
        grpc_args = ["--grpc-port", str(ports[1])] if grpc else []
        argv = [PYTHON, "-m", "mpfn.functions.router", "--host", "127.0.0.1",
                "--port", str(ports[0]), *grpc_args, *args]  # fmt: skip
        variables = {
            "MPFN_STATE": _state_url(state),
            "MPFN_ROUTER_REFRESH_TTL_S": "0.2",
            "MPFN_ROUTER_USAGE_FLUSH_S": "0.2",
            **{f"MPFN_ROUTER_{key.upper()}": value for key, value in (settings or {}).items()},
            **(env or {}),
        }
        proc = start(
            argv,
            port=ports[0],
            log_dir=log_dir,
            name=name,
            env=variables,
            ready_url=f"http://127.0.0.1:{ports[0]}/v2/health/ready",
        )
        return proc, ports[1] if grpc else 0

    return start_on_free_ports(2 if grpc else 1, launch)


def start_command(argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> subprocess.Popen[str]:
    """A long-running `mpfn` command as a user starts it (to interrupt it, as Ctrl-C
    does): its output on pipes."""
    return subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
