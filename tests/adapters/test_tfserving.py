"""`tfserving` adapter details against the TF Serving stand-in — NOT TensorFlow Serving.

The stand-in (`tests.servers.tfserving_standin`) follows TF Serving's documented REST API
(`api_rest.md`) and answers `ModelService.HandleReloadConfigRequest` over gRPC with the
same wire messages; it serves ONNX files through onnxruntime. These tests check the
adapter's use of both, and that the stand-in keeps to the documented REST shapes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest

from mpfn.adapters.base import AdapterError
from mpfn.adapters.tfserving.adapter import TFServingAdapter
from mpfn.adapters.tfserving.kept import CONFIG_FILE
from mpfn.adapters.tfserving.reload import GrpcReload
from mpfn.demo import demo_model_version
from tests.adapters.contract import ContractCase, fp32_request
from tests.adapters.servers_ort import DemoArtifact
from tests.adapters.servers_tfserving import TFServingServer, tfserving_config

DEMO1 = demo_model_version(None)
DEMO2 = demo_model_version(None, version="2")
OTHER7 = demo_model_version(None, name="other", version="7")


@pytest.fixture
async def client(tfserving_server: TFServingServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the stand-in, which starts each test serving no model at all."""
    reset = GrpcReload(f"127.0.0.1:{tfserving_server.grpc_port}")
    await reset.reload([])
    await reset.aclose()
    async with httpx.AsyncClient(base_url=tfserving_server.proc.url, timeout=30) as c:
        yield c


def make(server: TFServingServer, client: httpx.AsyncClient, **options: object) -> TFServingAdapter:
    return TFServingAdapter(tfserving_config(server, **options), client=client)


async def test_row_and_columnar_formats_give_the_engines_result(
    tfserving_server: TFServingServer, client: httpx.AsyncClient, demo_artifact: DemoArtifact
) -> None:
    request = fp32_request(np.random.default_rng(5).standard_normal((4, 16)).astype(np.float32))
    expected = demo_artifact.run(request)["y"]
    for fmt in ("row", "columnar"):
        adapter = make(tfserving_server, client, format=fmt)
        await adapter.load(DEMO1)
        np.testing.assert_array_equal((await adapter.infer(DEMO1, request)).outputs["y"], expected)
        await adapter.aclose()


async def test_a_reload_keeps_every_other_served_model(
    tfserving_server: TFServingServer, client: httpx.AsyncClient
) -> None:
    adapter = make(tfserving_server, client)
    await asyncio.gather(adapter.load(DEMO1), adapter.load(OTHER7), adapter.load(DEMO2))
    assert await adapter.loaded() == ["demo:1", "demo:2", "other:7"]
    await adapter.unload(DEMO1)
    assert await adapter.loaded() == ["demo:2", "other:7"]
    status = await adapter.status("demo")
    assert (status["1"].state, status["2"].state) == ("END", "AVAILABLE")
    await adapter.aclose()


async def test_models_the_server_already_serves_survive_the_first_load(
    tfserving_server: TFServingServer, client: httpx.AsyncClient
) -> None:
    base = str(tfserving_server.models / "other")
    first = make(tfserving_server, client)
    await first.load(OTHER7)
    await first.aclose()
    listed = [{"name": "other", "base_path": base, "versions": [7]}]
    adapter = make(tfserving_server, client, model_config_list=listed)
    await adapter.load(DEMO1)
    assert await adapter.loaded() == ["demo:1", "other:7"]
    await adapter.aclose()


