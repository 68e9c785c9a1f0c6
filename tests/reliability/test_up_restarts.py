"""`mpfn up` supervises its workers: one killed under load is restarted on its port while
the router fails over to the other pool, and no request fails."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx

from tests.reliability.load import load
from tests.servers.mpfn_procs import start_up


def _child_pid(parent: int, port: int) -> int:
    """The pid of the child of `parent` started with `--port PORT`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"--port" in argv and argv[argv.index(b"--port") + 1] == b"%d" % port:
            return int(entry.name)
    raise AssertionError(f"no child of {parent} listens on port {port}")


def _ready(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/v2/health/ready", timeout=1.0).status_code == 200
    return False


def test_killed_worker_is_restarted_on_its_port_with_no_failed_request(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MPFN_STATE"}
    state = tmp_path / "state"
    proc, router, _ = start_up(tmp_path, state, env)
    try:
        pools = json.loads((state / "up.json").read_text())["pools"]
        url = pools["aws-us-east-1"]
        port = int(url.rsplit(":", 1)[1])
        victim = _child_pid(proc.pid, port)
        killed = threading.Event()

        def kill() -> None:
            os.kill(victim, signal.SIGKILL)
            killed.set()

        # the load goes on until the killed worker answers again (or mpfn up is gone)
        report = load(
            router,
            total=100_000,
            concurrency=4,
            triggers={40: kill},
            stop_when=lambda: proc.poll() is not None or (killed.is_set() and _ready(url)),
            min_requests=80,
            max_seconds=90,
        )
        assert killed.is_set()
        assert not report.failures, report.describe_failures()
        assert _ready(url), "the worker did not come back on its port"
        assert _child_pid(proc.pid, port) != victim
        assert proc.poll() is None, "mpfn up stopped"
        after = load(router, total=100, concurrency=4)  # and the stack goes on serving
        assert not after.failures, after.describe_failures()
        log = (state / "logs" / "worker-aws-us-east-1.log").read_text()
        assert "worker aws-us-east-1 exited with code -9; restarting in" in log
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "worker aws-us-east-1 exited with code -9; restarting in 0.5 s (restart 1)" in out
    deadline = time.monotonic() + 10
    while _ready(url) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _ready(url), "the restarted worker outlived mpfn up"
