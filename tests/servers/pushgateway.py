"""The Prometheus Pushgateway (Debian package `prometheus-pushgateway`) on loopback, for the
router's and the warmer's metric pushes."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.servers.ports import start_on_free_ports
from tests.servers.process import Proc, start, stopping


def pushgateway_binary() -> str:
    binary = shutil.which("prometheus-pushgateway", path=f"{os.environ.get('PATH', '')}:/usr/bin")
    if binary is None:
        raise RuntimeError(
            "prometheus-pushgateway is not installed; install it with: "
            "sudo apt-get install -y prometheus-pushgateway"
        )
    return binary


@contextlib.contextmanager
def pushgateway_server(base: Path) -> Iterator[Proc]:
    binary = pushgateway_binary()

    def launch(ports: list[int]) -> Proc:
        argv = [
            binary,
            f"--web.listen-address=127.0.0.1:{ports[0]}",
            f"--persistence.file={base / 'pushgateway.data'}",
            "--log.level=warn",
        ]
        return start(argv, port=ports[0], log_dir=base, name="pushgateway",
                     ready_url=f"http://127.0.0.1:{ports[0]}/-/ready", timeout=30.0)  # fmt: skip

    with stopping(start_on_free_ports(1, launch)) as proc:
        yield proc


def gateway_value(url: str, name: str, **labels: str) -> float | None:
    """The value of sample `name` with `labels` the gateway at `url` exposes, if any."""
    text = httpx.get(f"{url}/metrics", timeout=5.0).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None
