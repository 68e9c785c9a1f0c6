"""Failure modes: missing bucket, refused credentials, unreachable store, invalid documents.

Each must surface as a one-line `StoreUnavailable` / `InvalidDocument`, and a
`CachedDocument` must keep serving its last good copy through them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import HttpUrl

from mpfn.documents import Pool
from mpfn.state import CachedDocument, Documents, InvalidDocument
from mpfn.store import Store, StoreUnavailable
from mpfn.store.gcs import GCSStore
from mpfn.store.s3 import S3Store
from tests.servers.fake_gcs import fake_gcs_server
from tests.servers.moto_s3 import moto_server
from tests.servers.ports import unused_port
from tests.store.conftest import GCSServer, S3Server

POOL = Pool(id="p1", cloud="local", endpoint=HttpUrl("http://127.0.0.1:9/"), capacity=3)


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.fixture(params=["moto", "seaweedfs"])
def s3_server(request: pytest.FixtureRequest) -> S3Server:
    server: S3Server = request.getfixturevalue(request.param)
    return server


def test_s3_missing_bucket(s3_server: S3Server) -> None:
    store = s3_server.store(f"missing-{uuid.uuid4().hex[:12]}")
    for call in (lambda: store.get("a.json"), lambda: store.put("a.json", b"x"), store.list):
        with pytest.raises(StoreUnavailable) as exc:
            call()
        assert _one_line(exc) == f"s3://{store.bucket}: bucket does not exist"


def test_gcs_missing_bucket(fake_gcs: GCSServer) -> None:
    store = fake_gcs.store(f"missing-{uuid.uuid4().hex[:12]}")
    for call in (lambda: store.put("a.json", b"x"), store.list):
        with pytest.raises(StoreUnavailable) as exc:
            call()
        assert _one_line(exc) == f"gs://{store.bucket_name}: bucket does not exist"


@pytest.mark.parametrize(
    ("key", "secret", "code"),
    [
        ("unknown-key", "whatever", "InvalidAccessKeyId"),
        (None, "wrong-secret", "SignatureDoesNotMatch"),
    ],
)
def test_s3_wrong_credentials(seaweedfs: S3Server, key: str | None, secret: str, code: str) -> None:
    store = seaweedfs.store(
        "mpfn-shared", "creds", access_key_id=key or seaweedfs.access_key, secret_access_key=secret
    )
    for call in (lambda: store.get("a.json"), lambda: store.put("a.json", b"x"), store.list):
        with pytest.raises(StoreUnavailable) as exc:
            call()
        message = _one_line(exc)
        assert message.startswith("s3://mpfn-shared: credentials refused")
        assert code in message


def _closed_endpoint() -> str:
    return f"http://127.0.0.1:{unused_port()}"


@pytest.mark.parametrize(
    "make",
    [
        lambda url: S3Store(
            "b", endpoint_url=url, region="us-east-1", access_key_id="k", secret_access_key="s"
        ),
        lambda url: GCSStore("b", endpoint=url, project="p"),
    ],
    ids=["s3", "gcs"],
)
def test_unreachable_store(make: Callable[[str], Store]) -> None:
    url = _closed_endpoint()
    store = make(url)
    for call in (
        lambda: store.get("a.json"),
        lambda: store.put("a.json", b"x", if_absent=True),
        lambda: store.delete("a.json"),
        store.list,
    ):
        with pytest.raises(StoreUnavailable) as exc:
            call()
        assert _one_line(exc).startswith(f"cannot reach {url}")


def test_cached_document_survives_invalid_document(store: Store) -> None:
    Documents(store).create(POOL.key, POOL)
    cached = CachedDocument(store, POOL.key, Pool, ttl=0)
    assert cached.get() == POOL
    store.put(POOL.key, POOL.model_dump_json().replace('"capacity":3', '"capacity":-1').encode())
    assert cached.get() == POOL
    assert isinstance(cached.last_error, InvalidDocument)
    assert "capacity" in str(cached.last_error)
    with pytest.raises(InvalidDocument, match="capacity"):
        Documents(store).get(POOL.key, Pool)
    fixed = POOL.model_copy(update={"capacity": 7})
    Documents(store).replace(POOL.key, fixed)
    assert cached.get() == fixed
    assert cached.last_error is None


def _cached_through_outage(store: Store, stop: Callable[[], object]) -> None:
    Documents(store).create(POOL.key, POOL)
    cached = CachedDocument(store, POOL.key, Pool, ttl=0)
    assert cached.get() == POOL
    stop()
    assert cached.get() == POOL
    assert isinstance(cached.last_error, StoreUnavailable)
    assert str(cached.last_error).startswith("cannot reach")


def test_cached_document_survives_s3_outage(server_logs: Path) -> None:
    with moto_server(server_logs, "moto-outage") as proc:
        server = S3Server("moto", proc, "k", "s")
        store = server.store(server.new_bucket())
        _cached_through_outage(store, proc.stop)


def test_cached_document_survives_gcs_outage(server_logs: Path) -> None:
    with fake_gcs_server(server_logs, "gcs-outage") as proc:
        server = GCSServer(proc)
        store = server.store(server.new_bucket())
        _cached_through_outage(store, proc.stop)