async def test_a_restarted_adapter_goes_on_from_the_list_it_kept(
    tfserving_server: TFServingServer, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    def with_state() -> TFServingAdapter:
        return TFServingAdapter(
            replace(tfserving_config(tfserving_server), state_dir=tmp_path), client=client
        )

    first = with_state()
    await first.load(OTHER7)
    await first.aclose()  # the process ends; the server keeps serving other:7
    kept = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert [(c["name"], c["versions"]) for c in kept] == [("other", [7])]

    again = with_state()  # no model_config_list: only the kept file says other:7 is there
    await again.load(DEMO1)
    assert await again.loaded() == ["demo:1", "other:7"]
    await again.unload(OTHER7)
    await again.aclose()
    assert [c["name"] for c in json.loads((tmp_path / CONFIG_FILE).read_text())] == ["demo"]


def test_an_unreadable_kept_list_stops_the_adapter_with_what_to_do(
    tfserving_server: TFServingServer, tmp_path: Path
) -> None:
    (tmp_path / CONFIG_FILE).write_text('{"not": "a list"}')
    config = replace(tfserving_config(tfserving_server), state_dir=tmp_path)
    with pytest.raises(ValueError, match=r"unreadable .* remove it"):
        TFServingAdapter(config)


async def test_output_names_and_types_come_from_metadata_when_the_document_has_none(
    tfserving_server: TFServingServer, client: httpx.AsyncClient, tfserving_case: ContractCase
) -> None:
    bare = DEMO1.model_copy(update={"outputs": []})
    adapter = make(tfserving_server, client)
    await adapter.load(bare)
    metadata = await adapter.metadata(bare)
    assert metadata["signature"]["outputs"]["y"]["dtype"] == "DT_FLOAT"
    response = await adapter.infer(bare, tfserving_case.request)
    assert response.datatypes == {"y": "FP32"} and response.outputs["y"].dtype == np.float32
    await adapter.aclose()


async def test_reload_errors_map_to_http_statuses(
    tfserving_server: TFServingServer, client: httpx.AsyncClient
) -> None:
    adapter = make(tfserving_server, client, model_platform="pytorch")
    with pytest.raises(AdapterError) as caught:
        await adapter.load(DEMO1)
    assert caught.value.status == 400 and "INVALID_ARGUMENT" in caught.value.message
    assert adapter.served == {}  # a refused config is not remembered
    await adapter.aclose()


async def test_versions_must_be_integers(
    tfserving_server: TFServingServer, client: httpx.AsyncClient, tfserving_case: ContractCase
) -> None:
    adapter = make(tfserving_server, client)
    named = demo_model_version(None, version="v1")
    for call in (adapter.load(named), adapter.infer(named, tfserving_case.request)):
        with pytest.raises(AdapterError) as caught:
            await call
        assert caught.value.status == 400 and "integers" in caught.value.message
    assert not await adapter.ready(named)


async def test_grpc_target_defaults_to_the_endpoint_host_on_8500(
    tfserving_server: TFServingServer, client: httpx.AsyncClient
) -> None:
    config = tfserving_config(tfserving_server)
    adapter = TFServingAdapter(type(config)(pool=config.pool), client=client)
    assert adapter.grpc_target() == "127.0.0.1:8500"


# -- the stand-in keeps to api_rest.md --------------------------------------------------------


async def test_standin_predict_shapes_follow_the_rest_api(
    tfserving_server: TFServingServer, client: httpx.AsyncClient
) -> None:
    await make(tfserving_server, client).load(DEMO1)
    x = [[0.5] * 16, [0.25] * 16]
    row = (await client.post("/v1/models/demo:predict", json={"instances": x})).json()
    columnar = (await client.post("/v1/models/demo/versions/1:predict", json={"inputs": x})).json()
    assert set(row) == {"predictions"} and set(columnar) == {"outputs"}
    assert row["predictions"] == columnar["outputs"]
    assert np.asarray(row["predictions"]).shape == (2, 4)


@pytest.mark.parametrize(
    "method, path, body, status, error",
    [
        ("POST", "/v1/models/nope:predict", {"instances": [1]}, 404,
         "Servable not found for request: Latest(nope)"),
        ("POST", "/v1/models/demo/versions/9:predict", {"instances": [1]}, 404,
         "Servable not found for request: Specific(demo, 9)"),
        ("POST", "/v1/models/demo:predict", {"instances": [[1.0] * 16], "inputs": [[1.0] * 16]},
         400, "only one of 'inputs' or 'instances'"),
        ("POST", "/v1/models/demo:predict", {"x": 1}, 400, "Missing 'inputs' or 'instances' key"),
        ("POST", "/v1/models/demo:predict", {"inputs": [["a"] * 16]}, 400, "expected numbers"),
        ("POST", "/v1/models/demo:classify", {"examples": []}, 501, "classify is not supported"),
        ("GET", "/v1/models", None, 400, "Missing model name in request."),
        ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
        ("GET", "/v1/models/demo/versions/9", None, 404, "Could not find version 9 of model demo"),
        ("GET", "/v1/models/nope/metadata", None, 404, "Servable not found"),
        ("DELETE", "/v1/models/demo", None, 400, "Malformed request: DELETE /v1/models/demo"),
    ],
)  # fmt: skip
async def test_standin_errors_are_json_with_tf_statuses(
    tfserving_server: TFServingServer,
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: object,
    status: int,
    error: str,
) -> None:
    await make(tfserving_server, client).load(DEMO1)
    response = await client.request(method, path, json=body)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json()) == {"error"} and error in response.json()["error"]


async def test_standin_status_and_metadata_documents(
    tfserving_server: TFServingServer, client: httpx.AsyncClient
) -> None:
    await make(tfserving_server, client).load(DEMO1)
    status = (await client.get("/v1/models/demo/versions/1")).json()
    assert status == {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    metadata = (await client.get("/v1/models/demo/versions/1/metadata")).json()
    assert metadata["model_spec"] == {"name": "demo", "signature_name": "", "version": "1"}
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["x"]["tensor_shape"]["dim"] == [
        {"size": "-1", "name": ""},
        {"size": "16", "name": ""},
    ]
    assert signature["method_name"] == "tensorflow/serving/predict"
