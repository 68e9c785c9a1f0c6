"""Short runs on the worker's event loop vs an inference thread per request, same run.

Two ORT workers on one throw-away state, identical but for `--inline-max-us` (0: every run
in a thread; the default: runs of short models on the event loop), serve the demo model.
One keep-alive `http.client` connection per worker sends the demo infer request back to
back, `--requests` per round, the two workers alternating round by round; p50 and p99
latency and the worker process's CPU time per request (from /proc, Linux) are reported as
medians of `--rounds` rounds.

    python benchmarks/worker_inline.py [--requests 3000] [--rounds 8]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from mpfn.adapters.ort_worker.inline import DEFAULT_INLINE_MAX_US
from mpfn.artifacts.models import push_model
from mpfn.demo import build_demo_model, demo_model_version
from mpfn.state import Documents
from mpfn.store import LocalStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from router_overhead import BODY, PATH, free_port, server


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def listener_pid(port: int) -> int:
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True)
    return int(out.stdout.split("pid=")[1].split(",")[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="per worker and round")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    labels = {0: "thread per run", DEFAULT_INLINE_MAX_US: "short runs inline"}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        store = LocalStore(Path(tmp) / "state")
        model = Path(tmp) / "demo.onnx"
        model.write_bytes(build_demo_model())
        doc = demo_model_version(push_model(store, model, name="demo", version="1"))
        Documents(store).upsert(doc.key, doc)
        conns: dict[int, http.client.HTTPConnection] = {}
        pids: dict[int, int] = {}
        for limit in labels:
            port = free_port()
            argv = [
                sys.executable, "-m", "mpfn.adapters.ort_worker", "--host", "127.0.0.1",
                "--port", str(port), "--state", store.url, "--preload", "demo",
                "--cache-dir", str(Path(tmp) / f"cache-{limit}"), "--intra-op-threads", "1",
                "--inline-max-us", str(limit),
            ]  # fmt: skip
            url = stack.enter_context(server(argv, port, "/v2/models/demo/ready", {}))
            conns[limit], pids[limit] = http.client.HTTPConnection(url), listener_pid(port)
        rows: dict[int, list[tuple[float, float, float]]] = {limit: [] for limit in labels}
        headers = {"Content-Type": "application/json"}
        for r in range(args.rounds):
            for limit in list(labels)[:: 1 if r % 2 == 0 else -1]:
                conn, pid = conns[limit], pids[limit]
                lat = np.empty(args.requests)
                started_cpu = cpu_seconds(pid)
                for i in range(args.requests):
                    started = time.perf_counter()
                    conn.request("POST", PATH, body=BODY, headers=headers)
                    conn.getresponse().read()
                    lat[i] = (time.perf_counter() - started) * 1000
                cpu_us = (cpu_seconds(pid) - started_cpu) / args.requests * 1e6
                p50, p99 = (float(np.percentile(lat, q)) for q in (50, 99))
                rows[limit].append((p50, p99, cpu_us))
            print(f"round {r + 1}/{args.rounds} done", flush=True)
    print(f"\nJSON v2 infer, demo model, serial keep-alive requests, {args.requests} per worker "
          f"and round, medians of {args.rounds} rounds")  # fmt: skip
    print(f"  {'worker':<40} {'p50 ms':>8} {'p99 ms':>8} {'CPU µs/req':>11}")
    for limit, label in labels.items():
        p50, p99, cpu = (statistics.median(col) for col in zip(*rows[limit], strict=True))
        name = f"{label} (--inline-max-us {limit})"
        print(f"  {name:<40} {p50:8.3f} {p99:8.3f} {cpu:11.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
