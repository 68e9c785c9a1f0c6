"""The TorchServe fixtures for the adapter tests: one TorchServe per session (started by
`tests.servers.torchserve`), the models the adapter archives for it, and its contract case.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from pydantic import HttpUrl

from mpfn.adapters.base import Adapter, AdapterConfig
from mpfn.demo import demo_model_version
from mpfn.documents import Pool
from tests.adapters.contract import ContractCase, fp32_request
from tests.adapters.servers_ort import DemoArtifact
from tests.adapters.servers_triton import UploadModels, upload_models
from tests.servers.torchserve import TorchServeServer, start_torchserve, stop_torchserve


@pytest.fixture(scope="session")
def torchserve_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TorchServeServer]:
    """One TorchServe for the whole test session."""
    server = start_torchserve(tmp_path_factory.mktemp("torchserve"))
    try:
        yield server
    finally:
        stop_torchserve(server)


@pytest.fixture(scope="session")
def torchserve_models(
    tmp_path_factory: pytest.TempPathFactory, demo_artifact: DemoArtifact
) -> UploadModels:
    return upload_models(tmp_path_factory.mktemp("torchserve-models"), demo_artifact)


def torchserve_config(
    server: TorchServeServer, models: UploadModels, **options: object
) -> AdapterConfig:
    pool = Pool(
        id="torchserve-pool",
        cloud="local",
        adapter="torchserve",
        endpoint=HttpUrl(server.inference_url),
    )
    return AdapterConfig(
        pool=pool,
        management_url=server.management_url,
        options={"model_store": str(server.model_store), "metrics_url": server.metrics_url}
        | options,
        artifacts=models.fetch(),
    )


@pytest.fixture(scope="session")
def torchserve_case(
    torchserve_server: TorchServeServer,
    torchserve_models: UploadModels,
    demo_artifact: DemoArtifact,
) -> ContractCase:
    demo = torchserve_models.demo
    x = np.random.default_rng(17).standard_normal((3, 16)).astype(np.float32)
    bad = fp32_request(np.zeros((1, 15), dtype=np.float32))

    async def bad_request(adapter: Adapter) -> object:
        await adapter.load(demo)  # requests for a model that is not loaded get 503/404
        return await adapter.infer(demo, bad)

    async def backend_failure(adapter: Adapter) -> object:
        return await adapter.load(torchserve_models.broken)

    return ContractCase(
        kind="torchserve",
        config=torchserve_config(torchserve_server, torchserve_models),
        model=demo,
        key="demo:1",
        request=fp32_request(x),
        reference=demo_artifact.run,
        missing=demo_model_version(None, name="ghost"),
        bad_request=bad_request,
        backend_failure=backend_failure,
    )
