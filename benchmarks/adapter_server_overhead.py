"""Per-request cost of the adapter server: the TF Serving stand-in's own REST predict vs the
adapter server (`python -m mpfn.adapters.tfserving`) in front of it.

Starts the TF Serving stand-in (`tests.servers.tfserving_standin`, which is NOT TensorFlow
Serving: it follows TF Serving's documented REST API and runs the demo ONNX model with
onnxruntime) and an adapter server for it with a registry holding the demo model, loads the
model, then sends the same input, one request at a time and interleaved (the order swaps
every round), as (a) TF's columnar JSON to `POST /v1/models/demo/versions/1:predict` on the
stand-in and (b) an Open Inference Protocol v2 JSON request to
`POST /v2/models/demo/versions/1/infer` on the adapter server. Both use one keep-alive
client. Prints p50/p99 of each and of the difference (b - a). `--adapter-image REF` also
runs the adapter server from that image (`mpfn build adapter:tfserving`) as a podman
container on the host network, in the same interleaving (c).

    python benchmarks/adapter_server_overhead.py [--requests 2000] [--rows 1]
        [--adapter-image localhost/mpfn-adapter-tfserving:TAG]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from mpfn.demo import build_demo_model, demo_model_version
from mpfn.protocol import encode_infer_request
from mpfn.registry import Registry
from mpfn.store import LocalStore

# The server launchers the tests use (real processes on loopback), from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mpfn.containers import ContainerSpec
from tests.servers.adapter_server import adapter_server
from tests.servers.containers import start_container, started
from tests.servers.tfserving import tfserving_standin


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def timed(client: httpx.Client, url: str, body: bytes) -> float:
    started = time.perf_counter()
    answer = client.post(url, content=body, headers={"content-type": "application/json"})
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status_code != 200:
        raise SystemExit(f"{url}: HTTP {answer.status_code} {answer.text[:200]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--rows", type=int, default=1, help="batch size of the demo input")
    parser.add_argument("--adapter-image", help="also run the adapter server from this image")
    args = parser.parse_args()

    x = np.random.default_rng(3).standard_normal((args.rows, 16)).astype(np.float32)
    native_body = httpx.Request("POST", "http://x", json={"inputs": {"x": x.tolist()}}).content
    v2_body, _ = encode_infer_request({"x": x}, binary=False)

    with tempfile.TemporaryDirectory(prefix="mpfn-adapter-bench-") as tmp:
        root = Path(tmp)
        model = root / "models" / "demo" / "1" / "model.onnx"
        model.parent.mkdir(parents=True)
        model.write_bytes(build_demo_model())
        store = LocalStore(root / "state")
        Registry(store).add_model(demo_model_version(None))
        with tfserving_standin(root / "logs") as standin:
            options = {
                "grpc_target": f"127.0.0.1:{standin.grpc_port}",
                "base_path": f"{root / 'models'}/{{name}}",
            }
            with contextlib.ExitStack() as servers, httpx.Client(timeout=30) as client:
                server = servers.enter_context(
                    adapter_server(
                        "tfserving", standin.proc.url, root / "logs", state=store.url,
                        options=options,
                    )
                )  # fmt: skip
                loaded = client.post(f"{server.url}/v2/repository/models/demo/load", json={})
                loaded.raise_for_status()
                paths = {
                    "stand-in REST predict (a)": (
                        f"{standin.proc.url}/v1/models/demo/versions/1:predict",
                        native_body,
                    ),
                    "adapter server -> stand-in (b)": (
                        f"{server.url}/v2/models/demo/versions/1/infer",
                        v2_body,
                    ),
                }
                if args.adapter_image:
                    image = args.adapter_image

                    def spec(ports: tuple[int, ...]) -> ContainerSpec:
                        flags = [f"--option={k}={v}" for k, v in options.items()]
                        return ContainerSpec(
                            name=f"mpfn-bench-adapter-{ports[0]}",
                            image=image,
                            args=(
                                "--host",
                                "127.0.0.1",
                                "--port",
                                str(ports[0]),
                                "--backend",
                                standin.proc.url,
                                "--state",
                                store.url,
                                "--log-level",
                                "warning",
                                *flags,
                            ),
                            volumes=((str(root), str(root)),),
                            user=f"{os.getuid()}:{os.getgid()}",
                        )

                    box = servers.enter_context(
                        started(
                            start_container(
                                spec, ready=lambda p: f"http://127.0.0.1:{p[0]}/v2/health/live"
                            )
                        )
                    )
                    paths["adapter container -> stand-in (c)"] = (
                        f"{box.url}/v2/models/demo/versions/1/infer",
                        v2_body,
                    )
                for _ in range(args.warmup):
                    for url, body in paths.values():
                        timed(client, url, body)
                samples: dict[str, list[float]] = {name: [] for name in paths}
                names = list(paths)
                for i in range(args.requests):
                    k = i % len(names)
                    for name in names[k:] + names[:k]:
                        samples[name].append(timed(client, *paths[name]))
    direct, through = samples[names[0]], samples[names[1]]

    diff = [b - a for a, b in zip(direct, through, strict=True)]
    print(f"{args.requests} sequential requests each, demo model, batch {args.rows}, JSON\n")
    print("| path | p50 (ms) | p99 (ms) | mean (ms) |")
    print("|---|---|---|---|")
    rows = [*samples.items(), ("difference b - a, per pair", diff)]
    if len(names) == 3:
        rows.append(
            (
                "difference c - b, per pair",
                [c - b for b, c in zip(through, samples[names[2]], strict=True)],
            )
        )
    for label, values in rows:
        print(
            f"| {label} | {percentile(values, 50):.3f} | {percentile(values, 99):.3f} "
            f"| {statistics.fmean(values):.3f} |"
        )
    print(
        f"\np50(b) - p50(a) = {percentile(through, 50) - percentile(direct, 50):.3f} ms, "
        f"p99(b) - p99(a) = {percentile(through, 99) - percentile(direct, 99):.3f} ms"
    )


if __name__ == "__main__":
    main()
