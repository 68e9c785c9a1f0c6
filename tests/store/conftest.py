"""Real object-store servers on loopback for the store tests.

Session-scoped: a moto S3 server, a SeaweedFS cluster with an S3 gateway that checks
signatures, and fake-gcs-server, each on free 127.0.0.1 ports with data in a temp dir.
Every test gets a fresh bucket (moto, fake-gcs) or a fresh prefix (SeaweedFS), so tests
are independent. The `store` fixture runs a test once per backend.
"""

from __future__ import annotations

import json
import sys
import sysconfig
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from procs import Proc, fake_gcs_server, free_port, running, start, wait_until

from mpfn.store import LocalStore, Store
from mpfn.store.gcs import GCSStore
from mpfn.store.s3 import S3Store

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


def _scripts_bin(name: str) -> Path:
    path = Path(sysconfig.get_path("scripts")) / name
    if not path.exists():
        path = Path(sys.executable).parent / name
    return path


def _unique_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@pytest.fixture(scope="session")
def store_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("store-logs")


@pytest.fixture(scope="session")
def moto(store_logs: Path) -> Iterator[S3Server]:
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with running(argv, port=port, log_dir=store_logs, name="moto") as proc:
        yield S3Server("moto", proc, "mpfn-moto-key", "mpfn-moto-secret")


SEAWEED_KEY, SEAWEED_SECRET = "mpfnseaweedkey", "mpfn-seaweed-secret-0123456789"


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory, store_logs: Path) -> Iterator[S3Server]:
    root = tmp_path_factory.mktemp("seaweedfs")
    identities = root / "s3.json"
    credentials = {"accessKey": SEAWEED_KEY, "secretKey": SEAWEED_SECRET}
    identity = {
        "name": "mpfn",
        "credentials": [credentials],
        "actions": ["Admin", "Read", "Write", "List"],
    }
    identities.write_text(json.dumps({"identities": [identity]}))
    (root / "data").mkdir()
    m, mg, v, vg, f, fg, s, sg = _unique_ports(8)
    argv = [
        str(_scripts_bin("weed")), "server",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={root / 'data'}",
        f"-master.port={m}", f"-master.port.grpc={mg}", "-master.telemetry=false",
        f"-volume.port={v}", f"-volume.port.grpc={vg}", "-volume.max=0",
        "-volume.preStopSeconds=0",
        "-filer", f"-filer.port={f}", f"-filer.port.grpc={fg}",
        "-s3", f"-s3.port={s}", f"-s3.port.grpc={sg}", f"-s3.config={identities}",
        "-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.autoCreateBucket=false",
    ]  # fmt: skip
    proc = start(argv, port=s, log_dir=store_logs, name="seaweedfs", cwd=root)
    try:
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
    finally:
        proc.stop(timeout=2)  # its graceful shutdown waits on peers; the data is throwaway
        for port in (m, mg, v, vg, f, fg, s, sg):  # unix sockets it leaves in /tmp
            for sock in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def fake_gcs(store_logs: Path) -> Iterator[GCSServer]:
    with fake_gcs_server(store_logs) as proc:
        yield GCSServer(proc)


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
