"""A real OCI registry on loopback: the CNCF distribution server (Debian package
`docker-registry`) with filesystem storage in a temporary directory."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.servers.ports import start_on_free_ports
from tests.servers.process import Proc, start, stopping

REGISTRY_BIN = "docker-registry"


@dataclass(frozen=True)
class RegistryServer:
    host: str  # 127.0.0.1:PORT
    root: Path  # filesystem storage root

    def blob_data(self, digest: str) -> Path:
        hexd = digest.split(":", 1)[1]
        return self.root / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


def registry_binary() -> str:
    binary = shutil.which(REGISTRY_BIN, path=f"{os.environ.get('PATH', '')}:/usr/bin")
    if binary is None:
        raise RuntimeError(
            "the OCI registry binary 'docker-registry' is not installed; "
            "install it with: sudo apt-get install -y docker-registry"
        )
    return binary


@contextlib.contextmanager
def registry_server(base: Path) -> Iterator[RegistryServer]:
    binary = registry_binary()

    def launch(ports: list[int]) -> Proc:
        config = base / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {base / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{ports[0]}\n  secret: mpfn-test-secret\n"
        )
        return start([binary, "serve", str(config)], port=ports[0], log_dir=base,
                     name="docker-registry", ready_url=f"http://127.0.0.1:{ports[0]}/v2/",
                     timeout=30.0)  # fmt: skip

    with stopping(start_on_free_ports(1, launch)) as proc:
        yield RegistryServer(f"127.0.0.1:{proc.port}", base / "data")
