"""The replication protocol on local stores: writes reach every replica, a replica never
goes back to an older version, a replica that was away is caught up (deletes included),
usage flows from the sites into the primary, and what does not replicate stays."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mpfn.documents import ModelVersion
from mpfn.registry import Registry
from mpfn.replication import ReplicatedStore, Site, Sites, open_state, sync_replica, write_sites
from mpfn.replication.catchup import catch_up, copy_order
from mpfn.replication.copykey import sync_key
from mpfn.replication.fanout import behind_sites
from mpfn.state import Documents
from mpfn.store import KeyNotFound, LocalStore
from tests.factories import pool
from tests.replication.conftest import CuttableStore


def stores(tmp_path: Path) -> tuple[LocalStore, CuttableStore, CuttableStore]:
    return (
        LocalStore(tmp_path / "primary"),
        CuttableStore(tmp_path / "a"),
        CuttableStore(tmp_path / "b"),
    )


def test_sync_key_copies_updates_deletes_and_says_same(tmp_path: Path) -> None:
    primary, replica, _ = stores(tmp_path)
    primary.put("pools/p.json", b"1")
    assert sync_key(primary, replica, "pools/p.json") == "copied"
    assert sync_key(primary, replica, "pools/p.json") == "same"
    primary.put("pools/p.json", b"2")
    assert sync_key(primary, replica, "pools/p.json") == "copied"
    assert replica.get("pools/p.json").body == b"2"  # type: ignore[union-attr]
    primary.delete("pools/p.json")
    assert sync_key(primary, replica, "pools/p.json") == "deleted"
    with pytest.raises(KeyNotFound):
        replica.get("pools/p.json")


def test_writes_reach_every_replica_and_local_keys_stay(tmp_path: Path) -> None:
    primary, a, b = stores(tmp_path)
    store = ReplicatedStore(primary, {"a": a, "b": b})
    registry = Registry(store)
    registry.put_pool(pool("p1", "http://p1.invalid:8000", site="a"))
    registry.add_model(ModelVersion(name="m", version="1"))
    store.put("usage/m/2026/12/06/00/00-w-0", b"{}")
    store.put("plans/warm.json", b"{}")
    for replica in (a, b):
        assert [p.id for p in Registry(replica).pools()] == ["p1"]
        assert [m.name for m in Registry(replica).models()] == ["m"]
        assert replica.list("usage/") == [] and replica.list("plans/") == []
    registry.remove_pool("p1")
    assert Registry(a).pools() == [] and Registry(b).pools() == []


def test_concurrent_writers_leave_every_replica_at_the_primarys_version(tmp_path: Path) -> None:
    primary, a, b = stores(tmp_path)
    store = ReplicatedStore(primary, {"a": a, "b": b})
    docs = Documents(store)

    def writer(n: int) -> None:
        for i in range(25):
            docs.upsert("config/counter.json", pool(f"w{n}-{i}", "http://x.invalid:1"))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = primary.get("config/counter.json").body  # type: ignore[union-attr]
    assert a.get("config/counter.json").body == final  # type: ignore[union-attr]
    assert b.get("config/counter.json").body == final  # type: ignore[union-attr]


def test_a_site_that_was_away_is_marked_behind_and_caught_up(tmp_path: Path) -> None:
    primary, a, b = stores(tmp_path)
    Registry(ReplicatedStore(primary, {"a": a, "b": b})).put_pool(pool("gone", None))
    a.cut = True
    store = ReplicatedStore(primary, {"a": a, "b": b})
    registry = Registry(store)
    registry.add_model(ModelVersion(name="during", version="1"))  # the write succeeds
    assert behind_sites(primary) == {"a"}
    registry.remove_pool("gone")
    registry.add_model(ModelVersion(name="later", version="1"))  # a is skipped, not retried
    assert {m.name for m in Registry(b).models()} == {"during", "later"}

    a.cut = False
    report = sync_replica(primary, a, "a")
    assert report.ok and report.copied == 2 and report.deleted == 1
    assert {m.name for m in Registry(a).models()} == {"during", "later"}
    assert Registry(a).pools() == []
    assert behind_sites(primary) == set()
    assert sync_replica(primary, a, "a").copied == 0  # idempotent


def test_usage_moves_from_the_sites_into_the_primary_once(tmp_path: Path) -> None:
    primary, a, b = stores(tmp_path)
    a.put("usage/m/2026/12/06/00/00-ra-0", b'{"count": 3}')
    b.put("usage/m/2026/12/06/00/00-rb-0", b'{"count": 4}')
    store = ReplicatedStore(primary, {"a": a, "b": b})
    assert catch_up(store) == []
    assert primary.list("usage/") == [
        "usage/m/2026/12/06/00/00-ra-0",
        "usage/m/2026/12/06/00/00-rb-0",
    ]
    assert a.list("usage/") == [] and b.list("usage/") == []
    assert catch_up(store) == []  # nothing twice
    assert len(primary.list("usage/")) == 2


def test_catch_up_reports_a_site_that_is_still_away(tmp_path: Path) -> None:
    primary, a, b = stores(tmp_path)
    a.cut = True
    errors = catch_up(ReplicatedStore(primary, {"a": a, "b": b}))
    assert len(errors) == 1 and errors[0].startswith("site a: ") and "link cut" in errors[0]


def test_blobs_first_deletions_last() -> None:
    order = copy_order(
        ["models/m/1.json", "oci/blobs/sha256/ab", "usage/x", "oci/index.json"],
        ["pools/old.json", "models/m/1.json"],
    )
    assert order == ["oci/blobs/sha256/ab", "models/m/1.json", "oci/index.json", "pools/old.json"]


def test_open_state_fans_out_only_from_a_primary_with_sites(tmp_path: Path) -> None:
    primary = LocalStore(tmp_path / "primary")
    assert isinstance(open_state(primary.url), LocalStore)
    write_sites(primary, Sites(sites={
        "a": Site(state=str(tmp_path / "a")), "main": Site(state=primary.url)}))  # fmt: skip
    opened = open_state(primary.url)
    assert isinstance(opened, ReplicatedStore)
    assert set(opened.replicas) == {"a"}  # the primary is not its own replica
    assert isinstance(open_state(str(tmp_path / "a")), LocalStore)  # replicas hold no sites
