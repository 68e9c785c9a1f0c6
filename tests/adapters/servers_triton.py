"""The Triton fixtures for the adapter tests: one `tritonserver` per session (started by
`tests.servers.triton`), the models the adapter uploads to it, and its contract case.

`UploadModels` (a local store holding the demo model and a broken artifact) is shared with
the TorchServe fixtures: both adapters upload what they serve.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from pydantic import HttpUrl

from mpfn.adapters.base import Adapter, AdapterConfig
from mpfn.artifacts import fetch_cached, push_model
from mpfn.demo import demo_model_version
from mpfn.documents import ModelVersion, Pool
from mpfn.store import LocalStore
from tests.adapters.contract import ContractCase, fp32_request
from tests.adapters.servers_ort import DemoArtifact
from tests.servers.triton import MANAGEMENT_KEY, TritonServer, start_triton


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """One Triton server for the whole test session."""
    server = start_triton(tmp_path_factory.mktemp("triton"))
    try:
        yield server
    finally:
        server.proc.stop()


@dataclass(frozen=True)
class UploadModels:
    """Model documents whose artifacts live in a local store, and where to fetch them."""

    store: LocalStore
    cache_dir: Path
    demo: ModelVersion
    broken: ModelVersion  # its artifact is not an ONNX model: loading it fails

    def fetch(self) -> functools.partial[Path]:
        return functools.partial(fetch_cached, self.store, cache_dir=self.cache_dir)


def upload_models(root: Path, demo_artifact: DemoArtifact) -> UploadModels:
    store = LocalStore(root / "state")
    demo = demo_model_version(push_model(store, demo_artifact.path, name="demo", version="1"))
    broken_path = root / "broken.onnx"
    broken_path.write_bytes(b"this is not an ONNX model")
    broken_ref = push_model(store, broken_path, name="broken", version="1")
    broken = demo_model_version(broken_ref, name="broken")
    return UploadModels(store, root / "cache", demo, broken)


@pytest.fixture(scope="session")
def triton_models(
    tmp_path_factory: pytest.TempPathFactory, demo_artifact: DemoArtifact
) -> UploadModels:
    return upload_models(tmp_path_factory.mktemp("triton-models"), demo_artifact)


def triton_config(
    server: TritonServer,
    models: UploadModels,
    *,
    key: str | None = MANAGEMENT_KEY,
    **options: object,
) -> AdapterConfig:
    """The pool config the tests use: python-backend models (no onnxruntime backend here)."""
    pool = Pool(id="triton-pool", cloud="local", adapter="triton", endpoint=HttpUrl(server.url))
    return AdapterConfig(
        pool=pool,
        credentials={"management_key": key} if key else {},
        options={"backend": "python", "metrics_url": server.metrics_url, **options},
        artifacts=models.fetch(),
    )


@pytest.fixture(scope="session")
def triton_case(
    triton_server: TritonServer, triton_models: UploadModels, demo_artifact: DemoArtifact
) -> ContractCase:
    demo = triton_models.demo
    x = np.random.default_rng(13).standard_normal((3, 16)).astype(np.float32)
    bad = fp32_request(np.zeros((1, 15), dtype=np.float32))

    async def bad_request(adapter: Adapter) -> object:
        await adapter.load(demo)  # requests for a model that is not loaded get 503/404
        return await adapter.infer(demo, bad)

    async def backend_failure(adapter: Adapter) -> object:
        return await adapter.load(triton_models.broken)

    return ContractCase(
        kind="triton",
        config=triton_config(triton_server, triton_models),
        model=demo,
        key="demo:1",
        request=fp32_request(x),
        reference=demo_artifact.run,
        missing=demo_model_version(None, name="ghost"),
        bad_request=bad_request,
        backend_failure=backend_failure,
    )
