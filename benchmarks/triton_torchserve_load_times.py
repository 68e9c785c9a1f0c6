"""Cold load time vs warm latency for the `triton` and `torchserve` adapters.

The same measurement as `adapter_load_times.py` (whose harness this reuses: `unload -> load`
cycles recording `LoadResult.load_ms`, then sequential warm `infer` calls through the
adapter found by entry point), on real servers started on loopback the way the adapter
tests start them: the `tritonserver` nvidia-pytriton bundles (CPU, python backend: the demo
ONNX model runs in a python-backend model with onnxruntime) and TorchServe (the demo ONNX
model in a `.mar` whose handler runs onnxruntime). Every load uploads the model: Triton
receives config + files in the load request, TorchServe registers the archive (built once,
then kept in the model store) and starts a worker process. Prints a markdown table.

    python benchmarks/triton_torchserve_load_times.py [--cycles 5] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from adapter_load_times import DEMO_REQUEST, Row, Target, measure, pool, table

from mpfn.adapters.base import AdapterConfig
from mpfn.artifacts import fetch_cached, push_model
from mpfn.demo import build_demo_model, demo_model_version
from mpfn.documents import ModelVersion
from mpfn.store import LocalStore

# The server launchers the tests use (real processes on loopback), from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers.torchserve import start_torchserve, stop_torchserve
from tests.servers.triton import MANAGEMENT_KEY, start_triton


def demo_upload(workdir: Path) -> tuple[ModelVersion, functools.partial[Path]]:
    store = LocalStore(workdir / "state")
    path = workdir / "demo.onnx"
    path.write_bytes(build_demo_model())
    model = demo_model_version(push_model(store, path, name="demo", version="1"))
    return model, functools.partial(fetch_cached, store, cache_dir=workdir / "cache")


@contextmanager
def run_triton(workdir: Path) -> Iterator[Target]:
    model, fetch = demo_upload(workdir)
    started = time.perf_counter()
    server = start_triton(workdir / "server")
    start_ms = (time.perf_counter() - started) * 1000
    try:
        config = AdapterConfig(
            pool=pool("triton", server.url),
            credentials={"management_key": MANAGEMENT_KEY},
            options={"backend": "python", "metrics_url": server.metrics_url},
            artifacts=fetch,
        )
        note = "demo ONNX, python-backend model running onnxruntime; v2 binary tensors"
        yield Target(config, model, DEMO_REQUEST, note, start_ms)
    finally:
        server.proc.stop()


@contextmanager
def run_torchserve(workdir: Path) -> Iterator[Target]:
    model, fetch = demo_upload(workdir)
    started = time.perf_counter()
    server = start_torchserve(workdir / "server")
    start_ms = (time.perf_counter() - started) * 1000
    try:
        config = AdapterConfig(
            pool=pool("torchserve", server.inference_url),
            management_url=server.management_url,
            options={"model_store": str(server.model_store), "metrics_url": server.metrics_url},
            artifacts=fetch,
        )
        note = "demo ONNX in a .mar (onnxruntime handler), 1 worker; v2 binary tensors"
        yield Target(config, model, DEMO_REQUEST, note, start_ms)
    finally:
        stop_torchserve(server)


BACKENDS: dict[str, Callable[[Path], AbstractContextManager[Target]]] = {
    "triton": run_triton,
    "torchserve": run_torchserve,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=5, help="unload/load cycles per adapter")
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
                rows.append(asyncio.run(measure(kind, target, args.cycles, args.requests)))
            print(f"{kind}: done", file=sys.stderr)
    print(f"{args.cycles} unload/load cycles, {args.requests} sequential warm requests each\n")
    print(table(rows))


if __name__ == "__main__":
    main()
