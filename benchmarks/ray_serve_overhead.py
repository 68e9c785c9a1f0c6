"""Direct worker vs the mpfn router vs Ray Serve, same ONNX model, same run.

Serves the demo model three ways on loopback: mpfn's ONNX Runtime worker called
directly, the same worker behind the mpfn router (uvicorn), and a Ray Serve deployment
running the same model with onnxruntime (one replica, one inference thread, no
dashboard). Sends the same JSON v2 infer request to each, interleaved on keep-alive
connections, then measures requests/s at saturation; repeated `--rounds` times, medians
reported. Ray gets `--ray-cpus` logical CPUs and is shut down at the end.

Ray's own processes (GCS, raylet, the Serve controller and proxy) keep running while the
mpfn paths are measured, and share a small machine's cores with them. With `--ray-after`
the mpfn paths are measured first, before Ray starts, and Ray afterwards, each as it would
run on a machine of its own (not interleaved, so slower drifts of the machine show).

    pip install '.[bench]'
    python benchmarks/ray_serve_overhead.py [--requests 1000] [--rounds 3] [--ray-after]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import logging
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import HttpUrl

from mpfn.artifacts.models import push_model
from mpfn.demo import build_demo_model, demo_model_version
from mpfn.documents import Pool
from mpfn.state import Documents
from mpfn.store import LocalStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from router_overhead import (
    BODY,
    PATH,
    free_port,
    latency,
    router_argv,
    saturate,
    server,
)


@contextmanager
def ray_serve(model: bytes, port: int, cpus: int) -> Iterator[str]:
    """The demo model as a Ray Serve deployment on 127.0.0.1:`port`."""
    import ray
    from ray import serve
    from starlette.requests import Request

    @serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 1})
    class OnnxDemo:
        def __init__(self, model_bytes: bytes) -> None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            self.session = ort.InferenceSession(
                model_bytes, options, providers=["CPUExecutionProvider"]
            )

        async def __call__(self, request: Request) -> dict[str, Any]:
            body = await request.json()
            tensor = body["inputs"][0]
            x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
            y = self.session.run(["y"], {"x": x})[0]
            return {
                "model_name": "demo",
                "outputs": [
                    {"name": "y", "datatype": "FP32", "shape": list(y.shape),
                     "data": y.ravel().tolist()}
                ],
            }  # fmt: skip

    ray.init(
        num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(OnnxDemo.bind(model), name="demo", route_prefix="/")  # type: ignore[attr-defined]
        yield f"127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def measure(
    urls: dict[str, str], args: argparse.Namespace
) -> dict[str, list[tuple[float, float, float]]]:
    """Per path, one (p50 ms, p99 ms, req/s at saturation) per round."""
    names = list(urls)
    out: dict[str, list[tuple[float, float, float]]] = {n: [] for n in names}
    for r in range(args.rounds):
        lat = latency(urls, args.requests)
        k = r % len(names)
        rates = {
            name: asyncio.run(saturate(urls[name], args.saturation_requests, args.concurrency))
            for name in names[k:] + names[:k]
        }
        for name in names:
            p50, p99 = (float(np.percentile(lat[name], q)) for q in (50, 99))
            out[name].append((p50, p99, rates[name]))
        print(f"round {r + 1}: " + ", ".join(
            f"{n} p50 {out[n][-1][0]:.3f} ms / {out[n][-1][2]:,.0f} req/s" for n in names
        ), flush=True)  # fmt: skip
    return out


def check_same_answer(urls: dict[str, str]) -> None:
    """Every path must answer the benchmark request with the same output."""
    answers = {}
    for name, url in urls.items():
        conn = http.client.HTTPConnection(url, timeout=30)
        conn.request("POST", PATH, body=BODY, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"{name} answered {resp.status}")
        answers[name] = json.loads(resp.read())["outputs"][0]["data"]
        conn.close()
    first = next(iter(answers.values()))
    for name, data in answers.items():
        np.testing.assert_allclose(data, first, rtol=1e-6, err_msg=name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="latency samples per path")
    parser.add_argument("--saturation-requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ray-cpus", type=int, default=2)
    parser.add_argument(
        "--ray-after", action="store_true", help="measure Ray after the mpfn paths, alone"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        store = LocalStore(Path(tmp) / "state")
        model_path = Path(tmp) / "demo.onnx"
        model = build_demo_model()
        model_path.write_bytes(model)
        doc = demo_model_version(push_model(store, model_path, name="demo", version="1"))
        docs = Documents(store)
        docs.upsert(doc.key, doc)
        wport, rport, sport = free_port(), free_port(), free_port()
        worker_argv = [
            sys.executable, "-m", "mpfn.adapters.ort_worker", "--host", "127.0.0.1",
            "--port", str(wport), "--state", store.url, "--preload", "demo",
            "--cache-dir", str(Path(tmp) / "cache"), "--intra-op-threads", "1",
        ]  # fmt: skip
        pool = Pool(id="w", cloud="local", endpoint=HttpUrl(f"http://127.0.0.1:{wport}"))
        docs.upsert(pool.key, pool)
        ready = "/v2/models/demo/ready"
        urls = {"direct to worker": stack.enter_context(server(worker_argv, wport, ready, {}))}
        urls["mpfn router"] = stack.enter_context(
            server(router_argv(rport), rport, ready, {"MPFN_STATE": store.url})
        )
        if not args.ray_after:
            urls["Ray Serve"] = stack.enter_context(ray_serve(model, sport, args.ray_cpus))
        check_same_answer(urls)
        samples = measure(urls, args)
        if args.ray_after:
            with ray_serve(model, sport, args.ray_cpus) as ray_url:
                check_same_answer({**urls, "Ray Serve": ray_url})
                samples.update(measure({"Ray Serve": ray_url}, args))
    names = list(samples)
    p50s, p99s, rps = ({n: [r[i] for r in samples[n]] for n in names} for i in range(3))
    med = {n: (float(np.median(p50s[n])), float(np.median(p99s[n])), float(np.median(rps[n])))
           for n in names}  # fmt: skip
    print(f"\nJSON v2 infer, demo model, median of {args.rounds} rounds: {args.requests} "
          f"interleaved requests per path; saturation {args.concurrency} clients x "
          f"{args.saturation_requests} requests"
          + ("; Ray measured after the mpfn paths, alone" if args.ray_after else ""))  # fmt: skip
    print(f"  {'path':<18} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    for n in names:
        p50, p99, throughput = med[n]
        print(f"  {n:<18} {p50:8.3f} {p99:8.3f} {throughput:8,.0f}")
    ratio = med["mpfn router"][0] / med["Ray Serve"][0]
    print(f"  mpfn router p50 / Ray Serve p50 = {ratio:.2f} (target <= 0.2)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
