"""`triton` adapter details against a real Triton server (the `tritonserver` nvidia-pytriton
bundles: CPU, python backend only, so served models are python-backend models running
onnxruntime): generated configs and config.pbtxt, binary tensors on the wire, versions side
by side, the management key, statistics and `nv_*` metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest

from mpfn.adapters.base import AdapterError
from mpfn.adapters.triton.adapter import TritonAdapter, triton_metrics
from mpfn.adapters.triton.repository import (
    TritonRepoError,
    build_triton_model,
    config_pbtxt,
    load_parameters,
    model_config,
    write_repository,
)
from mpfn.demo import demo_model_version
from mpfn.documents import TensorSpec
from mpfn.protocol import InferRequest, RequestedOutput
from tests.adapters.contract import fp32_request
from tests.adapters.servers_ort import DemoArtifact
from tests.adapters.servers_triton import TritonServer, UploadModels, triton_config

# -- generated model configuration (pure) ----------------------------------------------------


def test_onnx_models_get_the_onnxruntime_platform() -> None:
    config = model_config(demo_model_version(None))
    assert config["name"] == "demo.1"
    assert config["platform"] == "onnxruntime_onnx"
    assert "backend" not in config
    assert config["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": [-1, 16]}]
    assert config["output"] == [{"name": "y", "data_type": "TYPE_FP32", "dims": [-1, 4]}]
    assert config["instance_group"] == [{"kind": "KIND_CPU", "count": 1}]
    assert config["parameters"]["mpfn.model"] == {"string_value": "demo"}


def test_torchscript_models_get_libtorch_and_model_pt() -> None:
    model = demo_model_version(None).model_copy(update={"format": "torchscript"})
    built = build_triton_model(model, b"weights", instance_kind="KIND_GPU", instances=2)
    assert built.config["platform"] == "pytorch_libtorch"
    assert built.config["instance_group"] == [{"kind": "KIND_GPU", "count": 2}]
    assert built.files == {"1/model.pt": b"weights"}


def test_batching_leaves_the_batch_dimension_out() -> None:
    config = model_config(demo_model_version(None), max_batch_size=8)
    assert config["max_batch_size"] == 8
    assert config["input"][0]["dims"] == [16]
    assert config["dynamic_batching"] == {}
    fixed = demo_model_version(None).model_copy(
        update={"inputs": [TensorSpec(name="x", datatype="FP32", shape=[2, 16])]}
    )
    with pytest.raises(TritonRepoError, match="first dimension"):
        model_config(fixed, max_batch_size=8)


def test_python_backend_ships_model_py_and_runs_only_onnx() -> None:
    built = build_triton_model(demo_model_version(None), b"onnx", backend="python")
    assert built.config["backend"] == "python"
    assert set(built.files) == {"1/model.onnx", "1/model.py"}
    assert b"class TritonPythonModel" in built.files["1/model.py"]
    params = load_parameters(built)
    assert json.loads(params["config"]) == built.config
    assert set(params) == {"config", "file:1/model.onnx", "file:1/model.py"}
    torchscript = demo_model_version(None).model_copy(update={"format": "torchscript"})
    with pytest.raises(TritonRepoError, match="ONNX"):
        build_triton_model(torchscript, b"pt", backend="python")


def test_config_pbtxt_is_protobuf_text_format() -> None:
    text = config_pbtxt(model_config(demo_model_version(None)))
    assert text == (
        'name: "demo.1"\n'
        'platform: "onnxruntime_onnx"\n'
        "max_batch_size: 0\n"
        "input [\n"
        "  {\n"
        '    name: "x"\n'
        "    data_type: TYPE_FP32\n"
        "    dims: [ -1, 16 ]\n"
        "  }\n"
        "]\n"
        "output [\n"
        "  {\n"
        '    name: "y"\n'
        "    data_type: TYPE_FP32\n"
        "    dims: [ -1, 4 ]\n"
        "  }\n"
        "]\n"
        "instance_group [\n"
        "  {\n"
        "    kind: KIND_CPU\n"
        "    count: 1\n"
        "  }\n"
        "]\n"
        "parameters {\n"
        '  key: "mpfn.model"\n'
        "  value {\n"
        '    string_value: "demo"\n'
        "  }\n"
        "}\n"
        "parameters {\n"
        '  key: "mpfn.version"\n'
        "  value {\n"
        '    string_value: "1"\n'
        "  }\n"
        "}\n"
    )


def test_metrics_are_summed_over_models() -> None:
    text = (
        "# HELP nv_inference_request_success Number of successful inference requests\n"
        "# TYPE nv_inference_request_success counter\n"
        'nv_inference_request_success{model="a.1",version="1"} 3\n'
        'nv_inference_request_success{model="b.1",version="1"} 4\n'
        "# TYPE nv_inference_pending_request_count gauge\n"
        'nv_inference_pending_request_count{model="a.1",version="1"} 2\n'
    )
    metrics = triton_metrics(text)
    assert metrics["success"] == 7
    assert metrics["pending"] == 2
    assert metrics["failure"] == 0


# -- against the real server -----------------------------------------------------------------


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=60) as made:
        yield made


async def test_config_pbtxt_written_to_the_repository_is_what_triton_loads(
    triton_server: TritonServer,
    triton_models: UploadModels,
    demo_artifact: DemoArtifact,
    client: httpx.AsyncClient,
) -> None:
    model = demo_model_version(None, name="on-disk", version="3")
    built = build_triton_model(model, demo_artifact.path.read_bytes(), backend="python")
    write_repository(built, triton_server.repository)
    assert (triton_server.repository / "on-disk.3" / "config.pbtxt").is_file()
    adapter = TritonAdapter(triton_config(triton_server, triton_models), client=client)
    await adapter.load(model)  # no artifact: Triton loads it from its repository by name
    assert await adapter.ready(model)
    assert "on-disk:3" in await adapter.loaded()
    headers = adapter.management_headers
    seen = (
        await client.get(f"{triton_server.url}/v2/models/on-disk.3/config", headers=headers)
    ).json()
    assert seen["backend"] == "python"
    assert [(i["name"], i["data_type"], i["dims"]) for i in seen["input"]] == [
        ("x", "TYPE_FP32", [-1, 16])
    ]
    assert seen["parameters"]["mpfn.version"] == {"string_value": "3"}
    request = fp32_request(np.linspace(-1, 1, 32, dtype=np.float32).reshape(2, 16))
    response = await adapter.infer(model, request)
    assert (response.model_name, response.model_version) == ("on-disk", "3")
    np.testing.assert_array_equal(response.outputs["y"], demo_artifact.run(request)["y"])
    await adapter.unload(model)
    assert not await adapter.ready(model)


async def test_tensors_travel_as_binary_both_ways(
    triton_server: TritonServer,
    triton_models: UploadModels,
    wire: tuple[httpx.AsyncClient, list[httpx.Response]],
) -> None:
    client, seen = wire
    adapter = TritonAdapter(triton_config(triton_server, triton_models), client=client)
    await adapter.load(triton_models.demo)
    x = np.ones((3, 16), dtype=np.float32)
    response = await adapter.infer(triton_models.demo, fp32_request(x))
    assert response.outputs["y"].shape == (3, 4)
    infer = seen[-1]
    assert infer.request.url.path == "/v2/models/demo.1/versions/1/infer"
    header = int(infer.request.headers["inference-header-content-length"])
    assert len(infer.request.content) == header + 3 * 16 * 4  # JSON header + raw FP32 input
    assert int(infer.headers["inference-header-content-length"]) == len(infer.content) - 3 * 4 * 4


async def test_requested_outputs_and_request_ids_pass_through(
    triton_server: TritonServer,
    triton_models: UploadModels,
    demo_artifact: DemoArtifact,
    client: httpx.AsyncClient,
) -> None:
    adapter = TritonAdapter(triton_config(triton_server, triton_models), client=client)
    await adapter.load(triton_models.demo)
    base = fp32_request(np.full((1, 16), 0.25, dtype=np.float32))
    request = InferRequest(
        inputs=base.inputs, outputs=[RequestedOutput("y", binary=False)], id="req-7"
    )
    response = await adapter.infer(triton_models.demo, request)
    assert response.id == "req-7"
    np.testing.assert_array_equal(response.outputs["y"], demo_artifact.run(base)["y"])
    unknown = InferRequest(inputs=base.inputs, outputs=[RequestedOutput("nope", binary=True)])
    with pytest.raises(AdapterError) as caught:
        await adapter.infer(triton_models.demo, unknown)
    assert caught.value.status == 400
    assert "nope" in caught.value.message


async def test_two_versions_are_loaded_side_by_side(
    triton_server: TritonServer, triton_models: UploadModels, client: httpx.AsyncClient
) -> None:
    adapter = TritonAdapter(triton_config(triton_server, triton_models), client=client)
    one = triton_models.demo
    two = one.model_copy(update={"version": "2"})
    await adapter.load(one)
    await adapter.load(two)
    assert {"demo:1", "demo:2"} <= set(await adapter.loaded())
    await adapter.unload(two)
    assert await adapter.ready(one)
    assert not await adapter.ready(two)
    loaded = await adapter.loaded()
    assert "demo:1" in loaded and "demo:2" not in loaded


async def test_management_calls_without_the_key_are_refused(
    triton_server: TritonServer, triton_models: UploadModels, client: httpx.AsyncClient
) -> None:
    keyed = TritonAdapter(triton_config(triton_server, triton_models), client=client)
    await keyed.load(triton_models.demo)
    keyless = TritonAdapter(triton_config(triton_server, triton_models, key=None), client=client)
    other = triton_models.demo.model_copy(update={"version": "5"})
    for call in (keyless.load(other), keyless.stats(), keyless.loaded()):
        with pytest.raises(AdapterError) as caught:
            await call
        assert caught.value.status == 502
        assert "rejected the pool's credentials (403)" in caught.value.message
    # Inference is not a management call: it needs no key.
    response = await keyless.infer(triton_models.demo, fp32_request(np.ones((1, 16), np.float32)))
    assert response.outputs["y"].shape == (1, 4)


async def test_stats_count_what_triton_served(
    triton_server: TritonServer, triton_models: UploadModels, client: httpx.AsyncClient
) -> None:
    adapter = TritonAdapter(triton_config(triton_server, triton_models), client=client)
    await adapter.load(triton_models.demo)
    before = await adapter.stats()
    request = fp32_request(np.ones((2, 16), dtype=np.float32))
    for _ in range(5):
        await adapter.infer(triton_models.demo, request)
    done = before.extra["models"]["demo.1:1"]["success_count"] + 5
    for _ in range(100):  # Triton updates its statistics after it answers
        after = await adapter.stats()
        served = after.extra["models"]["demo.1:1"]
        if served["success_count"] >= done and after.extra["metrics"]["success"] >= (
            before.extra["metrics"]["success"] + 5
        ):
            break
        await asyncio.sleep(0.05)
    assert served["success_count"] == done
    assert served["compute_infer_ms"] > 0
    assert after.extra["metrics"]["success"] - before.extra["metrics"]["success"] == 5
    assert after.requests - before.requests == 5
    assert after.queued == 0 and "demo:1" in after.loaded


async def test_a_backend_the_server_lacks_is_a_load_failure(
    triton_server: TritonServer, triton_models: UploadModels, client: httpx.AsyncClient
) -> None:
    # Production configs use Triton's onnxruntime backend; this build has only python.
    config = triton_config(triton_server, triton_models, backend="onnxruntime")
    adapter = TritonAdapter(config, client=client)
    native = triton_models.demo.model_copy(update={"version": "9"})
    with pytest.raises(AdapterError) as caught:
        await adapter.load(native)
    assert caught.value.status == 502
    assert caught.value.message.startswith("triton backend could not load demo:9: ")
    assert "\n" not in caught.value.message
    assert not await adapter.ready(native)
