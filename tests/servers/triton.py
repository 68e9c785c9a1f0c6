"""A real Triton Inference Server: the `tritonserver` that nvidia-pytriton bundles.

It runs on CPU with only the python backend. Its python-backend stub is built against numpy
1.x, so Triton runs model code in its own Python environment (`triton-env`, made by
`scripts/install`: nvidia-pytriton + onnxruntime + numpy<2), found as
`$MPFN_TRITON_ENV` or `<sys.prefix>/triton-env`. The server listens on free 127.0.0.1 ports
(HTTP and metrics; gRPC off), in explicit model-control mode, with the repository,
statistics and model-config APIs restricted to a management key.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from tests.servers.ports import start_on_free_ports
from tests.servers.process import Proc, start

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

    def launch(ports: list[int]) -> TritonServer:
        http_port, metrics_port = ports
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

    return start_on_free_ports(2, launch)
