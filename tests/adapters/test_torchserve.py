"""`torchserve` adapter details against a real TorchServe: the `.mar` torch-model-archiver
builds, binary tensors on `/predictions`, TorchServe's v2 route, scaling workers, a
registered version without workers, TorchScript models, and errors mapped."""

from __future__ import annotations

import json
import zipfile
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from mpfn.adapters.base import AdapterError
from mpfn.adapters.torchserve.adapter import TorchServeAdapter, torchserve_metrics
from mpfn.adapters.torchserve.archive import UnsupportedModel, build_mar, mar_name, model_spec
from mpfn.artifacts import push_model
from mpfn.demo import demo_model_version, demo_weights
from mpfn.documents import ModelVersion
from mpfn.protocol import InferInput, InferRequest
from tests.adapters.contract import fp32_request
from tests.adapters.servers_ort import DemoArtifact
from tests.adapters.servers_torchserve import (
    TorchServeServer,
    start_torchserve,
    stop_torchserve,
    torchserve_config,
)
from tests.adapters.servers_triton import UploadModels


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=120) as made:
        yield made


# -- archives ---------------------------------------------------------------------------------


async def test_archive_holds_artifact_spec_and_handler(
    tmp_path: Path, torchserve_models: UploadModels, demo_artifact: DemoArtifact
) -> None:
    demo = torchserve_models.demo
    mar = await build_mar(demo, demo_artifact.path, tmp_path)
    assert mar.name == mar_name(demo)
    assert mar.name.startswith("demo-1-") and mar.name.endswith(".mar")
    with zipfile.ZipFile(mar) as archive:
        manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
        assert manifest["model"]["modelName"] == "demo"
        assert manifest["model"]["modelVersion"] == "1"
        assert manifest["model"]["handler"] == "mpfn_handler.py"
        assert manifest["model"]["serializedFile"] == "model.onnx"
        assert archive.read("model.onnx") == demo_artifact.path.read_bytes()
        assert json.loads(archive.read("mpfn-model.json")) == model_spec(demo)
        assert b"class MpfnHandler" in archive.read("mpfn_handler.py")
    built_at = mar.stat().st_mtime_ns
    assert await build_mar(demo, demo_artifact.path, tmp_path) == mar  # kept, not rebuilt
    assert mar.stat().st_mtime_ns == built_at
    assert [p.name for p in tmp_path.iterdir()] == [mar.name]  # no build leftovers


def test_only_onnx_and_torchscript_are_archived() -> None:
    with pytest.raises(UnsupportedModel, match="not 'tensorflow'"):
        model_spec(demo_model_version(None).model_copy(update={"format": "tensorflow"}))


def test_metrics_totals() -> None:
    text = (
        "# TYPE ts_inference_requests_total counter\n"
        'ts_inference_requests_total{model_name="a",model_version="1",hostname="h",} 4.0\n'
        'ts_inference_requests_total{model_name="b",model_version="1",hostname="h",} 2.0\n'
        "# TYPE ts_inference_latency_microseconds counter\n"
        'ts_inference_latency_microseconds{model_name="a",model_version="1",hostname="h",} 90.5\n'
        "# TYPE Requests5XX counter\n"
        'Requests5XX{Level="Host",Hostname="h",} 1.0\n'
    )
    metrics = torchserve_metrics(text)
    assert metrics["requests"] == 6
    assert metrics["inference_us"] == 90.5
    assert metrics["errors"] == 1


# -- against the real server ------------------------------------------------------------------


async def test_tensors_travel_as_binary_both_ways(
    torchserve_server: TorchServeServer,
    torchserve_models: UploadModels,
    demo_artifact: DemoArtifact,
    wire: tuple[httpx.AsyncClient, list[httpx.Response]],
) -> None:
    client, seen = wire
    config = torchserve_config(torchserve_server, torchserve_models)
    adapter = TorchServeAdapter(config, client=client)
    await adapter.load(torchserve_models.demo)
    request = fp32_request(np.linspace(-2, 2, 48, dtype=np.float32).reshape(3, 16))
    response = await adapter.infer(torchserve_models.demo, request)
    np.testing.assert_array_equal(response.outputs["y"], demo_artifact.run(request)["y"])
    infer = seen[-1]
    assert infer.request.url.path == "/predictions/demo/1"
    header = int(infer.request.headers["inference-header-content-length"])
    assert len(infer.request.content) == header + 3 * 16 * 4  # JSON header + raw FP32 input
    assert infer.headers["content-type"] == "application/octet-stream"
    assert int(infer.headers["inference-header-content-length"]) == len(infer.content) - 3 * 4 * 4


async def test_v2_route_serves_the_default_version(
    torchserve_server: TorchServeServer,
    torchserve_models: UploadModels,
    demo_artifact: DemoArtifact,
    wire: tuple[httpx.AsyncClient, list[httpx.Response]],
) -> None:
    client, seen = wire
    loader = TorchServeAdapter(
        torchserve_config(torchserve_server, torchserve_models), client=client
    )
    await loader.load(torchserve_models.demo)
    config = torchserve_config(torchserve_server, torchserve_models, protocol="v2")
    adapter = TorchServeAdapter(config, client=client)
    request = fp32_request(np.full((2, 16), 0.5, dtype=np.float32))
    response = await adapter.infer(torchserve_models.demo, request)
    assert seen[-1].request.url.path == "/v2/models/demo/infer"
    assert seen[-1].headers["content-type"].startswith("application/json")
    np.testing.assert_array_equal(response.outputs["y"], demo_artifact.run(request)["y"])


