"""`mpfn warm replay` against a real `mpfn up` stack: a few seconds of a real trace at a high
speedup, then an interrupted replay that still reports and restores the warm settings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.servers.mpfn_procs import start_command, start_up
from tests.simulator.shared_traces import trace

MPFN = [sys.executable, "-m", "mpfn"]
SIMULATE_FIELDS = {
    "policy", "requests", "cold_starts", "cold_start_rate", "warm_model_hours", "models",
    "window_start", "window_end",
}  # fmt: skip


def test_replay_drives_a_running_stack(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MPFN_STATE", "MPFN_ROUTER")}
    state = tmp_path / "state"
    proc, router, _ = start_up(tmp_path, state, env)

    def mpfn(*args: str) -> list[str]:
        return [*MPFN, "--state", str(state), *args]

    try:
        # a second model nobody has used yet: its first requests wait for a load
        from mpfn.demo import build_demo_model

        (tmp_path / "m.onnx").write_bytes(build_demo_model())
        subprocess.run(
            mpfn("models", "push", "m.onnx", "--name", "fresh", "--version", "1"),
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60  # until the router's snapshot has it
        while httpx.get(f"{router}/v2/models/fresh", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "the router never saw the pushed model"
            time.sleep(0.2)
        azure = trace("azure-llm-2023-code.csv")
        done = subprocess.run(
            mpfn("warm", "replay", "--trace", str(azure), "--speedup", "50",
                 "--models", "fresh,demo", "--max-requests", "40", "--max-seconds", "30",
                 "--concurrency", "8", "--policy", "keepalive:600", "--json"),
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert set(report) >= SIMULATE_FIELDS
        assert report["policy"] == "keepalive:600" and report["router"] == router
        assert report["requests"] == 40 and report["stopped"] == "completed"
        assert report["answered"] > 0, json.dumps(report)
        assert report["model_map"] == {"azure-llm-2023-code": "fresh"}
        assert report["cold_starts"] >= 1 and report["cold"]["loads"] >= 1
        assert {"p50", "p90", "p99"} <= set(report["latency_ms"])
        assert report["warm_model_hours"] is None
        assert {p["source"] for p in report["pools"]} <= {"scaling", "assumed-constant"}
        assert len(report["pools"]) == 2 and report["replica_hours"] >= 0
        assert report["cost"] == pytest.approx(sum(p["cost"] for p in report["pools"]), abs=1e-5)
        assert report["settings"]["keep_alive_s"] == 12.0  # 600 s at 50x
        assert not (state / "config" / "warmer.json").exists()  # none before, none after

        # Ctrl-C: a partial report, and the settings the replay wrote are gone again
        slow = start_command(
            mpfn("warm", "replay", "--trace", str(azure), "--speedup", "1",
                 "--max-seconds", "60", "--policy", "none", "--json"),
            tmp_path, env,
        )  # fmt: skip
        try:
            settings = state / "config" / "warmer.json"
            deadline = time.monotonic() + 60
            while not settings.exists() and slow.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert settings.exists()
            time.sleep(1.0)  # a few requests go out
            slow.send_signal(signal.SIGINT)
            out, err = slow.communicate(timeout=60)
        finally:
            if slow.poll() is None:
                slow.kill()
                slow.wait()
        assert slow.returncode == 0, err
        partial = json.loads(out)
        assert partial["stopped"] == "interrupted" and partial["policy"] == "none"
        assert partial["requests"] < partial["scheduled"]
        assert not settings.exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
