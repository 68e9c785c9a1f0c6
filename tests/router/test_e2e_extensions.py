"""End to end: a real router process in front of a real ORT worker process, through the
clients people use: tritonclient's model configuration and statistics calls, KServe v1
`:predict`, and the WARNING line each process logs for every answer that is not 2xx."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from mpfn.demo import build_demo_model
from mpfn.state import Documents
from mpfn.store import LocalStore
from tests.router.conftest import make_pool
from tests.servers.mpfn_procs import publish_demo, start_router, start_worker
from tests.servers.process import Proc, wait_until


@dataclass
class Stack:
    model: bytes
    worker: Proc
    router: Proc


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("extensions")
    store = LocalStore(root / "state")
    publish_demo(store, root)
    worker = start_worker(store, root / "logs", "w1")
    router: Proc | None = None
    try:
        docs = Documents(store)
        docs.upsert("pools/w1.json", make_pool("w1", worker.url))
        docs.upsert("pools/gone.json", make_pool("gone", "http://127.0.0.1:9", models=["ghost"]))
        router = start_router(store, root / "logs")
        yield Stack(build_demo_model(), worker, router)
    finally:
        if router is not None:
            router.stop()
        worker.stop()


@pytest.fixture
def client(stack: Stack) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(stack.router.url.removeprefix("http://"))
    try:
        yield c
    finally:
        c.close()


def reference(model: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["y"], {"x": x})[0])


def test_tritonclient_model_config(client: triton.InferenceServerClient) -> None:
    for version in ("", "1"):
        config = client.get_model_config("demo", model_version=version)
        assert config["name"] == "demo"
        assert config["platform"] == "onnxruntime_onnx" and config["backend"] == "onnxruntime"
        assert config["max_batch_size"] == 0
        assert config["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": [-1, 16]}]
        assert config["output"] == [{"name": "y", "data_type": "TYPE_FP32", "dims": [-1, 4]}]
    assert {"model_configuration", "statistics"} <= set(client.get_server_metadata()["extensions"])
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.get_model_config("nope")
    with pytest.raises(InferenceServerException, match="no version"):
        client.get_model_config("demo", model_version="9")


def test_tritonclient_inference_statistics(client: triton.InferenceServerClient) -> None:
    before = client.get_inference_statistics("demo")["model_stats"][0]
    x = np.ones((2, 16), dtype=np.float32)
    for _ in range(3):
        inp = triton.InferInput("x", [2, 16], "FP32")
        inp.set_data_from_numpy(x)
        client.infer("demo", [inp])
    with pytest.raises(InferenceServerException):  # the worker refuses the wrong width
        bad = triton.InferInput("x", [1, 3], "FP32")
        bad.set_data_from_numpy(np.ones((1, 3), dtype=np.float32))
        client.infer("demo", [bad])
    stats = client.get_inference_statistics("demo")["model_stats"]
    assert [(s["name"], s["version"]) for s in stats] == [("demo", "1")]
    after = stats[0]
    success, fail = after["inference_stats"]["success"], after["inference_stats"]["fail"]
    assert success["count"] == before["inference_stats"]["success"]["count"] + 3
    assert success["ns"] > before["inference_stats"]["success"]["ns"]
    assert fail["count"] == before["inference_stats"]["fail"]["count"] + 1
    assert after["inference_count"] == after["execution_count"] == success["count"]
    assert after["last_inference"] > 0
    assert after["inference_stats"]["compute_infer"] == {"count": 0, "ns": 0}
    versioned = client.get_inference_statistics("demo", model_version="1")["model_stats"]
    assert versioned[0]["inference_stats"]["success"]["count"] == success["count"]
    every = client.get_inference_statistics()["model_stats"]
    assert [s["name"] for s in every] == ["demo"]
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.get_inference_statistics("nope")


def test_kserve_v1_predict(stack: Stack) -> None:
    x = np.random.default_rng(3).standard_normal((3, 16)).astype(np.float32)
    expected = reference(stack.model, x)
    with httpx.Client(base_url=stack.router.url, timeout=30) as client:
        r = client.post("/v1/models/demo:predict", json={"instances": x.tolist()})
        assert r.status_code == 200, r.text
        assert r.headers["x-mpfn-pool"] == "w1"
        assert r.headers["content-type"] == "application/json"
        predictions = np.asarray(r.json()["predictions"], dtype=np.float32)
        np.testing.assert_allclose(predictions, expected, rtol=1e-6, atol=1e-6)
        # The worker's refusal comes back as a KServe error, unchanged.
        bad = client.post("/v1/models/demo:predict", json={"instances": [[1.0, 2.0]]})
        assert bad.status_code == 400 and isinstance(bad.json()["error"], str)
        unknown = client.post("/v1/models/nope:predict", json={"instances": [[1.0]]})
        assert unknown.status_code == 404 and "unknown model" in unknown.json()["error"]
        assert client.get("/v1/models/demo:predict").status_code == 405
        # GET /v1/models/{name} stays OpenAI's model object: a v2 model is not one.
        meta = client.get("/v1/models/demo")
        assert meta.status_code == 404
        assert meta.json()["error"]["code"] == "model_not_found"
        assert "/v2/models/demo" in meta.json()["error"]["message"]


def log_lines(path: Path, needle: str) -> list[str]:
    return [line for line in path.read_text(errors="replace").splitlines() if needle in line]


def test_every_error_answer_is_logged_once(stack: Stack) -> None:
    body = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    secret = "Bearer mpfn_abc_s3cr3t-value"
    with httpx.Client(base_url=stack.router.url, timeout=30) as client:
        assert client.post("/v2/models/ghost/infer", json=body).status_code == 503
        refused = client.post(
            "/v2/models/demo/versions/1/infer?token=hidden",
            json=body,
            headers={"Authorization": secret},
        )
        assert refused.status_code == 400
        assert client.get("/v2/models/nope").status_code == 404
    router_log, worker_log = stack.router.log_path, stack.worker.log_path

    def logged() -> bool:
        return bool(log_lines(router_log, "GET /v2/models/nope -> 404")) and bool(
            log_lines(worker_log, "POST /v2/models/demo/versions/1/infer -> 400")
        )

    wait_until(logged, 10, "error log lines")
    (ghost,) = log_lines(router_log, "POST /v2/models/ghost/infer -> 503")
    assert "WARNING" in ghost and "no healthy backend" in ghost and "(route: " in ghost
    (demo,) = log_lines(router_log, "POST /v2/models/demo/versions/1/infer -> 400")
    assert "WARNING" in demo and "input 'x'" in demo
    (unknown,) = log_lines(router_log, "GET /v2/models/nope -> 404")
    assert "unknown model 'nope'" in unknown
    (worker_line,) = log_lines(worker_log, "POST /v2/models/demo/versions/1/infer -> 400")
    assert "WARNING" in worker_line and "mpfn.worker" in worker_line
    for text in (router_log.read_text(), worker_log.read_text()):
        assert "s3cr3t" not in text and "hidden" not in text
