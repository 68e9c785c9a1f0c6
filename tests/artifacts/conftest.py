"""Fixtures for artifact tests: model files, a local store, and a real OCI registry.

The registry is the CNCF distribution server (Debian package `docker-registry`), started
by `tests.servers.oci_registry` with filesystem storage in a temp directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpfn.store.local import LocalStore
from tests.servers.oci_registry import RegistryServer, registry_binary, registry_server
from tests.store.passthrough import PassThrough


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    try:
        registry_binary()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)
    with registry_server(tmp_path_factory.mktemp("registry")) as server:
        yield server


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


class PassThroughStore(PassThrough):
    """Delegates to a LocalStore without being one, to exercise the generic Store path
    that S3 and GCS stores take (whole-object put/get with preconditions)."""


@pytest.fixture
def generic_store(store: LocalStore) -> PassThroughStore:
    return PassThroughStore(store)
