"""gRPC overhead: tritonclient.grpc calling a worker's gRPC port directly, through a bare
gRPC proxy and through the router.

Starts one ORT worker (`--grpc-port`), a bare gRPC forwarding proxy to the worker's gRPC
port (bare_grpc_proxy.py) and one router (`--grpc-port`) on loopback over a throw-away
local store holding the demo model. Two pools name the same worker: `grpc` (reached over
gRPC, `options.grpc_endpoint`) and `rest` (reached over REST, each call translated). The
same ModelInfer (x FP32 [1,16], raw contents) is sent on four paths, interleaved with the
order rotating every request: the worker directly, the bare proxy, the router to the gRPC
pool and the router to the REST pool (pinned with `x-mpfn-pool` metadata). The bare proxy
is the floor for any Python gRPC hop (the gRPC analogue of router_overhead.py's
`BareProxy`): grpc.aio, the request's bytes relayed unchanged on one channel, the answer's
bytes relayed back; no decode, routing, metrics, usage or metadata. It prints p50/p99 of
each path, what each adds to the direct path and as a multiple of what the bare proxy
adds, then requests/s at saturation with `--concurrency` client threads, one path after
the other. `--rounds` repeats it all and reports the medians over rounds (the added costs:
the median over rounds of the same round's difference), since a shared machine is noisy.
`--no-proxy` leaves the bare proxy out.

    python benchmarks/grpc_overhead.py [--requests 2000] [--rounds 3] [--concurrency 8]
        [--saturation-requests 3000] [--no-proxy]
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
PROXY = Path(__file__).resolve().parent / "bare_grpc_proxy.py"


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


def wait_grpc_ready(target: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Until the demo model is ready through the gRPC server at `target`."""
    deadline = time.monotonic() + timeout
    client = tgrpc.InferenceServerClient(target)
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
            try:
                if client.is_model_ready("demo"):
                    return
            except tgrpc.InferenceServerException:
                pass
            time.sleep(0.1)
    finally:
        client.close()
    raise TimeoutError(target)


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
    parser.add_argument("--no-proxy", action="store_true", help="leave out the bare gRPC proxy")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mpfn-grpc-bench-") as tmp:
        root = Path(tmp)
        store = LocalStore(root / "state")
        model = root / "demo.onnx"
        model.write_bytes(build_demo_model())
        doc = demo_model_version(push_model(store, model, name="demo", version="1"))
        docs = Documents(store)
        docs.upsert(doc.key, doc)
        http_port, grpc_port, router_port, router_grpc, proxy_port = (free_port() for _ in range(5))
        worker_url = f"http://127.0.0.1:{http_port}"
        for pool_id, options in (
            ("grpc", {"grpc_endpoint": f"127.0.0.1:{grpc_port}"}),
            ("rest", {}),
        ):
            pool = Pool(id=pool_id, cloud="local", endpoint=HttpUrl(worker_url), options=options)
            docs.upsert(pool.key, pool)
        env = {**os.environ, "MPFN_STATE": store.url}
        logs = [(root / f"{name}.log").open("wb") for name in ("worker", "router", "proxy")]
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
        procs = [router, worker]
        try:
            if not args.no_proxy:
                proxy = subprocess.Popen(
                    [sys.executable, str(PROXY), "--port", str(proxy_port),
                     "--upstream", f"127.0.0.1:{grpc_port}"],
                    stdout=logs[2], stderr=subprocess.STDOUT, env=env,
                )  # fmt: skip
                procs.insert(0, proxy)
            wait_ready(f"{worker_url}/v2/models/demo/ready", worker)
            wait_ready(f"http://127.0.0.1:{router_port}/v2/health/ready", router)
            paths = [Path_("direct", grpc_port, None)]
            if not args.no_proxy:
                wait_grpc_ready(f"127.0.0.1:{proxy_port}", proxy)
                paths.append(Path_("bare-proxy", proxy_port, None))
            paths += [
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
            for proc in procs:
                proc.terminate()
                proc.wait(20)
            for log in logs:
                log.close()

    report(rounds, args)
    return 0


def report(rounds: list[dict[str, tuple[float, float, float]]], args: argparse.Namespace) -> None:
    """Medians over rounds; what each path adds to the direct one (the median over rounds
    of the same round's difference), and that as a multiple of what the bare proxy adds."""
    names = list(rounds[0])
    proxy = "bare-proxy" if "bare-proxy" in names else None

    def med(name: str, i: int) -> float:
        return float(np.median([r[name][i] for r in rounds]))

    def added(name: str, i: int) -> float:  # i: 0 p50, 1 p99
        return float(np.median([r[name][i] - r["direct"][i] for r in rounds]))

    def times(name: str, i: int) -> str:  # what `name` adds as a multiple of the proxy's
        assert proxy is not None
        base = added(proxy, i)
        return f"{added(name, i) / base:.1f}x" if base > 0 else "n/a"

    cores = os.cpu_count()
    print(f"\n{args.rounds} rounds x {args.requests} interleaved requests per path, "
          f"{args.concurrency} threads x {args.saturation_requests} requests for throughput; "
          f"{cores} cores (shared)")  # fmt: skip
    print(f"{'path':<14}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}{'+p50 ms':>10}{'+p99 ms':>10}"
          + (f"{'x proxy p50':>13}{'x proxy p99':>13}" if proxy else ""))  # fmt: skip
    for name in names:
        line = f"{name:<14}{med(name, 0):>9.3f}{med(name, 1):>9.3f}{med(name, 2):>9.0f}"
        if name != "direct":
            line += f"{added(name, 0):>10.3f}{added(name, 1):>10.3f}"
            if proxy is not None and name != proxy:
                line += f"{times(name, 0):>13}{times(name, 1):>13}"
        print(line)
    router = added("router-grpc", 0)
    verdict = "met" if router <= 0.3 else "not met"
    print()
    if proxy is not None:
        print(f"bare gRPC proxy adds {added(proxy, 0):.3f} ms p50, {added(proxy, 1):.3f} ms p99")
    print(f"router adds {router:.3f} ms p50, {added('router-grpc', 1):.3f} ms p99 over gRPC "
          f"(target <= 0.3 ms p50: {verdict})")  # fmt: skip
    if proxy is not None:
        print(f"router adds {times('router-grpc', 0)} what a bare gRPC proxy adds "
              f"(p50; p99 {times('router-grpc', 1)})")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
