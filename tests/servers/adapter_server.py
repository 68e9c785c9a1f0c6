"""Start and stop an adapter server (`python -m mpfn.adapters.server --kind KIND`): mpfn's
pool protocol in front of one backend, through that backend kind's adapter."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.servers.ports import start_on_free_ports
from tests.servers.process import PYTHON, Proc, start, stopping


def adapter_server_argv(
    kind: str,
    backend: str,
    port: int,
    *,
    state: str | None = None,
    options: Mapping[str, str] | None = None,
    extra: tuple[str, ...] = (),
) -> list[str]:
    argv = [
        PYTHON, "-m", "mpfn.adapters.server", "--kind", kind, "--backend", backend,
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    if state is not None:
        argv += ["--state", state]
    for key, value in (options or {}).items():
        argv += ["--option", f"{key}={value}"]
    return [*argv, *extra]


def start_adapter_server(
    kind: str,
    backend: str,
    log_dir: Path,
    *,
    state: str | None = None,
    options: Mapping[str, str] | None = None,
    extra: tuple[str, ...] = (),
    name: str = "adapter-server",
    env: Mapping[str, str] | None = None,
) -> Proc:
    """An adapter server for `backend`; ready once it answers `/v2/health/live` (the
    backend may be down: that is what some tests want)."""

    def launch(ports: list[int]) -> Proc:
        own = () if "--cache-dir" in extra else ("--cache-dir", str(log_dir / f"cache-{ports[0]}"))
        argv = adapter_server_argv(
            kind, backend, ports[0], state=state, options=options, extra=(*extra, *own)
        )
        return start(
            argv,
            port=ports[0],
            log_dir=log_dir,
            name=name,
            env={"MPFN_STATE": "", **(env or {})},
            ready_url=f"http://127.0.0.1:{ports[0]}/v2/health/live",
        )

    return start_on_free_ports(1, launch)


@contextlib.contextmanager
def adapter_server(
    kind: str,
    backend: str,
    log_dir: Path,
    *,
    state: str | None = None,
    options: Mapping[str, str] | None = None,
    extra: tuple[str, ...] = (),
    name: str = "adapter-server",
    env: Mapping[str, str] | None = None,
) -> Iterator[Proc]:
    """`start_adapter_server` as a context: the server stops afterwards."""
    proc = start_adapter_server(
        kind, backend, log_dir, state=state, options=options, extra=extra, name=name, env=env
    )
    with stopping(proc):
        yield proc
