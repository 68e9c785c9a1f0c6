"""Concurrent read-modify-write through `Documents.update` never loses an increment."""

from __future__ import annotations

import threading
import time

from pydantic import HttpUrl

from mpfn.documents import Pool
from mpfn.state import Documents
from mpfn.store import Store

WRITERS = 8
INCREMENTS = 25


def test_concurrent_increments_are_all_kept(store: Store, request: object) -> None:
    docs = Documents(store)
    pool = Pool(id="p1", cloud="local", endpoint=HttpUrl("http://127.0.0.1:1"), capacity=0)
    docs.create(pool.key, pool)
    start = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def bump(current: Pool | None) -> Pool:
        assert current is not None
        return current.model_copy(update={"capacity": current.capacity + 1})

    def writer() -> None:
        try:
            start.wait()
            for _ in range(INCREMENTS):
                docs.update(pool.key, Pool, bump)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(WRITERS)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    print(f"\nlost-update {store.url.split(':')[0]} {WRITERS}x{INCREMENTS}: {elapsed:.2f}s")
    assert errors == []
    assert docs.get(pool.key, Pool).capacity == WRITERS * INCREMENTS
