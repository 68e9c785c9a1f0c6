"""Loading the registry snapshot: conditional GETs, stale-if-error, invalid documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpfn.demo import demo_model_version
from mpfn.functions.router.runtime import RouterRuntime
from mpfn.functions.router.settings import RouterSettings
from mpfn.routing.snapshot import SnapshotLoader
from mpfn.store import LocalStore, StoreUnavailable
from tests.router.conftest import make_pool, seed


def test_conditional_gets_reuse_unchanged_documents(store: LocalStore) -> None:
    seed(store, models=[demo_model_version()], pools=[make_pool("a", "http://127.0.0.1:1")])
    loader = SnapshotLoader(store)
    first = loader.load()
    assert loader.reads == 2
    assert [p.id for p in first.pools_for("demo", "v2") or ()] == ["a"]
    loader.load()
    assert loader.reads == 2  # nothing changed: every GET was answered "not modified"
    seed(store, pools=[make_pool("b", "http://127.0.0.1:2")])
    third = loader.load()
    assert loader.reads == 3
    assert [p.id for p in third.pools_for("demo", "v2") or ()] == ["a", "b"]
    store.delete("pools/a.json")
    assert [p.id for p in loader.load().pools] == ["b"]


def test_invalid_document_keeps_last_good_copy(store: LocalStore) -> None:
    seed(store, pools=[make_pool("a", "http://127.0.0.1:1")])
    loader = SnapshotLoader(store)
    loader.load()
    store.put("pools/a.json", b'{"id": "a", "cloud": "mars"}')
    store.put("pools/new.json", b"{not json")
    snap = loader.load()
    assert [p.id for p in snap.pools] == ["a"]
    assert str(snap.pools[0].endpoint).startswith("http://127.0.0.1:1")


def test_store_down_raises_for_the_caller(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = LocalStore(root)
    root.rmdir()
    with pytest.raises(StoreUnavailable):
        SnapshotLoader(store).load()


async def test_runtime_serves_last_snapshot_when_store_goes_down(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = LocalStore(root)
    seed(store, models=[demo_model_version()], pools=[make_pool("a", "http://127.0.0.1:1")])
    runtime = RouterRuntime(store, RouterSettings(instance_id="t"))
    assert await runtime.refresh()
    before = runtime.snapshot
    root.rename(tmp_path / "moved")
    assert not await runtime.refresh()
    assert runtime.snapshot is before and runtime.store_error
    (tmp_path / "moved").rename(root)
    assert await runtime.refresh()
    assert runtime.store_error is None


async def test_background_mode_flushes_on_stop(store: LocalStore) -> None:
    seed(store, models=[demo_model_version()])
    runtime = RouterRuntime(store, RouterSettings(instance_id="bg"))
    await runtime.start()
    assert runtime.background and runtime.snapshot.loaded
    runtime.usage.add("demo")
    await runtime.stop()
    keys = store.list("usage/demo/")
    assert runtime.usage.instance.startswith("bg-")
    assert len(keys) == 1 and keys[0].endswith(f"-{runtime.usage.instance}.1.json")
