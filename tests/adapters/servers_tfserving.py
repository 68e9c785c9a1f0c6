"""The TF Serving stand-in for the adapter tests — NOT TensorFlow Serving.

No TF Serving binary can be installed here, so the `tfserving` adapter is tested against
`tests.servers.tfserving_standin`: a server that follows TF Serving's documented REST API
(`api_rest.md`) and its gRPC `ModelService.HandleReloadConfigRequest`, serving the demo
ONNX model through onnxruntime from `<base_path>/<version>/model.onnx`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from pydantic import HttpUrl

from mpfn.adapters.base import Adapter, AdapterConfig
from mpfn.demo import demo_model_version
from mpfn.documents import Pool
from tests.adapters.contract import ContractCase, fp32_request
from tests.adapters.servers_ort import DemoArtifact
from tests.servers.process import Proc
from tests.servers.tfserving import tfserving_standin


@dataclass(frozen=True)
class TFServingServer:
    proc: Proc
    grpc_port: int
    models: Path  # base paths live under here: <models>/<name>/<version>/model.onnx

    def options(self, **extra: object) -> dict[str, object]:
        return {
            "grpc_target": f"127.0.0.1:{self.grpc_port}",
            "base_path": f"{self.models}/{{name}}",
            **extra,
        }


@pytest.fixture(scope="session")
def tfserving_server(
    tmp_path_factory: pytest.TempPathFactory, demo_artifact: DemoArtifact
) -> Iterator[TFServingServer]:
    root = tmp_path_factory.mktemp("tfserving")
    models = root / "models"
    for name, version in (("demo", 1), ("demo", 2), ("other", 7)):
        path = models / name / str(version) / "model.onnx"
        path.parent.mkdir(parents=True)
        path.write_bytes(demo_artifact.path.read_bytes())
    # A model file onnxruntime cannot read: loading it fails in the server (DATA_LOSS).
    broken = models / "broken" / "1" / "model.onnx"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"this is not an ONNX model")
    with tfserving_standin(root / "logs") as standin:
        yield TFServingServer(standin.proc, standin.grpc_port, models)


def tfserving_config(server: TFServingServer, **options: object) -> AdapterConfig:
    pool = Pool(
        id="tfs-pool", cloud="local", adapter="tfserving", endpoint=HttpUrl(server.proc.url)
    )
    return AdapterConfig(pool=pool, options=server.options(**options))


@pytest.fixture(scope="session")
def tfserving_case(tfserving_server: TFServingServer, demo_artifact: DemoArtifact) -> ContractCase:
    demo = demo_model_version(None)
    x = np.random.default_rng(12).standard_normal((3, 16)).astype(np.float32)
    bad = fp32_request(np.zeros((1, 15), dtype=np.float32))

    async def bad_request(adapter: Adapter) -> object:
        await adapter.load(demo)
        return await adapter.infer(demo, bad)

    async def backend_failure(adapter: Adapter) -> object:
        return await adapter.load(demo_model_version(None, name="broken"))

    return ContractCase(
        kind="tfserving",
        config=tfserving_config(tfserving_server),
        model=demo,
        key="demo:1",
        request=fp32_request(x),
        reference=demo_artifact.run,
        missing=demo_model_version(None, name="ghost"),
        bad_request=bad_request,
        backend_failure=backend_failure,
    )
