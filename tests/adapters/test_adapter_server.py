"""The adapter server in front of the TF Serving stand-in — NOT TensorFlow Serving — and
a real router forwarding Open Inference Protocol v2 to it.

The stand-in (`tests.servers.tfserving_standin`) follows TF Serving's documented REST API
and its gRPC reload call and serves the demo ONNX model through onnxruntime. A
`tfserving` pool whose endpoint is the adapter server answers v2 clients (tritonclient,
JSON and binary tensors) exactly as the stand-in's own predict does; the adapter server's
repository API loads and unloads through the adapter; errors are JSON, backpressure is
503 + Retry-After, a backend that is down is 503 without it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.http as triton
from pydantic import HttpUrl

from mpfn.demo import build_demo_model, demo_model_version
from mpfn.documents import Pool
from mpfn.protocol import encode_infer_request
from mpfn.registry import Registry
from mpfn.store import LocalStore
from tests.servers.adapter_server import start_adapter_server
from tests.servers.mpfn_procs import start_router
from tests.servers.ports import unused_port
from tests.servers.process import Proc, stopping
from tests.servers.tfserving import TFServingProc, tfserving_standin

TOKEN = "adapter-admin-token-for-tests"
ADMIN = {"authorization": f"Bearer {TOKEN}"}
INFER = "/v2/models/demo/versions/1/infer"


@dataclass(frozen=True)
class Stack:
    standin: TFServingProc
    adapter: Proc  # the adapter server: the tfserving pool's endpoint
    router: Proc
    root: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("adapter-server")
    logs = root / "logs"
    model_file = root / "models" / "demo" / "1" / "model.onnx"
    model_file.parent.mkdir(parents=True)
    model_file.write_bytes(build_demo_model())
    token_file = root / "admin-token"
    token_file.write_text(TOKEN)
    store = LocalStore(root / "state")
    registry = Registry(store)
    registry.add_model(demo_model_version(None))
    with contextlib.ExitStack() as procs, tfserving_standin(logs) as standin:
        adapter = procs.enter_context(
            stopping(
                start_adapter_server(
                    "tfserving",
                    standin.proc.url,
                    logs,
                    state=store.url,
                    options={
                        "grpc_target": f"127.0.0.1:{standin.grpc_port}",
                        "base_path": f"{root / 'models'}/{{name}}",
                    },
                    extra=("--admin-token-file", str(token_file)),
                )
            )
        )
        registry.put_pool(
            Pool(
                id="tfs",
                cloud="local",
                adapter="tfserving",
                endpoint=HttpUrl(adapter.url),
                models=["demo"],
                adapter_server=True,
            )
        )
        router = procs.enter_context(stopping(start_router(store, logs)))
        yield Stack(standin, adapter, router, root)


def batch(rows: int = 3, seed: int = 7) -> npt.NDArray[np.float32]:
    return np.random.default_rng(seed).standard_normal((rows, 16)).astype(np.float32)


def native_predict(stack: Stack, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The stand-in's own REST predict (columnar) on the same input."""
    url = f"{stack.standin.proc.url}/v1/models/demo/versions/1:predict"
    answer = httpx.post(url, json={"inputs": {"x": x.tolist()}}, timeout=30)
    assert answer.status_code == 200, answer.text
    outputs: Any = answer.json()["outputs"]
    return np.asarray(outputs["y"] if isinstance(outputs, dict) else outputs, dtype=np.float32)


def load(stack: Stack) -> httpx.Response:
    url = f"{stack.adapter.url}/v2/repository/models/demo/load"
    return httpx.post(url, json={"parameters": {"version": "1"}}, headers=ADMIN, timeout=60)


def unload(stack: Stack) -> httpx.Response:
    url = f"{stack.adapter.url}/v2/repository/models/demo/unload"
    return httpx.post(url, json={"parameters": {"version": "1"}}, headers=ADMIN, timeout=60)


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False])
def test_tritonclient_through_the_router_matches_native_predict(
    stack: Stack, binary_in: bool, binary_out: bool
) -> None:
    x = batch(4, seed=int(binary_in) * 2 + int(binary_out))
    client = triton.InferenceServerClient(url=f"127.0.0.1:{stack.router.port}")
    inp = triton.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary_in)
    out = triton.InferRequestedOutput("y", binary_data=binary_out)
    result = client.infer("demo", [inp], model_version="1", outputs=[out])
    if binary_out:
        assert result.get_output("y")["parameters"]["binary_data_size"] == 4 * 4 * 4
    got = result.as_numpy("y")
    assert got is not None and got.dtype == np.float32
    np.testing.assert_array_equal(got, native_predict(stack, x))
    response = result.get_response()
    assert response["model_name"] == "demo" and response["model_version"] == "1"


