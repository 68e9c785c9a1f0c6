"""Cold load time vs warm latency per adapter, on the same model where the backend allows.

For each backend this starts the real server on loopback (the TF Serving row uses the
stand-in server, which is not TensorFlow Serving), then through the adapter — found by
kind through entry points, as the warmer finds it — repeats `unload -> load` and records
`LoadResult.load_ms` (the `load_time` the warmer and scheduler use), then times warm
`infer` calls. The demo ONNX model is used everywhere it can be; the OpenAI-compatible row
is llama.cpp with SmolLM2 (its "load" is a warm-up request; its real cold start is the
server's start-up, reported separately). Prints a markdown table.

    python benchmarks/adapter_load_times.py [--cycles 20] [--requests 200] [--only ort,tfserving]

Adding a backend: write a `start_<kind>(workdir)` context manager yielding a `Target` and
add it to BACKENDS.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from pydantic import HttpUrl

from mpfn.adapters import registry
from mpfn.adapters.base import AdapterConfig
from mpfn.artifacts import push_model
from mpfn.demo import build_demo_model, demo_model_version
from mpfn.documents import ModelVersion, Pool, TensorSpec
from mpfn.protocol import InferInput, InferRequest
from mpfn.state import Documents
from mpfn.store import LocalStore

# The server launchers the tests use (real processes on loopback), from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers.llama_cpp import MODEL, llama_server
from tests.servers.mpfn_procs import worker
from tests.servers.tfserving import tfserving_standin

X = np.random.default_rng(1).standard_normal((1, 16)).astype(np.float32)
DEMO_REQUEST = InferRequest(inputs=[InferInput("x", "FP32", X.shape, X)])


@dataclass(frozen=True)
class Target:
    config: AdapterConfig
    model: ModelVersion
    request: InferRequest
    note: str
    start_ms: float  # process start until its readiness check answered


def pool(kind: str, url: str) -> Pool:
    return Pool(id=f"{kind}-bench", cloud="local", adapter=kind, endpoint=HttpUrl(url))


@contextmanager
def start_ort(workdir: Path) -> Iterator[Target]:
    store = LocalStore(workdir / "state")
    model_path = workdir / "demo.onnx"
    model_path.write_bytes(build_demo_model())
    doc = demo_model_version(push_model(store, model_path, name="demo", version="1"))
    Documents(store).upsert(doc.key, doc)
    started = time.perf_counter()
    with worker(store, workdir, "ort", preload=None, cache_dir=workdir / "cache") as proc:
        start_ms = (time.perf_counter() - started) * 1000
        config = AdapterConfig(pool=pool("ort", proc.url))
        yield Target(config, doc, DEMO_REQUEST, "demo ONNX, v2 binary tensors", start_ms)


@contextmanager
def start_tfserving(workdir: Path) -> Iterator[Target]:
    base = workdir / "models"
    (base / "demo" / "1").mkdir(parents=True)
    (base / "demo" / "1" / "model.onnx").write_bytes(build_demo_model())
    started = time.perf_counter()
    with tfserving_standin(workdir) as standin:
        start_ms = (time.perf_counter() - started) * 1000
        config = AdapterConfig(
            pool=pool("tfserving", standin.proc.url),
            options={
                "grpc_target": f"127.0.0.1:{standin.grpc_port}",
                "base_path": f"{base}/{{name}}",
            },
        )
        note = "demo ONNX in the stand-in, REST columnar JSON, gRPC reload"
        yield Target(config, demo_model_version(None), DEMO_REQUEST, note, start_ms)


@contextmanager
def start_openai(workdir: Path) -> Iterator[Target]:
    started = time.perf_counter()
    with llama_server(workdir) as proc:
        start_ms = (time.perf_counter() - started) * 1000
        text = [TensorSpec(name="text", datatype="BYTES", shape=[-1])]
        model = ModelVersion(name=MODEL, version="1", format="gguf", inputs=text, outputs=text)
        prompt = np.array([b"Hello"], dtype=object)
        request = InferRequest(
            inputs=[InferInput("text", "BYTES", prompt.shape, prompt)],
            parameters={"max_tokens": 8, "temperature": 0.0, "seed": 1},
        )
        note = "SmolLM2-135M Q4_1 GGUF, 8 tokens; load = warm-up request"
        yield Target(AdapterConfig(pool=pool("openai", proc.url)), model, request, note, start_ms)


BACKENDS: dict[str, Callable[[Path], AbstractContextManager[Target]]] = {
    "ort": start_ort,
    "tfserving": start_tfserving,
    "openai": start_openai,
}


@dataclass(frozen=True)
class Row:
    kind: str
    note: str
    start_ms: float
    load_ms: list[float]
    infer_ms: list[float]


async def measure(kind: str, target: Target, cycles: int, requests: int) -> Row:
    async with httpx.AsyncClient(timeout=120) as client:
        adapter = registry.create(target.config, client=client)
        loads: list[float] = []
        for _ in range(cycles):
            await adapter.unload(target.model)
            loads.append((await adapter.load(target.model)).load_ms)
        for _ in range(min(10, requests)):  # warm-up, not measured
            await adapter.infer(target.model, target.request)
        infers: list[float] = []
        for _ in range(requests):
            started = time.perf_counter()
            await adapter.infer(target.model, target.request)
            infers.append((time.perf_counter() - started) * 1000)
        await adapter.aclose()
    return Row(kind, target.note, target.start_ms, loads, infers)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def table(rows: list[Row]) -> str:
    lines = [
        "| adapter | server start (ms) | cold load p50 / max (ms) | warm infer p50 / p99 (ms) "
        "| model |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.kind} | {r.start_ms:.0f} | {statistics.median(r.load_ms):.1f} / "
            f"{max(r.load_ms):.1f} | {pct(r.infer_ms, 0.5):.2f} / {pct(r.infer_ms, 0.99):.2f} "
            f"| {r.note} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=20, help="unload/load cycles per adapter")
    parser.add_argument("--requests", type=int, default=200, help="warm infer calls per adapter")
    parser.add_argument("--only", default="", help="comma-separated kinds (default: all)")
    args = parser.parse_args()
    kinds = [k for k in args.only.split(",") if k] or list(BACKENDS)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="mpfn-bench-") as tmp:
        for kind in kinds:
            workdir = Path(tmp) / kind
            workdir.mkdir()
            with BACKENDS[kind](workdir) as target:
                row = asyncio.run(measure(kind, target, args.cycles, args.requests))
            rows.append(row)
            print(f"{kind}: done", file=sys.stderr)
    print(f"{args.cycles} unload/load cycles, {args.requests} sequential warm requests each\n")
    print(table(rows))


if __name__ == "__main__":
    main()
