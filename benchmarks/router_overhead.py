"""Router overhead: client->worker vs client->router->worker latency, and throughput.

Starts one ORT worker and one router (uvicorn) on loopback over a throw-away local store
holding the demo model, then sends the same JSON v2 infer request directly and through
the router, interleaved on two keep-alive connections, and prints p50/p99 of both and the
difference. Finally it measures requests/s at saturation with a few concurrent clients.
Bounded: `--requests` latency samples per path, `--saturation-requests` per run.

    python benchmarks/router_overhead.py [--requests 2000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import numpy as np
from pydantic import HttpUrl

from mpfn.artifacts.models import push_model
from mpfn.demo import build_demo_model, demo_model_version
from mpfn.documents import Pool
from mpfn.state import Documents
from mpfn.store import LocalStore

BODY = json.dumps(
    {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.25] * 16}]}
).encode()
PATH = "/v2/models/demo/infer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(argv: list[str], port: int, ready: str, env: dict[str, str]) -> Iterator[str]:
    proc = subprocess.Popen(
        argv,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[2]} exited with {proc.returncode}")
            try:
                conn = http.client.HTTPConnection(url, timeout=2)
                conn.request("GET", ready)
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{argv[2]} did not become ready")
            time.sleep(0.1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def infer_once(conn: http.client.HTTPConnection) -> float:
    start = time.perf_counter()
    conn.request("POST", PATH, body=BODY, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    elapsed = time.perf_counter() - start
    if resp.status != 200:
        raise RuntimeError(f"infer answered {resp.status}")
    return elapsed


def latency(direct: str, routed: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    a = http.client.HTTPConnection(direct)
    b = http.client.HTTPConnection(routed)
    for _ in range(100):  # warm up both paths
        infer_once(a)
        infer_once(b)
    d, r = np.empty(n), np.empty(n)
    for i in range(n):  # interleaved, alternating which goes first
        if i % 2:
            d[i], r[i] = infer_once(a), infer_once(b)
        else:
            r[i], d[i] = infer_once(b), infer_once(a)
    return d * 1000, r * 1000


async def saturate(url: str, total: int, concurrency: int) -> float:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        remaining = total

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                async with session.post(f"http://{url}{PATH}", data=BODY) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"infer answered {resp.status}")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--saturation-requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(Path(tmp) / "state")
        model = Path(tmp) / "demo.onnx"
        model.write_bytes(build_demo_model())
        doc = demo_model_version(push_model(store, model, name="demo", version="1"))
        docs = Documents(store)
        docs.upsert(doc.key, doc)
        wport, rport = free_port(), free_port()
        worker_argv = [
            sys.executable, "-m", "mpfn.adapters.ort_worker", "--host", "127.0.0.1",
            "--port", str(wport), "--state", store.url, "--preload", "demo",
            "--cache-dir", str(Path(tmp) / "cache"),
        ]  # fmt: skip
        router_argv = [
            sys.executable, "-m", "uvicorn", "mpfn.functions.router.app:app",
            "--host", "127.0.0.1", "--port", str(rport), "--no-access-log",
            "--log-level", "warning",
        ]  # fmt: skip
        pool = Pool(id="w", cloud="local", endpoint=HttpUrl(f"http://127.0.0.1:{wport}"))
        docs.upsert(pool.key, pool)
        with (
            server(worker_argv, wport, "/v2/models/demo/ready", {}) as direct,
            server(router_argv, rport, "/v2/models/demo/ready", {"MPFN_STATE": store.url}) as via,
        ):
            d, r = latency(direct, via, args.requests)
            print(f"JSON v2 infer, demo model, {args.requests} interleaved requests per path")
            for label, sample in (("direct to worker", d), ("through router  ", r)):
                p50, p99 = np.percentile(sample, 50), np.percentile(sample, 99)
                print(f"  {label} : p50 {p50:.3f} ms  p99 {p99:.3f} ms")
            added = r - d
            print(
                f"  router adds      : p50 {np.percentile(r, 50) - np.percentile(d, 50):.3f} ms"
                f"  p99 {np.percentile(r, 99) - np.percentile(d, 99):.3f} ms"
                f"  (paired median {np.median(added):.3f} ms)"
            )
            n, c = args.saturation_requests, args.concurrency
            direct_rps = asyncio.run(saturate(direct, n, c))
            routed_rps = asyncio.run(saturate(via, n, c))
            print(f"Saturation, {c} concurrent clients, {n} requests each run")
            print(f"  direct to worker : {direct_rps:,.0f} req/s")
            print(f"  through router   : {routed_rps:,.0f} req/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
