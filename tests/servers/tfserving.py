"""Start and stop the TF Serving stand-in (`python -m tests.servers.tfserving_standin`,
NOT TensorFlow Serving): its REST API and its gRPC model service on loopback ports."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.servers.ports import start_on_free_ports
from tests.servers.process import PYTHON, ROOT, Proc, start, stopping


@dataclass(frozen=True)
class TFServingProc:
    proc: Proc  # .url is the REST API
    grpc_port: int


@contextlib.contextmanager
def tfserving_standin(log_dir: Path) -> Iterator[TFServingProc]:
    def launch(ports: list[int]) -> TFServingProc:
        rest, grpc = ports
        argv = [
            PYTHON, "-m", "tests.servers.tfserving_standin",
            "--host", "127.0.0.1", "--port", str(grpc), "--rest_api_port", str(rest),
        ]  # fmt: skip
        proc = start(argv, port=rest, log_dir=log_dir, name="tfserving-standin", cwd=ROOT,
                     ready_url=f"http://127.0.0.1:{rest}/v1/models/none")  # fmt: skip
        return TFServingProc(proc, grpc)

    server = start_on_free_ports(2, launch)
    with stopping(server.proc):
        yield server
