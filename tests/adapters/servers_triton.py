"""A real Triton Inference Server for tests: the `tritonserver` that nvidia-pytriton bundles.

It runs on CPU with only the python backend. Its python-backend stub is built against numpy
1.x, so Triton runs model code in its own Python environment (`triton-env`, made by
`scripts/install`: nvidia-pytriton + onnxruntime + numpy<2), found as
`$MPFN_TRITON_ENV` or `<sys.prefix>/triton-env`. The server listens on free 127.0.0.1 ports
(HTTP and metrics; gRPC off), in explicit model-control mode, with the repository,
statistics and model-config APIs restricted to a management key.

`UploadModels` (a local store holding the demo model and a broken artifact) is shared with
the TorchServe fixtures: both adapters upload what they serve.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from procs import Proc, free_port, start
from pydantic import HttpUrl

from mpfn.adapters.base import Adapter, AdapterConfig
from mpfn.artifacts import fetch_cached, push_model
from mpfn.demo import demo_model_version
from mpfn.documents import ModelVersion, Pool
from mpfn.store import LocalStore

from .contract import ContractCase, fp32_request
from .servers_ort import DemoArtifact

MANAGEMENT_HEADER = "triton-management-key"
MANAGEMENT_KEY = "test-management-key"


@dataclass(frozen=True)
class TritonInstall:
    env: Path  # the Python environment the python backend runs models in
    dist: Path  # pytriton/tritonserver: bin/, backends/, python_backend_stubs/
    libs: Path  # nvidia_pytriton.libs

    @property
    def binary(self) -> Path:
        return self.dist / "bin" / "tritonserver"


@dataclass(frozen=True)
class TritonServer:
    proc: Proc
    metrics_port: int
    repository: Path

    @property
    def url(self) -> str:
        return self.proc.url

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"


def find_triton() -> TritonInstall:
    env = Path(os.environ.get("MPFN_TRITON_ENV") or Path(sys.prefix) / "triton-env")
    found = sorted(env.glob("lib/python3*/site-packages/pytriton/tritonserver"))
    if not found:
        raise RuntimeError(
            f"no tritonserver in {env}: run scripts/install (it creates the Triton "
            "environment with nvidia-pytriton, onnxruntime and numpy<2)"
        )
    dist = found[0]
    return TritonInstall(env=env, dist=dist, libs=dist.parent.parent / "nvidia_pytriton.libs")


def _backends(install: TritonInstall, into: Path) -> Path:
    """A backend directory: the python backend plus the stub for the env's Python."""
    python_dir = into / "python"
    shutil.copytree(install.dist / "backends" / "python", python_dir)
    version = next(install.env.glob("lib/python3*")).name.removeprefix("python")
    stub = install.dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    shutil.copy2(stub, python_dir / "triton_python_backend_stub")
    return into


def start_triton(workdir: Path, *, restricted: bool = True) -> TritonServer:
    install = find_triton()
    repository = workdir / "repository"
    repository.mkdir(parents=True)
    backends = _backends(install, workdir / "backends")
    http_port, metrics_port = free_port(), free_port()
    argv = [
        str(install.binary),
        f"--model-repository={repository}",
        "--model-control-mode=explicit",
        f"--backend-directory={backends}",
        "--http-address=127.0.0.1",
        f"--http-port={http_port}",
        "--allow-grpc=false",
        "--metrics-address=127.0.0.1",
        f"--metrics-port={metrics_port}",
        "--allow-gpu-metrics=false",
        "--strict-readiness=false",
        "--exit-timeout-secs=5",
        "--log-verbose=0",
    ]
    if restricted:
        argv.append(
            "--http-restricted-api=model-repository,statistics,model-config:"
            f"{MANAGEMENT_HEADER}={MANAGEMENT_KEY}"
        )
    # The python backend stub embeds libpython: prefer the one the env's Python was built
    # with; it finds the env (numpy, onnxruntime) through the `python` first on PATH.
    lib_path = [str(install.libs)]
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        lib_path.append(str(libdir))
    env = {
        "LD_LIBRARY_PATH": ":".join([*lib_path, os.environ.get("LD_LIBRARY_PATH", "")]),
        "PATH": f"{install.env / 'bin'}:{os.environ.get('PATH', '')}",
    }
    proc = start(
        argv,
        port=http_port,
        log_dir=workdir / "logs",
        name="tritonserver",
        ready_url=f"http://127.0.0.1:{http_port}/v2/health/live",
        env=env,
        timeout=120,
    )
    return TritonServer(proc=proc, metrics_port=metrics_port, repository=repository)


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
