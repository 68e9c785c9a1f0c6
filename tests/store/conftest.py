"""Real object-store servers on loopback for the store tests.

Session-scoped: a moto S3 server, a SeaweedFS cluster with an S3 gateway that checks
signatures, and fake-gcs-server (all started by `tests.servers`) on loopback.
Every test gets a fresh bucket (moto, fake-gcs) or a fresh prefix (SeaweedFS), so tests
are independent. The `store` fixture runs a test once per backend.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mpfn.store import LocalStore, Store
from mpfn.store.gcs import GCSStore
from mpfn.store.s3 import S3Store
from tests.servers.process import Proc, wait_until
from tests.servers.seaweedfs import seaweedfs_server

REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    """An S3-compatible server and the credentials it accepts."""

    name: str
    proc: Proc
    access_key: str
    secret_key: str

    @property
    def endpoint(self) -> str:
        return self.proc.url

    def store(self, bucket: str, prefix: str = "", **options: Any) -> S3Store:
        options.setdefault("access_key_id", self.access_key)
        options.setdefault("secret_access_key", self.secret_key)
        return S3Store(bucket, prefix, endpoint_url=self.endpoint, region=REGION, **options)

    def new_bucket(self) -> str:
        bucket = f"mpfn-{uuid.uuid4().hex[:16]}"
        self.store(bucket).client.create_bucket(Bucket=bucket)
        return bucket


@dataclass(frozen=True)
class GCSServer:
    proc: Proc

    @property
    def endpoint(self) -> str:
        return self.proc.url

    def store(self, bucket: str, prefix: str = "") -> GCSStore:
        return GCSStore(bucket, prefix, endpoint=self.endpoint, project="mpfn-test")

    def new_bucket(self) -> str:
        bucket = f"mpfn-{uuid.uuid4().hex[:16]}"
        self.store(bucket).client.create_bucket(bucket)
        return bucket


@pytest.fixture(scope="session")
def moto(moto_server: Proc) -> S3Server:
    return S3Server("moto", moto_server, "mpfn-moto-key", "mpfn-moto-secret")


SEAWEED_KEY, SEAWEED_SECRET = "mpfnseaweedkey", "mpfn-seaweed-secret-0123456789"


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory, server_logs: Path) -> Iterator[S3Server]:
    root = tmp_path_factory.mktemp("seaweedfs")
    with seaweedfs_server(root, server_logs, SEAWEED_KEY, SEAWEED_SECRET) as proc:
        server = S3Server("seaweedfs", proc, SEAWEED_KEY, SEAWEED_SECRET)
        bucket = "mpfn-shared"

        def bucket_ready() -> bool:
            client = server.store(bucket).client
            try:
                client.create_bucket(Bucket=bucket)
            except client.exceptions.BucketAlreadyOwnedByYou:
                pass
            except Exception:
                return False
            return True

        wait_until(bucket_ready, 60, "seaweedfs bucket", proc)
        yield server


@pytest.fixture(scope="session")
def fake_gcs(fake_gcs_server: Proc) -> GCSServer:
    return GCSServer(fake_gcs_server)


BACKENDS = ["local", "s3-moto", "s3-seaweedfs", "gcs-fake"]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """One fresh, empty store per test, on each backend in turn."""
    kind: str = request.param
    if kind == "local":
        return LocalStore(tmp_path / "state")
    if kind == "s3-moto":
        moto: S3Server = request.getfixturevalue("moto")
        return moto.store(moto.new_bucket())
    if kind == "s3-seaweedfs":
        seaweed: S3Server = request.getfixturevalue("seaweedfs")
        return seaweed.store("mpfn-shared", f"t/{uuid.uuid4().hex[:12]}")
    gcs: GCSServer = request.getfixturevalue("fake_gcs")
    return gcs.store(gcs.new_bucket(), "mpfn/state")
