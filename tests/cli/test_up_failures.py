"""`mpfn up` when something is wrong: a taken port, a part failing at start, a part dying
later (restarted with backoff), and a router requiring API keys."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from mpfn.up import (
    Running,
    Stack,
    Supervised,
    UpError,
    check_ports,
    last_meaningful_line,
    make_plan,
    restart_delay,
    start_thread,
)
from tests.servers.mpfn_procs import start_up
from tests.servers.ports import listening_socket

MPFN = [sys.executable, "-m", "mpfn"]
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 16], "data": [0.5] * 16}]}


def _env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k != "MPFN_STATE"}, **extra}


def _up(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`mpfn up` that is expected to stop by itself."""
    state = str(tmp_path / "state")
    return subprocess.run(
        [*MPFN, "up", "--state", state, *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_taken_router_port_fails_in_one_line_before_anything_starts(tmp_path: Path) -> None:
    with listening_socket() as sock:
        port = sock.getsockname()[1]
        done = _up(tmp_path, "--port", str(port), env=_env())
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip() == (
        f"error: port {port} is in use: pass --port 0 for a free one, or stop what uses it (router)"
    )
    assert "router:" not in done.stdout and "try it" not in done.stdout
    assert not (tmp_path / "state" / "logs").exists()  # nothing was started


def test_a_part_failing_at_start_quotes_its_log_in_one_line(tmp_path: Path) -> None:
    done = _up(tmp_path, "--port", "0", env=_env(MPFN_ROUTER_MAX_ATTEMPTS="0"))
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: router exited with code 1 at start: ValueError: ")
    assert "max_attempts and breaker_failures must be >= 1" in lines[0]
    assert "router.log" in lines[0] and "Traceback" not in done.stderr
    assert "router:" not in done.stdout
    assert not (tmp_path / "state" / "up.json").exists()


def test_worker_ports_are_checked_too(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, 8080, pick_port=iter([9001, 9002, 9003]).__next__)  # + control
    try:
        check_ports(plan, in_use=lambda port: port == 9002)
    except UpError as exc:
        assert str(exc).startswith("port 9002 is in use: ")
        assert "worker gcp-us-central1" in str(exc)
    else:
        raise AssertionError("a taken worker port was not reported")


def test_last_meaningful_line_skips_shutdown_noise_and_traceback_framing() -> None:
    uvicorn = (
        "INFO:     Started server process [1]\n"
        "ERROR:    [Errno 98] error while attempting to bind on address "
        "('127.0.0.1', 8080): address already in use\n"
        "INFO:     Waiting for application shutdown.\n"
        "INFO:     Application shutdown complete.\n\n"
    )
    assert last_meaningful_line(uvicorn).endswith("address already in use")
    traceback = (
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\n'
        "    raise ValueError('bad')\n"
        "    ^^^^^^^^^^^^^^^^^^^^^^^\n"
        "ValueError: bad setting\n"
    )
    assert last_meaningful_line(traceback) == "ValueError: bad setting"
    assert last_meaningful_line("") == ""


@dataclass
class FakePart:
    code: int | None = None  # None: running
    notes: list[str] = field(default_factory=list)

    def alive(self) -> bool:
        return self.code is None

    def exit_reason(self) -> str:
        return f"exited with code {self.code}"

    def last_line(self) -> str:
        return "boom"

    def note(self, line: str) -> None:
        self.notes.append(line)

    def where(self) -> str:
        return "part.log"

    def stop(self) -> None:
        self.code = 0


def test_a_stopped_worker_is_restarted_with_backoff_and_a_stopped_router_ends_the_stack(
    tmp_path: Path,
) -> None:
    import threading

    clock = [0.0]
    started: list[FakePart] = []

    def start() -> FakePart:
        started.append(FakePart())
        return started[-1]

    worker = Supervised("worker w", start, start())
    router = Supervised("router", start, start(), fatal=True)
    echoed: list[str] = []
    stack = Stack(make_plan(tmp_path, 1, pick_port=lambda: 2), [worker, router],
                  threading.Event(), echoed.append)  # fmt: skip

    def tick(t: float) -> str | None:
        clock[0] = t
        return stack.supervise(now=lambda: clock[0])

    first = worker.running
    assert isinstance(first, FakePart)
    first.code = -9
    assert tick(1.0) is None
    assert echoed == ["worker w exited with code -9; restarting in 0.5 s (restart 1)"]
    assert first.notes == echoed  # in the part's own log too
    assert tick(1.4) is None and len(started) == 2  # not yet due
    assert tick(1.5) is None and len(started) == 3 and worker.running is started[-1]
    started[-1].code = 1  # dies again at once: the delay doubles
    tick(1.6)
    assert echoed[-1] == "worker w exited with code 1; restarting in 1 s (restart 2)"
    tick(2.6)
    tick(2.6 + 60)  # up long enough: healthy again, the next restart is quick
    started[-1].code = -9
    tick(2.6 + 61)
    assert echoed[-1].endswith("restarting in 0.5 s (restart 3)")
    assert [restart_delay(n) for n in (1, 2, 3, 10)] == [0.5, 1.0, 2.0, 30.0]

    router_part = router.running
    assert isinstance(router_part, FakePart)
    router_part.code = 3
    assert tick(100.0) == "router exited with code 3: boom (see part.log)"


def test_a_warm_loop_that_raised_is_restarted(tmp_path: Path) -> None:
    import threading
    import time

    runs: list[int] = []

    def warm() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("store gone")

    log = tmp_path / "logs" / "warm-loop.log"

    def start() -> Running:
        return start_thread("warm", warm, log)

    part = Supervised("warm loop", start, start())
    echoed: list[str] = []
    stack = Stack(make_plan(tmp_path, 1, pick_port=lambda: 2), [part], threading.Event(),
                  echoed.append)  # fmt: skip
    deadline = time.monotonic() + 10
    while part.running.alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stack.supervise(now=lambda: 0.0) is None
    assert echoed == [
        "warm loop stopped: RuntimeError('store gone'); restarting in 0.5 s (restart 1)"
    ]
    assert echoed[0] in log.read_text()
    stack.supervise(now=lambda: 1.0)
    assert echoed[-1] == "warm loop started again"
    part.running.stop()
    assert len(runs) == 2


def test_with_api_keys_the_examples_send_one(tmp_path: Path) -> None:
    state = tmp_path / "state"
    created = subprocess.run(
        [*MPFN, "--state", str(state), "keys", "create", "demo-user", "--json"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    key = json.loads(created.stdout)["key"]
    env = _env(MPFN_ROUTER_AUTH="keys")
    proc, router, lines = start_up(tmp_path, state, env)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C"):
                break
        out = "".join(lines)
        curl = next(line for line in lines if line.strip().startswith("curl"))
        assert '-H "Authorization: Bearer $MPFN_API_KEY"' in curl
        invoke = next(line for line in lines if " invoke demo " in line)
        assert "MPFN_API_KEY" in invoke and "--api-key" in invoke
        assert "MPFN_ROUTER_AUTH=keys" in out

        url = f"{router}/v2/models/demo/infer"
        assert httpx.post(url, json=BODY, timeout=30).status_code == 401
        signed = httpx.post(url, json=BODY, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert signed.status_code == 200, signed.text
        x = json.dumps({"x": [[0.5] * 16]})
        invoked = subprocess.run(
            [*MPFN, "--state", str(state), "invoke", "demo", "--input", x],
            cwd=tmp_path, env={**env, "MPFN_API_KEY": key}, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert invoked.returncode == 0, invoked.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


def test_without_api_keys_the_examples_send_none(tmp_path: Path) -> None:
    proc, _, lines = start_up(tmp_path, tmp_path / "state", _env())
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C"):
                break
        assert "Authorization" not in "".join(lines) and "API key" not in "".join(lines)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