def test_the_router_reaches_the_pool_and_relays_its_load_headers(stack: Stack) -> None:
    body, _ = encode_infer_request({"x": batch(2)}, binary=False)
    answer = httpx.post(stack.router.url + INFER, content=body, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-mpfn-pool"] == "tfs"
    meta = httpx.get(f"{stack.router.url}/v2/models/demo", timeout=30).json()
    assert meta["name"] == "demo" and [i["name"] for i in meta["inputs"]] == ["x"]


def test_repository_load_ready_infer_unload(stack: Stack) -> None:
    base = stack.adapter.url
    assert unload(stack).status_code == 200
    ready = httpx.get(f"{base}/v2/models/demo/versions/1/ready", timeout=30)
    assert ready.status_code == 400 and "not loaded" in ready.json()["error"]

    loaded = load(stack)
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["version"] == "1"
    assert float(loaded.headers["x-mpfn-load-ms"]) > 0  # this answer paid for a load
    assert httpx.get(f"{base}/v2/models/demo/versions/1/ready", timeout=30).status_code == 200
    index = httpx.post(f"{base}/v2/repository/index", json={"ready": True}, headers=ADMIN)
    assert index.json() == [{"name": "demo", "version": "1", "state": "READY", "reason": ""}]
    again = load(stack)
    assert again.status_code == 200 and "x-mpfn-load-ms" not in again.headers

    x = batch(3)
    body, _ = encode_infer_request({"x": x}, binary=False)
    answer = httpx.post(base + INFER, content=body, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-mpfn-inflight"] == "0" and answer.headers["x-mpfn-queued"] == "0"
    assert "x-mpfn-load-ms" not in answer.headers
    y = np.asarray(answer.json()["outputs"][0]["data"], dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(y, native_predict(stack, x))

    gone = unload(stack)
    assert gone.status_code == 200 and gone.json()["unloaded"] is True
    assert httpx.get(f"{base}/v2/models/demo/versions/1/ready", timeout=30).status_code == 400
    index = httpx.post(f"{base}/v2/repository/index", json={}, headers=ADMIN).json()
    assert index == [{"name": "demo", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"}]

    # The next inference loads the model on demand and says what that cost.
    cold = httpx.post(base + INFER, content=body, timeout=60)
    assert cold.status_code == 200 and float(cold.headers["x-mpfn-load-ms"]) > 0


def test_the_repository_api_takes_the_admin_token(stack: Stack) -> None:
    url = f"{stack.adapter.url}/v2/repository/models/demo/load"
    for headers in ({}, {"authorization": "Bearer wrong"}):
        refused = httpx.post(url, headers=headers, timeout=30)
        assert refused.status_code == 401 and "error" in refused.json()
        assert refused.headers["www-authenticate"].startswith("Bearer")
    # The router forwards inference only: no management route through it.
    through = httpx.post(f"{stack.router.url}/v2/repository/models/demo/load", headers=ADMIN)
    assert through.status_code in (401, 403, 404, 405)


@pytest.mark.parametrize("via", ["adapter", "router"])
def test_bad_input_is_a_4xx_json_error(stack: Stack, via: str) -> None:
    base = stack.adapter.url if via == "adapter" else stack.router.url
    good, _ = encode_infer_request({"x": batch(1)}, binary=False)
    cases: list[tuple[str, bytes, int]] = [
        (INFER, encode_infer_request({"x": np.zeros((1, 15), np.float32)}, binary=False)[0], 400),
        (INFER, encode_infer_request({"z": np.zeros((1, 16), np.float32)}, binary=False)[0], 400),
        (INFER, encode_infer_request({"x": np.zeros((1, 16), np.int32)}, binary=False)[0], 400),
        (INFER, b"{not json", 400),
        ("/v2/models/ghost/versions/1/infer", good, 404),
    ]
    for path, body, status in cases:
        answer = httpx.post(base + path, content=body, timeout=30)
        assert answer.status_code == status, (path, body[:40], answer.text)
        doc = answer.json()
        assert isinstance(doc["error"], str) and "Traceback" not in doc["error"]
        assert "retry-after" not in answer.headers


def test_a_backend_that_is_down_is_a_503_json_error(stack: Stack) -> None:
    down = f"http://127.0.0.1:{unused_port()}"
    with stopping(start_adapter_server("tfserving", down, stack.root / "logs", name="down")) as p:
        body, _ = encode_infer_request({"x": batch(1)}, binary=False)
        answer = httpx.post(p.url + INFER, content=body, timeout=30)
        assert answer.status_code == 503
        assert "unreachable" in answer.json()["error"] and "retry-after" not in answer.headers
        health = httpx.get(f"{p.url}/v2/health/ready", timeout=30)
        assert health.status_code == 503 and health.json()["ready"] is False
        assert httpx.get(f"{p.url}/v2/health/live", timeout=30).status_code == 200
        # Without a registry a request must name its version.
        bare = httpx.post(f"{p.url}/v2/models/demo/infer", content=body, timeout=30)
        assert bare.status_code == 400 and "version" in bare.json()["error"]


def test_a_full_queue_is_backpressure(stack: Stack) -> None:
    assert load(stack).status_code == 200
    options = {
        "grpc_target": f"127.0.0.1:{stack.standin.grpc_port}",
        "base_path": f"{stack.root / 'models'}/{{name}}",
    }
    narrow = start_adapter_server(
        "tfserving",
        stack.standin.proc.url,
        stack.root / "logs",
        options=options,
        extra=("--max-concurrency", "1", "--max-queue", "0", "--no-load-on-demand"),
        name="narrow",
    )
    body, _ = encode_infer_request({"x": batch(64)}, binary=False)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=narrow.url, timeout=30) as client:
            return await asyncio.gather(*(client.post(INFER, content=body) for _ in range(24)))

    with stopping(narrow):
        answers = asyncio.run(burst())
    busy = [a for a in answers if a.status_code == 503]
    assert {a.status_code for a in answers} <= {200, 503}
    assert busy and any(a.status_code == 200 for a in answers)
    for answer in busy:
        assert answer.headers["retry-after"] == "1" and answer.json()["error"] == "queue full"
