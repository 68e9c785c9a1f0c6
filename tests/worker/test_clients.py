"""Real v2 clients (tritonclient.http, kserve InferenceRESTClient) against a worker process."""

from __future__ import annotations

import asyncio

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput

from tests.servers.process import Proc
from tests.worker.conftest import StateFixture


@pytest.fixture(scope="module")
def reference(state: StateFixture) -> ort.InferenceSession:
    """onnxruntime run directly on the same artifact the worker serves."""
    return ort.InferenceSession(str(state.demo_path), providers=["CPUExecutionProvider"])


@pytest.fixture()
def batch() -> np.ndarray:
    return np.random.default_rng(3).standard_normal((5, 16)).astype(np.float32)


def expected(reference: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    return np.asarray(reference.run(["y"], {"x": x})[0])


def triton_client(worker: Proc) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=f"127.0.0.1:{worker.port}")


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False])
def test_tritonclient_infer_matches_onnxruntime(
    worker: Proc,
    reference: ort.InferenceSession,
    batch: np.ndarray,
    binary_in: bool,
    binary_out: bool,
) -> None:
    client = triton_client(worker)
    inp = triton.InferInput("x", list(batch.shape), "FP32")
    inp.set_data_from_numpy(batch, binary_data=binary_in)
    out = triton.InferRequestedOutput("y", binary_data=binary_out)
    result = client.infer("demo", [inp], outputs=[out], request_id="req-7")
    y = result.as_numpy("y")
    assert y is not None and y.dtype == np.float32 and y.shape == (5, 4)
    np.testing.assert_array_equal(y, expected(reference, batch))
    response = result.get_response()
    assert response["model_name"] == "demo"
    assert response["model_version"] == "1"
    assert response["id"] == "req-7"


def test_tritonclient_default_request_returns_binary_outputs(
    worker: Proc, reference: ort.InferenceSession, batch: np.ndarray
) -> None:
    client = triton_client(worker)
    inp = triton.InferInput("x", list(batch.shape), "FP32")
    inp.set_data_from_numpy(batch)
    result = client.infer("demo", [inp])  # no outputs: request-level binary_data_output
    assert result.get_output("y")["parameters"]["binary_data_size"] == 5 * 4 * 4
    np.testing.assert_array_equal(result.as_numpy("y"), expected(reference, batch))


def test_tritonclient_versioned_path_and_metadata(worker: Proc, batch: np.ndarray) -> None:
    client = triton_client(worker)
    assert client.is_server_live() and client.is_server_ready()
    server = client.get_server_metadata()
    assert set(server["extensions"]) >= {"binary_tensor_data", "model_repository"}
    meta = client.get_model_metadata("demo")
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]
    assert client.get_model_metadata("demo", model_version="1")["versions"] == ["1"]
    assert client.is_model_ready("demo") and client.is_model_ready("demo", "1")
    inp = triton.InferInput("x", list(batch.shape), "FP32")
    inp.set_data_from_numpy(batch)
    assert client.infer("demo", [inp], model_version="1").as_numpy("y").shape == (5, 4)


def test_version_less_path_picks_highest_natural_version(worker: Proc) -> None:
    client = triton_client(worker)
    assert client.get_model_metadata("multi")["versions"] == ["10", "9"]
    inp = triton.InferInput("x", [1, 16], "FP32")
    inp.set_data_from_numpy(np.ones((1, 16), np.float32))
    assert client.infer("multi", [inp]).get_response()["model_version"] == "10"


@pytest.mark.parametrize("binary", [True, False])
def test_kserve_rest_client(
    worker: Proc, reference: ort.InferenceSession, batch: np.ndarray, binary: bool
) -> None:
    async def run() -> np.ndarray:
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        try:
            assert await client.is_server_live(worker.url)
            assert await client.is_server_ready(worker.url)
            assert await client.is_model_ready(worker.url, "demo")
            inp = InferInput(name="x", shape=list(batch.shape), datatype="FP32")
            inp.set_data_from_numpy(batch, binary_data=binary)
            request = InferRequest(
                model_name="demo",
                infer_inputs=[inp],
                request_id="k-1",
                request_outputs=[RequestedOutput("y", parameters={"binary_data": binary})],
            )
            response = await client.infer(worker.url, request, model_name="demo")
            assert response.model_name == "demo" and response.id == "k-1"
            return np.asarray(response.outputs[0].as_numpy())
        finally:
            await client.close()

    y = asyncio.run(run())
    np.testing.assert_array_equal(y, expected(reference, batch))


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_tritonclient_compressed_request(
    worker: Proc, reference: ort.InferenceSession, batch: np.ndarray, algorithm: str
) -> None:
    inp = triton.InferInput("x", list(batch.shape), "FP32")
    inp.set_data_from_numpy(batch)
    result = triton_client(worker).infer("demo", [inp], request_compression_algorithm=algorithm)
    np.testing.assert_array_equal(result.as_numpy("y"), expected(reference, batch))
