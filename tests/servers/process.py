"""Run a test server as a child process on loopback, wait until it answers, stop it.

Every server runs in its own process group and is stopped with SIGTERM, then SIGKILL.
Its stdout and stderr go to a log file whose tail is part of every start failure.
Ports are chosen by `tests.servers.ports`; nothing here picks one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

PYTHON = sys.executable
ROOT = Path(__file__).resolve().parents[2]  # the repository: `tests` is importable from here


class ServerExited(RuntimeError):
    """The server process ended before it was ready; the message ends with its log."""


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.popen, timeout)


def stop_process(popen: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if popen.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGTERM)
    try:
        popen.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(5)


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, proc: Proc | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise ServerExited(f"{what} exited with {proc.popen.returncode}:\n{proc.log()}")
        try:
            if check():
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout}s" + (f":\n{proc.log()}" if proc else ""))


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        return httpx.get(url, timeout=2.0).status_code < 500

    return check


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start(
    argv: Sequence[str],
    *,
    port: int,
    log_dir: Path,
    name: str,
    ready_url: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60.0,
    pass_fds: Sequence[int] = (),
) -> Proc:
    """Start `argv` in its own process group; wait for `ready_url` (or the port) to answer."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{port}.log"
    with log_path.open("wb") as fh:
        popen = subprocess.Popen(
            list(argv),
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )
    proc = Proc(popen, port, log_path)
    try:
        if ready_url:
            wait_until(http_ok(ready_url), timeout, name, proc)
        else:
            wait_until(lambda: port_open(port), timeout, name, proc)
    except BaseException:
        proc.stop()
        raise
    return proc


@contextlib.contextmanager
def stopping(proc: Proc) -> Iterator[Proc]:
    """Yield `proc`, stopping it afterwards."""
    try:
        yield proc
    finally:
        proc.stop()
