"""gRPC overhead: tritonclient.grpc calling a worker's gRPC port directly vs through the router.

Starts one ORT worker (`--grpc-port`) and one router (`--grpc-port`) on loopback over a
throw-away local store holding the demo model. Two pools name the same worker: `grpc`
(reached over gRPC, `options.grpc_endpoint`) and `rest` (reached over REST, each call
translated). The same ModelInfer (x FP32 [1,16], raw contents) is sent on three paths,
interleaved with the order rotating every request: the worker directly, the router to the
gRPC pool and the router to the REST pool (pinned with `x-mpfn-pool` metadata). It prints
p50/p99 of each path and what the router adds, then requests/s at saturation with
`--concurrency` client threads, one path after the other. `--rounds` repeats it all and
reports the medians over rounds, since a shared machine is noisy.

    python benchmarks/grpc_overhead.py [--requests 2000] [--rounds 3] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import tritonclient.grpc as tgrpc
from pydantic import HttpUrl

from mpfn.artifacts.models import push_model
from mpfn.demo import build_demo_model, demo_model_version
from mpfn.documents import Pool
from mpfn.state import Documents
from mpfn.store import LocalStore

X = np.full((1, 16), 0.25, dtype=np.float32)
PATHS = ("direct", "router-grpc", "router-rest")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


class Path_:
    """One way to reach the model: a client and the metadata that pins its pool."""

    def __init__(self, name: str, port: int, pool: str | None) -> None:
        self.name = name
        self.target = f"127.0.0.1:{port}"
        self.headers = {"x-mpfn-pool": pool} if pool else None
        self.client = tgrpc.InferenceServerClient(self.target)
        self.inputs = [tgrpc.InferInput("x", [1, 16], "FP32")]
        self.inputs[0].set_data_from_numpy(X)

    def call(self, client: tgrpc.InferenceServerClient | None = None) -> None:
        (client or self.client).infer("demo", self.inputs, headers=self.headers)


def latencies(paths: list[Path_], requests: int) -> dict[str, np.ndarray]:
    samples: dict[str, list[float]] = {p.name: [] for p in paths}
    for p in paths:  # warm up each path (connections, the model)
        for _ in range(50):
            p.call()
    for i in range(requests):
        shift = i % len(paths)
        for p in paths[shift:] + paths[:shift]:
            started = time.perf_counter()
            p.call()
            samples[p.name].append((time.perf_counter() - started) * 1000.0)
    return {k: np.asarray(v) for k, v in samples.items()}


def throughput(path: Path_, concurrency: int, total: int) -> float:
    clients = [tgrpc.InferenceServerClient(path.target) for _ in range(concurrency)]
    per = total // concurrency
    for c in clients:
        path.call(c)
    barrier = threading.Barrier(concurrency + 1)

    def run(client: tgrpc.InferenceServerClient) -> None:
        barrier.wait()
        for _ in range(per):
            path.call(client)

    threads = [threading.Thread(target=run, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    for c in clients:
        c.close()
    return per * concurrency / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="latency samples per path")
    parser.add_argument("--saturation-requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mpfn-grpc-bench-") as tmp:
        root = Path(tmp)
        store = LocalStore(root / "state")
        model = root / "demo.onnx"
        model.write_bytes(build_demo_model())
        doc = demo_model_version(push_model(store, model, name="demo", version="1"))
        docs = Documents(store)
        docs.upsert(doc.key, doc)
        http_port, grpc_port, router_port, router_grpc = (free_port() for _ in range(4))
        worker_url = f"http://127.0.0.1:{http_port}"
        for pool_id, options in (
            ("grpc", {"grpc_endpoint": f"127.0.0.1:{grpc_port}"}),
            ("rest", {}),
        ):
            pool = Pool(id=pool_id, cloud="local", endpoint=HttpUrl(worker_url), options=options)
            docs.upsert(pool.key, pool)
        env = {**os.environ, "MPFN_STATE": store.url}
        logs = (root / "worker.log").open("wb"), (root / "router.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "mpfn.adapters.ort_worker", "--state", store.url,
             "--port", str(http_port), "--grpc-port", str(grpc_port), "--preload", "demo",
             "--cache-dir", str(root / "cache"), "--intra-op-threads", "1"],
            stdout=logs[0], stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        router = subprocess.Popen(
            [sys.executable, "-m", "mpfn.functions.router", "--port", str(router_port),
             "--grpc-port", str(router_grpc)],
            stdout=logs[1], stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        try:
            wait_ready(f"{worker_url}/v2/models/demo/ready", worker)
            wait_ready(f"http://127.0.0.1:{router_port}/v2/health/ready", router)
            paths = [
                Path_("direct", grpc_port, None),
                Path_("router-grpc", router_grpc, "grpc"),
                Path_("router-rest", router_grpc, "rest"),
            ]
            rounds: list[dict[str, tuple[float, float, float]]] = []
            for n in range(args.rounds):
                lat = latencies(paths, args.requests)
                row = {}
                for p in paths:
                    rps = throughput(p, args.concurrency, args.saturation_requests)
                    row[p.name] = (
                        float(np.percentile(lat[p.name], 50)),
                        float(np.percentile(lat[p.name], 99)),
                        rps,
                    )
                rounds.append(row)
                print(f"round {n + 1}: " + ", ".join(
                    f"{k} p50 {v[0]:.3f} ms" for k, v in row.items()))  # fmt: skip
            for p in paths:
                p.client.close()
        finally:
            for proc in (router, worker):
                proc.terminate()
                proc.wait(20)
            for log in logs:
                log.close()

    cores = os.cpu_count()
    print(f"\n{args.rounds} rounds x {args.requests} interleaved requests per path, "
          f"{args.concurrency} threads for throughput; {cores} cores (shared)")  # fmt: skip
    print(f"{'path':<14}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}{'+p50 ms':>10}{'+p99 ms':>10}")
    med = {k: [float(np.median([r[k][i] for r in rounds])) for i in range(3)] for k in PATHS}
    for name in PATHS:
        p50, p99, rps = med[name]
        add = "" if name == "direct" else f"{p50 - med['direct'][0]:>10.3f}"
        add99 = "" if name == "direct" else f"{p99 - med['direct'][1]:>10.3f}"
        print(f"{name:<14}{p50:>9.3f}{p99:>9.3f}{rps:>9.0f}{add}{add99}")
    added = med["router-grpc"][0] - med["direct"][0]
    verdict = "met" if added <= 0.3 else "not met"
    print(f"\nrouter adds {added:.3f} ms p50 over gRPC (target <= 0.3 ms: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
