"""A real TorchServe: `torchserve --foreground` on free 127.0.0.1 ports.

Inference, management, metrics and both gRPC listeners are bound to loopback; token
authorization is off and the model API on (`--disable-token-auth --enable-model-api`),
no config snapshots (`--ncs`); the model store is a temporary directory the adapter writes
its `.mar` archives into. TorchServe needs Java 17 and takes seconds to start, so one
server serves the whole test session; `start_torchserve(..., token_auth=True)` starts
one with TorchServe's default token authorization.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.servers.ports import start_on_free_ports
from tests.servers.process import Proc, start


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

    def launch(ports: list[int]) -> TorchServeServer:
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

    return start_on_free_ports(6, launch)


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
