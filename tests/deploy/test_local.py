"""`mpfn deploy --target local`: the `mpfn up` stack in the background, status, logs, destroy."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import httpx
import yaml

from tests.deploy.conftest import run_cli
from tests.servers.mpfn_procs import start_up


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_local_deploy_serves_then_noop_then_destroy(tmp_path: Path) -> None:
    raw = {"state": "./.mpfn", "deploy": {"target": "local", "local": {"port": 0}}}
    (tmp_path / "mpfn.yaml").write_text(yaml.safe_dump(raw))
    pid = 0
    try:
        up = run_cli(tmp_path, "deploy", "--json", timeout=240)
        assert up.returncode == 0, up.stderr
        outcome = json.loads(up.stdout)
        url = outcome["outputs"]["router_url"]
        assert outcome["applied"] and [c["action"] for c in outcome["plan"]["changes"]] == [
            "create"
        ]
        pid = json.loads((tmp_path / ".mpfn/deploy-local.json").read_text())["pid"]
        assert _alive(pid)

        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 16], "data": [0.5] * 16}]}
        answer = httpx.post(f"{url}/v2/models/demo/infer", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["shape"][0] == 1

        again = run_cli(tmp_path, "deploy", "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["plan"]["changes"] == []

        status = run_cli(tmp_path, "deploy", "status", "--json")
        assert status.returncode == 0, status.stderr
        info = json.loads(status.stdout)
        assert info["running"] and info["router_ready"] and info["router_url"] == url
        assert info["deployed"] and info["complete"]

        logs = run_cli(tmp_path, "deploy", "logs", "-n", "5")
        assert logs.returncode == 0 and "router.log <==" in logs.stdout

        gone = run_cli(tmp_path, "destroy")
        assert gone.returncode == 0, gone.stderr
        assert "- delete local.stack stack" in gone.stdout
        assert not _alive(pid)
        after = json.loads(run_cli(tmp_path, "deploy", "status", "--json").stdout)
        assert not after["running"] and not after["deployed"]
    finally:
        if pid and _alive(pid):
            os.kill(pid, 15)


def test_local_deploy_refuses_a_running_mpfn_up_it_did_not_start(tmp_path: Path) -> None:
    raw = {"state": "./.mpfn", "deploy": {"target": "local", "local": {"port": 0}}}
    (tmp_path / "mpfn.yaml").write_text(yaml.safe_dump(raw))
    env = {k: v for k, v in os.environ.items() if k != "MPFN_STATE"}
    proc, router, _ = start_up(tmp_path, tmp_path / ".mpfn", env)
    try:
        runtime = (tmp_path / ".mpfn/up.json").read_text()
        pools = (tmp_path / ".mpfn/pools/aws-us-east-1.json").read_text()

        refused = run_cli(tmp_path, "deploy")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1, refused.stderr
        assert f"`mpfn up` (pid {proc.pid}) is running on" in lines[0]
        assert "stop it" in lines[0] and "deploy.local.state" in lines[0]
        assert (tmp_path / ".mpfn/up.json").read_text() == runtime  # untouched
        assert (tmp_path / ".mpfn/pools/aws-us-east-1.json").read_text() == pools
        assert not (tmp_path / ".mpfn/deploy-local.json").exists()

        gone = run_cli(tmp_path, "destroy")
        assert gone.returncode == 0, gone.stderr
        assert proc.poll() is None
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 16], "data": [0.5] * 16}]}
        answer = httpx.post(f"{router}/v2/models/demo/infer", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
