"""moto's server mode (`python -m moto.server`) on loopback: S3, IAM, Lambda, STS and the
other AWS APIs the store, warmer, deploy and fault tests talk to. It accepts any keys."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.servers.ports import start_on_free_ports
from tests.servers.process import PYTHON, Proc, start, stopping


def start_moto(log_dir: Path, name: str = "moto") -> Proc:
    def launch(ports: list[int]) -> Proc:
        argv = [PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(ports[0])]
        return start(argv, port=ports[0], log_dir=log_dir, name=name,
                     ready_url=f"http://127.0.0.1:{ports[0]}/moto-api/")  # fmt: skip

    return start_on_free_ports(1, launch)


@contextlib.contextmanager
def moto_server(log_dir: Path, name: str = "moto") -> Iterator[Proc]:
    with stopping(start_moto(log_dir, name)) as proc:
        yield proc
