"""End to end: a real router process in front of two real ORT worker processes.

tritonclient and KServe's `InferenceRESTClient` talk to the router exactly as they would
to a worker (version-less paths, binary and JSON tensors); results must equal
onnxruntime on the same artifact.
The worker-killing test runs last in this module.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton

from mpfn.demo import build_demo_model
from mpfn.state import Documents
from mpfn.store import LocalStore
from mpfn.usage import latest_usage
from tests.router.conftest import make_pool
from tests.servers.mpfn_procs import publish_demo, start_router, start_worker
from tests.servers.process import Proc, wait_until


@dataclass
class Cluster:
    store: LocalStore
    model: bytes
    workers: list[Proc]
    router: Proc
    log_dir: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("e2e")
    store = LocalStore(root / "state")
    publish_demo(store, root)
    model = build_demo_model()
    workers: list[Proc] = []
    router: Proc | None = None
    try:
        for name in ("w1", "w2"):
            worker = start_worker(store, root / "logs", name)
            workers.append(worker)
            Documents(store).upsert(f"pools/{name}.json", make_pool(name, worker.url))
        router = start_router(store, root / "logs")
        yield Cluster(store, model, workers, router, root / "logs")
    finally:
        if router is not None:
            router.stop()
        for worker in workers:
            worker.stop()


def reference(model: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["y"], {"x": x})[0])


def infer(client: triton.InferenceServerClient, x: np.ndarray, binary: bool) -> np.ndarray:
    inp = triton.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = triton.InferRequestedOutput("y", binary_data=binary)
    result = client.infer("demo", [inp], outputs=[out])
    y = result.as_numpy("y")
    assert y is not None
    return y


def test_tritonclient_binary_and_json_through_router(cluster: Cluster) -> None:
    client = triton.InferenceServerClient(cluster.router.url.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("demo")
        meta = client.get_model_metadata("demo")
        assert meta["inputs"][0]["shape"] == [-1, 16]
        x = np.random.default_rng(7).standard_normal((3, 16)).astype(np.float32)
        expected = reference(cluster.model, x)
        for binary in (True, False):
            y = infer(client, x, binary)
            assert y.dtype == np.float32 and y.shape == (3, 4)
            np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)
    finally:
        client.close()


def test_requests_spread_over_both_workers(cluster: Cluster) -> None:
    body = {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]}
    with httpx.Client(base_url=cluster.router.url) as client:
        pools = [
            client.post("/v2/models/demo/infer", json=body).headers["x-mpfn-pool"]
            for _ in range(40)
        ]
        assert sorted(set(pools)) == ["w1", "w2"]
        # Worker errors (4xx with a JSON body) come back unchanged.
        bad = client.post("/v2/models/demo/infer", json={"inputs": [{"name": "nope"}]})
        assert 400 <= bad.status_code < 500 and "error" in bad.json()
        # Management endpoints of the workers are not reachable through the router.
        assert client.post("/v2/repository/models/demo/unload").status_code == 404


async def kserve_infer(url: str, x: np.ndarray, binary: bool) -> tuple[np.ndarray, str]:
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
    from kserve.protocol.infer_type import RequestedOutput

    inp = InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    request = InferRequest(
        "demo", [inp], request_outputs=[RequestedOutput("y", {"binary_data": binary})]
    )
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    try:
        assert await client.is_server_ready(url)
        assert await client.is_model_ready(url, "demo")
        headers: dict[str, str] = {}
        response = await client.infer(url, request, model_name="demo", response_headers=headers)
    finally:
        await client.close()
    return response.outputs[0].as_numpy(), headers["x-mpfn-pool"]


def test_kserve_rest_client_through_router(cluster: Cluster) -> None:
    x = np.random.default_rng(11).standard_normal((4, 16)).astype(np.float32)
    expected = reference(cluster.model, x)
    for binary in (True, False):
        y, pool = asyncio.run(kserve_infer(cluster.router.url, x, binary))
        assert pool in ("w1", "w2")
        assert y.dtype == np.float32 and y.shape == (4, 4)
        np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


def usage_total(store: LocalStore, model: str) -> int:
    total = 0
    for key in latest_usage(store.list(f"usage/{model}/")):
        blob = store.get(key)
        assert blob is not None
        total += json.loads(blob.body)["count"]
    return total


def test_usage_documents_count_exactly(cluster: Cluster) -> None:
    router = start_router(cluster.store, cluster.log_dir, name="usage-router")
    try:
        body = {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [1] * 16}]}
        with httpx.Client(base_url=router.url) as client:
            before = usage_total(cluster.store, "demo")
            for _ in range(7):
                assert client.post("/v2/models/demo/infer", json=body).status_code == 200
            assert client.post("/v2/models/ghost/infer", json=body).status_code == 404
        wait_until(lambda: usage_total(cluster.store, "demo") == before + 7, 20, "usage flush")
    finally:
        router.stop()  # SIGTERM: the shutdown flush must not add to the counts
    assert usage_total(cluster.store, "demo") == before + 7
    assert cluster.store.list("usage/ghost/") == []
    keys = cluster.store.list("usage/demo/")
    assert all(k.count("/") == 6 and k.endswith(".json") for k in keys)


def test_failover_when_a_worker_dies(cluster: Cluster) -> None:
    cluster.workers[1].stop()
    body = {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [2] * 16}]}
    with httpx.Client(base_url=cluster.router.url) as client:
        for _ in range(6):
            r = client.post("/v2/models/demo/infer", json=body)
            assert r.status_code == 200, r.text
            assert r.headers["x-mpfn-pool"] == "w1"
        cluster.workers[0].stop()
        down = client.post("/v2/models/demo/infer", json=body)
        assert down.status_code == 503 and "no healthy backend" in down.json()["error"]
