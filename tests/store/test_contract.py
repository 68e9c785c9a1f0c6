"""The `Store` contract, checked against every backend: local, S3 (moto, SeaweedFS), GCS."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from mpfn.store import KeyNotFound, PreconditionFailed, Store
from tests.store.conftest import S3Server


def test_put_get_roundtrip(store: Store) -> None:
    etag = store.put("models/demo/1.json", b'{"a": 1}')
    blob = store.get("models/demo/1.json")
    assert blob is not None
    assert blob.body == b'{"a": 1}'
    assert blob.etag == etag
    assert '"' not in etag and etag


def test_overwrite_changes_etag(store: Store) -> None:
    first = store.put("k.json", b"one")
    second = store.put("k.json", b"two")
    assert first != second
    blob = store.get("k.json")
    assert blob is not None and (blob.body, blob.etag) == (b"two", second)


def test_missing_key(store: Store) -> None:
    with pytest.raises(KeyNotFound):
        store.get("nope/missing.json")
    with pytest.raises(KeyNotFound):
        store.delete("nope/missing.json")


def test_conditional_get(store: Store) -> None:
    etag = store.put("pools/a.json", b"v1")
    assert store.get("pools/a.json", if_none_match=etag) is None
    new = store.put("pools/a.json", b"v2")
    blob = store.get("pools/a.json", if_none_match=etag)
    assert blob is not None and (blob.body, blob.etag) == (b"v2", new)
    assert store.get("pools/a.json", if_none_match=new) is None


def test_if_match(store: Store) -> None:
    old = store.put("doc.json", b"v1")
    new = store.put("doc.json", b"v2", if_match=old)
    with pytest.raises(PreconditionFailed):
        store.put("doc.json", b"v3", if_match=old)
    blob = store.get("doc.json")
    assert blob is not None and (blob.body, blob.etag) == (b"v2", new)


def test_if_match_on_missing_key_fails(store: Store) -> None:
    etag = store.put("gone.json", b"x")
    store.delete("gone.json")
    with pytest.raises((PreconditionFailed, KeyNotFound)):
        store.put("gone.json", b"y", if_match=etag)
    with pytest.raises(KeyNotFound):
        store.get("gone.json")


def test_if_absent(store: Store) -> None:
    store.put("new.json", b"first", if_absent=True)
    with pytest.raises(PreconditionFailed):
        store.put("new.json", b"second", if_absent=True)
    blob = store.get("new.json")
    assert blob is not None and blob.body == b"first"


def test_if_absent_race_has_one_winner(store: Store) -> None:
    def create(i: int) -> bool:
        try:
            store.put("race.json", str(i).encode(), if_absent=True)
        except PreconditionFailed:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(create, range(8)))
    assert results.count(True) == 1
    blob = store.get("race.json")
    assert blob is not None and blob.body == str(results.index(True)).encode()


def test_delete(store: Store) -> None:
    store.put("a/b.json", b"x")
    store.delete("a/b.json")
    with pytest.raises(KeyNotFound):
        store.get("a/b.json")
    assert store.list() == []


def test_delete_with_stale_etag_fails(store: Store) -> None:
    old = store.put("d.json", b"v1")
    new = store.put("d.json", b"v2")
    with pytest.raises(PreconditionFailed):
        store.delete("d.json", if_match=old)
    blob = store.get("d.json")
    assert blob is not None and blob.body == b"v2"
    store.delete("d.json", if_match=new)
    with pytest.raises(KeyNotFound):
        store.get("d.json")


def test_list_by_prefix(store: Store) -> None:
    keys = [
        "models/demo/1.json",
        "models/demo/2.json",
        "models/other/1.json",
        "models/deep/a/b/c.json",
        "pools/p1.json",
        "policies/default.json",
    ]
    for key in keys:
        store.put(key, b"{}")
    assert store.list() == sorted(keys)
    assert store.list("models/") == sorted(k for k in keys if k.startswith("models/"))
    assert store.list("models/demo/") == ["models/demo/1.json", "models/demo/2.json"]
    assert store.list("models/de") == [
        "models/deep/a/b/c.json",
        "models/demo/1.json",
        "models/demo/2.json",
    ]
    assert store.list("pools/p1.json") == ["pools/p1.json"]
    assert store.list("nothing/") == []


@pytest.mark.parametrize(
    "key", ["../escape.json", "a/../b.json", "/abs.json", "a//b.json", "./a.json", "", "a\\b"]
)
def test_key_validation(store: Store, key: str) -> None:
    with pytest.raises(ValueError):
        store.get(key)
    with pytest.raises(ValueError):
        store.put(key, b"x")
    with pytest.raises(ValueError):
        store.delete(key)


def test_list_paginates_past_1000(moto: S3Server) -> None:
    # Only S3 pages at 1000 keys per call (on moto, cheap to fill); the others page alike.
    store = moto.store(moto.new_bucket())
    n = 1005
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: store.put(f"usage/m/{i:05d}.json", b"{}"), range(n)))
    store.put("usage-other.json", b"{}")
    keys = store.list("usage/")
    assert len(keys) == n
    assert keys == [f"usage/m/{i:05d}.json" for i in range(n)]
