"""The adapter server's `GET /metrics`: the ORT worker's series, after real inferences
through an adapter server in front of the TF Serving stand-in (NOT TensorFlow Serving)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import HttpUrl

from mpfn.adapters.base import AdapterConfig
from mpfn.adapters.ort import OrtAdapter
from mpfn.adapters.server import ServerConfig, build_server
from mpfn.demo import build_demo_model
from mpfn.documents import Pool
from mpfn.protocol import encode_infer_request
from tests.servers.adapter_server import adapter_server
from tests.servers.process import Proc
from tests.servers.tfserving import TFServingProc, tfserving_standin

INFER = "/v2/models/demo/versions/1/infer"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass(frozen=True)
class Stack:
    standin: TFServingProc
    adapter: Proc


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("adapter-server-metrics")
    model_file = root / "models" / "demo" / "1" / "model.onnx"
    model_file.parent.mkdir(parents=True)
    model_file.write_bytes(build_demo_model())
    logs = root / "logs"
    with tfserving_standin(logs) as standin:
        options = {
            "grpc_target": f"127.0.0.1:{standin.grpc_port}",
            "base_path": f"{root / 'models'}/{{name}}",
        }
        with adapter_server("tfserving", standin.proc.url, logs, options=options) as proc:
            yield Stack(standin, proc)


def scrape(stack: Stack) -> Samples:
    answer = httpx.get(f"{stack.adapter.url}/metrics", timeout=30)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def infer(stack: Stack, path: str = INFER) -> httpx.Response:
    x = np.random.default_rng(3).standard_normal((2, 16)).astype(np.float32)
    body, _ = encode_infer_request({"x": x}, binary=False)
    return httpx.post(stack.adapter.url + path, content=body, timeout=60)


def test_an_inference_shows_in_the_metrics(stack: Stack) -> None:
    before = scrape(stack)
    assert value(before, "mpfn_worker_loaded_models") == 0

    first = infer(stack)  # the stand-in holds nothing yet: loaded on demand
    assert first.status_code == 200, first.text
    assert "x-mpfn-load-ms" in first.headers
    assert infer(stack).status_code == 200
    ghost = infer(stack, "/v2/models/ghost/versions/1/infer")
    assert ghost.status_code == 404

    after = scrape(stack)
    ok = {"model": "demo", "status": "200"}
    assert value(after, "mpfn_worker_requests_total", **ok) == 2
    assert value(after, "mpfn_worker_request_seconds_count", model="demo") == 2
    assert value(after, "mpfn_worker_request_seconds_sum", model="demo") > 0
    # Without a registry an unknown name is not a label value.
    assert value(after, "mpfn_worker_requests_total", model="", status="404") == 1
    assert not any(dict(labels).get("model") == "ghost" for _, labels in after)
    assert value(after, "mpfn_worker_model_loads_total", model="demo", outcome="ok") == 1
    assert value(after, "mpfn_worker_model_loads_total", model="", outcome="error") == 1
    assert value(after, "mpfn_worker_model_load_seconds_count") == 1
    assert value(after, "mpfn_worker_loaded_models") == 1
    assert value(after, "mpfn_worker_inflight") == 0
    assert value(after, "mpfn_worker_queued") == 0


def test_the_ort_client_reads_the_adapter_servers_metrics(stack: Stack) -> None:
    assert infer(stack).status_code == 200
    pool = Pool(
        id="tfs",
        cloud="local",
        adapter="tfserving",
        endpoint=HttpUrl(stack.adapter.url),
        adapter_server=True,
    )

    async def stats() -> tuple[int, tuple[str, ...], dict[str, float]]:
        adapter = OrtAdapter(AdapterConfig(pool=pool))
        try:
            got = await adapter.stats()
        finally:
            await adapter.aclose()
        return got.requests, got.loaded, got.extra["backend_latency_ms"]

    requests, loaded, latency_ms = asyncio.run(stats())
    assert requests >= 1 and loaded == ("demo:1",)
    assert latency_ms["demo"] > 0


def test_servers_in_one_process_keep_their_own_metrics() -> None:
    config = ServerConfig(kind="tfserving", backend="http://127.0.0.1:9")
    a, b = build_server(config), build_server(config)  # a shared registry would clash here
    assert a.metrics.registry is not b.metrics.registry
    a.metrics.observe_request("demo", 200, 0.01)
    assert b'status="200"' in a.metrics.render()
    assert b'status="200"' not in b.metrics.render()
