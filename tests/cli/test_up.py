"""`mpfn up` as a user runs it: one command, a working router, and a clean stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.servers.mpfn_procs import spawn_up, start_up

MPFN = [sys.executable, "-m", "mpfn"]
X = [0.25 * i for i in range(16)]


def _port_closed(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, int(port))) != 0


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_up_serves_the_demo_and_stops_everything(tmp_path: Path, stop_signal: int) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MPFN_STATE"}
    state = tmp_path / "state"
    proc, router, _ = start_up(tmp_path, state, env)
    try:
        pools = json.loads((state / "up.json").read_text())["pools"]
        assert len(pools) == 2

        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 16], "data": X}]}
        resp = httpx.post(f"{router}/v2/models/demo/infer", json=body, timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-mpfn-pool"] in pools
        y = resp.json()["outputs"][0]["data"]

        invoked = subprocess.run(
            [*MPFN, "--state", str(state), "invoke", "demo", "--input", json.dumps({"x": [X]})],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert invoked.returncode == 0, invoked.stderr
        assert json.loads(invoked.stdout)["outputs"][0]["data"] == y

        pulled = subprocess.run(
            [*MPFN, "--state", str(state), "models", "pull", "demo", "--out", "demo.onnx"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert pulled.returncode == 0, pulled.stderr
        from mpfn.demo import build_demo_model, demo_reference

        assert (tmp_path / "demo.onnx").read_bytes() == build_demo_model()
        import numpy as np

        expected = demo_reference(np.asarray([X], dtype=np.float32))
        np.testing.assert_allclose(
            np.asarray(y, dtype=np.float32).reshape(1, 4), expected, rtol=1e-5, atol=1e-6
        )

        proc.send_signal(stop_signal)
        assert proc.wait(timeout=30) == 0
        for url in [router, *pools.values()]:
            deadline = time.monotonic() + 10
            while not _port_closed(url) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _port_closed(url), f"{url} still open after mpfn up stopped"
        assert not (state / "up.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_up_stopped_while_starting_stops_what_it_started(tmp_path: Path) -> None:
    """SIGTERM before the stack is ready (a worker started, the router not yet) stops
    every part started so far and exits 130, leaving no worker behind."""
    env = {k: v for k, v in os.environ.items() if k != "MPFN_STATE"}
    proc = spawn_up(tmp_path, tmp_path / "state", env)
    try:
        assert proc.stdout is not None
        workers: list[str] = []
        for line in proc.stdout:
            if line.startswith("worker "):
                workers.append(line.split()[-1])
                break
        assert workers, "mpfn up printed no worker address"
        proc.send_signal(signal.SIGTERM)
        out = proc.stdout.read()
        assert proc.wait(timeout=30) == 130, out
        assert "interrupted" in out
        for url in workers:
            deadline = time.monotonic() + 10
            while not _port_closed(url) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _port_closed(url), f"{url} still open after mpfn up was stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_up_secure_serves_through_tls_pools_that_refuse_everyone_else(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MPFN_STATE"}
    state = tmp_path / "state"
    proc, router, _ = start_up(tmp_path, state, env, "--secure")
    try:
        pools = json.loads((state / "up.json").read_text())["pools"]
        assert all(url.startswith("https://") for url in pools.values())
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 16], "data": X}]}
        resp = httpx.post(f"{router}/v2/models/demo/infer", json=body, timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-mpfn-pool"] in pools

        listed = subprocess.run(
            [*MPFN, "--state", str(state), "pools", "list", "--json"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        docs = json.loads(listed.stdout)
        assert {d["endpoint"].rstrip("/") for d in docs} == set(pools.values())
        token = (state / "tls" / "pool-token").read_text().strip()
        assert token not in listed.stdout
        assert all(d["auth"]["token"].startswith("file:") for d in docs)

        url = next(iter(pools.values()))
        trusted = ssl.create_default_context(cafile=state / "tls" / "ca.pem")
        with pytest.raises(httpx.HTTPError):  # no client certificate: refused in the handshake
            httpx.get(f"{url}/v2/health/ready", verify=trusted, timeout=10)
        trusted.load_cert_chain(state / "tls" / "router.pem", state / "tls" / "router-key.pem")
        plain = httpx.post(f"{url}/v2/models/demo/infer", json=body, verify=trusted, timeout=10)
        assert plain.status_code == 401  # a client certificate is not enough: the token too
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_up_sites_runs_a_router_replica_and_pools_per_site(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MPFN_STATE"}
    state = tmp_path / "state"
    proc, _, lines = start_up(tmp_path, state, env, "--sites", "east,west")
    try:
        routers = dict(
            (line.split()[1].strip("():"), line.split()[2])
            for line in lines
            if line.startswith("router (")
        )
        assert list(routers) == ["east", "west"]
        up = json.loads((state / "up.json").read_text())
        assert up["routers"] == routers and up["router"] == routers["east"]
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 16], "data": X}]}
        for url in routers.values():
            resp = httpx.post(f"{url}/v2/models/demo/infer", json=body, timeout=30)
            assert resp.status_code == 200, resp.text
        listed = subprocess.run(
            [*MPFN, "--state", str(state), "pools", "list", "--json"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        sited = sorted((d["id"], d["site"]) for d in json.loads(listed.stdout))
        assert sited == [(f"{s}-{n}", s) for s in ("east", "west") for n in (1, 2)]
        # every site's replica holds the registry; a write now reaches them all
        for site in ("east", "west"):
            replica = tmp_path / "state-sites" / site
            assert up["sites"][site] == str(replica)
            assert (replica / "pools" / "east-1.json").exists()
        subprocess.run(
            [*MPFN, "--state", str(state), "pools", "add", "extra", "--endpoint",
             "http://extra.invalid:8000", "--site", "west"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert all((tmp_path / "state-sites" / s / "pools" / "extra.json").exists()
                   for s in ("east", "west"))  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
