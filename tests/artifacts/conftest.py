"""Fixtures for artifact tests: model files, a local store, and a real OCI registry.

The registry is the CNCF distribution server (Debian package `docker-registry`) running
on a free 127.0.0.1 port with filesystem storage in a temp directory.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from oci_registry import RegistryServer
from procs import free_port, running

from mpfn.store.base import Blob
from mpfn.store.local import LocalStore

REGISTRY_BIN = "docker-registry"


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    binary = shutil.which(REGISTRY_BIN, path=f"{os.environ.get('PATH', '')}:/usr/bin")
    if binary is None:
        pytest.fail(
            "the OCI registry binary 'docker-registry' is not installed; "
            "install it with: sudo apt-get install -y docker-registry",
            pytrace=False,
        )
    base = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = base / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {base / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: mpfn-test-secret\n"
    )
    with running(
        [binary, "serve", str(config)],
        port=port,
        log_dir=base,
        name="docker-registry",
        ready_url=f"http://127.0.0.1:{port}/v2/",
        timeout=30.0,
    ):
        yield RegistryServer(f"127.0.0.1:{port}", base / "data")


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / ".mpfn")


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    """A 2.5 MiB file of random bytes (spans several read chunks)."""
    path = tmp_path / "src" / "model.onnx"
    path.parent.mkdir()
    path.write_bytes(os.urandom(2 * 1024 * 1024 + 512 * 1024))
    return path


class PassThroughStore:
    """Delegates to a LocalStore without being one, to exercise the generic Store path
    that S3 and GCS stores take (whole-object put/get with preconditions)."""

    def __init__(self, inner: LocalStore) -> None:
        self.inner = inner
        self.url = inner.url

    def get(self, key: str, *, if_none_match: str | None = None) -> Blob | None:
        return self.inner.get(key, if_none_match=if_none_match)

    def put(
        self, key: str, body: bytes, *, if_match: str | None = None, if_absent: bool = False
    ) -> str:
        return self.inner.put(key, body, if_match=if_match, if_absent=if_absent)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        self.inner.delete(key, if_match=if_match)

    def list(self, prefix: str = "") -> list[str]:
        return self.inner.list(prefix)


@pytest.fixture
def generic_store(store: LocalStore) -> PassThroughStore:
    return PassThroughStore(store)
