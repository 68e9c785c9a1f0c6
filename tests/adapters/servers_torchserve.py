"""A real TorchServe for tests: `torchserve --foreground` on free 127.0.0.1 ports.

Inference, management, metrics and both gRPC listeners are bound to loopback; token
authorization is off and the model API on (`--disable-token-auth --enable-model-api`),
no config snapshots (`--ncs`); the model store is a temporary directory the adapter writes
its `.mar` archives into. TorchServe needs Java 17 and takes seconds to start, so one
server serves the whole test session (`start_torchserve(..., token_auth=True)` starts
another with TorchServe's default token authorization, for the test of the keys).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from procs import Proc, free_port, start
from pydantic import HttpUrl

from mpfn.adapters.base import Adapter, AdapterConfig
from mpfn.demo import demo_model_version
from mpfn.documents import Pool

from .contract import ContractCase, fp32_request
from .servers_ort import DemoArtifact
from .servers_triton import UploadModels, upload_models


@dataclass(frozen=True)
class TorchServeServer:
    proc: Proc  # .url is the inference API
    management_port: int
    metrics_port: int
    model_store: Path

    @property
    def inference_url(self) -> str:
        return self.proc.url

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"


def torchserve_binary() -> str:
    binary = Path(sys.executable).with_name("torchserve")
    if binary.exists():
        return str(binary)
    found = shutil.which("torchserve")
    if found is None:
        raise RuntimeError("torchserve is not installed: run scripts/install")
    return found


def start_torchserve(workdir: Path, *, token_auth: bool = False) -> TorchServeServer:
    """Start TorchServe in `workdir`; with `token_auth` it writes `key_file.json` there."""
    model_store = workdir / "model-store"
    model_store.mkdir(parents=True)
    tmp = workdir / "tmp"  # pid file, extracted archives, worker sockets: this server's own
    tmp.mkdir()
    ports = [free_port() for _ in range(6)]
    inference, management, metrics, grpc_inference, grpc_management, worker = ports
    config = workdir / "config.properties"
    config.write_text(
        "\n".join(
            [
                f"inference_address=http://127.0.0.1:{inference}",
                f"management_address=http://127.0.0.1:{management}",
                f"metrics_address=http://127.0.0.1:{metrics}",
                "grpc_inference_address=127.0.0.1",
                f"grpc_inference_port={grpc_inference}",
                "grpc_management_address=127.0.0.1",
                f"grpc_management_port={grpc_management}",
                f"model_store={model_store}",
                f"initial_worker_port={worker}",
                "default_workers_per_model=1",
                "number_of_netty_threads=2",
                "netty_client_threads=2",
                "install_py_dep_per_model=false",
                "disable_system_metrics=true",
                "metrics_mode=prometheus",
                "default_response_timeout=60",
                "unregister_model_timeout=30",
                "",
            ]
        )
    )
    argv = [
        torchserve_binary(),
        "--start",
        "--foreground",
        "--ncs",
        *([] if token_auth else ["--disable-token-auth"]),
        "--enable-model-api",
        "--ts-config",
        str(config),
        "--model-store",
        str(model_store),
    ]
    logs = workdir / "logs"
    proc = start(
        argv,
        port=inference,
        log_dir=logs,
        name="torchserve",
        ready_url=f"http://127.0.0.1:{inference}/ping",
        env={
            "LOG_LOCATION": str(logs),
            "METRICS_LOCATION": str(logs),
            "TMPDIR": str(tmp),
            "TEMP": str(tmp),
        },
        cwd=workdir,
        timeout=180,
    )
    return TorchServeServer(proc, management, metrics, model_store)


@pytest.fixture(scope="session")
def torchserve_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TorchServeServer]:
    """One TorchServe for the whole test session."""
    server = start_torchserve(tmp_path_factory.mktemp("torchserve"))
    try:
        yield server
    finally:
        stop_torchserve(server)


def stop_torchserve(server: TorchServeServer, timeout: float = 30.0) -> None:
    """Stop the launcher, then wait for its Java frontend and workers (same process group)."""
    pgid = server.proc.popen.pid
    server.proc.stop(timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


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
