"""Scale to zero without losing a request, under `mpfn up` (real processes).

Every pool is scaled to zero by hand (`mpfn pools scale`), then 20 concurrent requests
arrive: the router wakes a pool (through `mpfn up`'s control endpoint), holds them, and
answers all 20 with 200; the route reason says it woke the pool and how long that took.
With a deadline shorter than a wake, the requests get 503 with `Retry-After` and a
message saying the pool is waking: nothing else.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.servers.mpfn_procs import start_up

MPFN = [sys.executable, "-m", "mpfn"]
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 16], "data": [0.5] * 16}]}
POOLS = ("aws-us-east-1", "gcp-us-central1")


def mpfn(cwd: Path, state: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [*MPFN, "--state", str(state), *args], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v2/health/ready", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def burst(router: str, n: int) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60.0) as client:
            calls = [client.post(f"{router}/v2/models/demo/infer", json=BODY) for _ in range(n)]
            return list(await asyncio.gather(*calls))

    return asyncio.run(run())


def scale_all_to_zero(cwd: Path, state: Path, env: dict[str, str], workers: dict[str, str]) -> None:
    for pool in POOLS:
        out = mpfn(cwd, state, env, "pools", "scale", pool, "--replicas", "0")
        assert f"pool {pool}: 1 -> 0 replicas" in out or f"pool {pool}: 0 -> 0" in out, out
    deadline = time.monotonic() + 30
    while any(ready(url) for url in workers.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(ready(url) for url in workers.values())
    time.sleep(1.0)  # the router re-reads the registry (MPFN_ROUTER_REFRESH_TTL_S=0.2)


def test_requests_for_pools_at_zero_wake_one_and_none_is_lost(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MPFN_STATE"}
    env["MPFN_ROUTER_REFRESH_TTL_S"] = "0.2"
    state = tmp_path / "state"
    proc, router, _ = start_up(tmp_path, state, env)
    try:
        workers = json.loads((state / "up.json").read_text())["pools"]
        listed = json.loads(mpfn(tmp_path, state, env, "pools", "list", "--json"))
        assert {p["scaling"]["kind"] for p in listed} == {"local"}

        scale_all_to_zero(tmp_path, state, env, workers)
        answers = burst(router, 20)
        bad = [
            (r.status_code, r.text, r.headers.get("x-mpfn-route-reason"))
            for r in answers
            if r.status_code != 200
        ]
        assert not bad, bad
        reasons = [r.headers["x-mpfn-route-reason"] for r in answers]
        woke = [re.search(r"woke pool (\S+) \((\d+) ms\)", reason) for reason in reasons]
        assert all(woke), reasons
        # one wake per pool, shared: 20 held requests are more than one pool takes (8)
        assert {m.group(1) for m in woke if m} == set(POOLS)
        waits = sorted(int(m.group(2)) for m in woke if m)
        print(f"wake: {len(answers)} requests held {waits[0]}-{waits[-1]} ms, all answered")

        # a deadline shorter than a wake: 503 + Retry-After, saying the pool is waking
        policy = tmp_path / "policy.yaml"
        policy.write_text("name: demo\ntimeout_ms: 200\n")
        mpfn(tmp_path, state, env, "policy", "set", str(policy))
        scale_all_to_zero(tmp_path, state, env, workers)
        late = burst(router, 20)
        assert {r.status_code for r in late} == {503}, [r.text for r in late]
        for r in late:
            assert int(r.headers["retry-after"]) >= 1
            assert "is waking from zero replicas" in r.json()["error"]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