async def test_scale_workers_up_and_down(
    torchserve_server: TorchServeServer, torchserve_models: UploadModels, client: httpx.AsyncClient
) -> None:
    adapter = TorchServeAdapter(
        torchserve_config(torchserve_server, torchserve_models), client=client
    )
    demo = torchserve_models.demo
    await adapter.load(demo)
    await adapter.scale(demo, 2)
    described = await adapter.describe(demo)
    assert described is not None
    assert [w["status"] for w in described["workers"]] == ["READY", "READY"]
    stats = await adapter.stats()
    assert stats.extra["models"]["demo:1"]["ready_workers"] == 2
    await adapter.scale(demo, 1)
    described = await adapter.describe(demo)
    assert described is not None and len(described["workers"]) == 1


async def test_a_version_without_workers_is_not_ready_until_loaded(
    torchserve_server: TorchServeServer, torchserve_models: UploadModels, client: httpx.AsyncClient
) -> None:
    adapter = TorchServeAdapter(
        torchserve_config(torchserve_server, torchserve_models), client=client
    )
    demo = torchserve_models.demo
    await adapter.load(demo)
    await adapter.scale(demo, 0)
    assert not await adapter.ready(demo)
    assert "demo:1" not in await adapter.loaded()
    result = await adapter.load(demo)  # registered already (409): scaled back up
    assert result.load_ms > 0
    assert await adapter.ready(demo)


async def test_bad_inputs_are_400_and_unknown_models_404(
    torchserve_server: TorchServeServer, torchserve_models: UploadModels, client: httpx.AsyncClient
) -> None:
    adapter = TorchServeAdapter(
        torchserve_config(torchserve_server, torchserve_models), client=client
    )
    demo = torchserve_models.demo
    await adapter.load(demo)
    ints = np.ones((1, 16), dtype=np.int32)
    wrong_type = InferRequest(inputs=[InferInput("x", "INT32", ints.shape, ints)])
    with pytest.raises(AdapterError) as caught:
        await adapter.infer(demo, wrong_type)
    assert caught.value.status == 400
    assert (
        caught.value.message == "torchserve backend: input 'x': expected datatype FP32, got INT32"
    )
    ghost = demo_model_version(None, name="ghost")
    with pytest.raises(AdapterError) as missing:
        await adapter.infer(ghost, fp32_request(np.ones((1, 16), dtype=np.float32)))
    assert missing.value.status == 404


async def test_token_authorization_uses_the_keys_from_config(
    tmp_path: Path, torchserve_models: UploadModels, demo_artifact: DemoArtifact
) -> None:
    # TorchServe's default: token authorization on; it writes its keys to key_file.json.
    server = start_torchserve(tmp_path / "server", token_auth=True)
    try:
        keys = json.loads((tmp_path / "server" / "key_file.json").read_text())
        credentials = {
            "management_key": keys["management"]["key"],
            "inference_key": keys["inference"]["key"],
        }
        async with httpx.AsyncClient(timeout=120) as client:
            config = torchserve_config(server, torchserve_models)
            keyless = TorchServeAdapter(config, client=client)
            assert not await keyless.ready()
            with pytest.raises(AdapterError) as refused:
                await keyless.load(torchserve_models.demo)
            assert refused.value.status == 502
            assert "rejected the pool's credentials" in refused.value.message
            assert keys["management"]["key"] not in refused.value.message
            keyed = TorchServeAdapter(replace(config, credentials=credentials), client=client)
            assert await keyed.ready()
            await keyed.load(torchserve_models.demo)
            request = fp32_request(np.ones((2, 16), dtype=np.float32))
            response = await keyed.infer(torchserve_models.demo, request)
            np.testing.assert_array_equal(response.outputs["y"], demo_artifact.run(request)["y"])
            with pytest.raises(AdapterError) as no_inference_key:
                await keyless.infer(torchserve_models.demo, request)
            assert no_inference_key.value.status == 502
            await keyed.unload(torchserve_models.demo)
    finally:
        stop_torchserve(server)


def scripted_demo(path: Path) -> Path:
    """The demo model as TorchScript: relu(x @ W + b) with the demo's weights."""
    weight, bias = demo_weights()
    linear = torch.nn.Linear(16, 4)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight.T.copy()))
        linear.bias.copy_(torch.from_numpy(bias))
    module = torch.jit.script(torch.nn.Sequential(linear, torch.nn.ReLU()))
    torch.jit.save(module, str(path))
    return path


@pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")
async def test_torchscript_models_run_in_torch(
    tmp_path: Path,
    torchserve_server: TorchServeServer,
    torchserve_models: UploadModels,
    client: httpx.AsyncClient,
) -> None:
    path = scripted_demo(tmp_path / "demo.pt")
    ref = push_model(torchserve_models.store, path, name="demo-ts", version="1", fmt="torchscript")
    model: ModelVersion = demo_model_version(ref, name="demo-ts").model_copy(
        update={"format": "torchscript"}
    )
    adapter = TorchServeAdapter(
        torchserve_config(torchserve_server, torchserve_models), client=client
    )
    await adapter.load(model)
    x = np.random.default_rng(5).standard_normal((4, 16)).astype(np.float32)
    response = await adapter.infer(model, fp32_request(x))
    with torch.inference_mode():
        expected = torch.jit.load(str(path))(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(response.outputs["y"], expected, rtol=1e-6, atol=1e-6)
    await adapter.unload(model)
    assert not await adapter.ready(model)
