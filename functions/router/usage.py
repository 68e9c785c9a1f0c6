"""Per-model, per-minute request counts, kept in memory and flushed to the store.

Each router process owns its documents, one per (model, minute):
`usage/<model>/<yyyy>/<mm>/<dd>/<hh>/<minute>-<writer>.json`, holding the absolute count
for that minute. The writer id is the configured instance id (if any) plus a random part,
so a restarted process never overwrites the counts of the one before it. A flush rewrites
the whole count, so repeating a flush (or a flush that failed half-way) can never double
count. Each write is conditional on the version this process wrote last (`If-Match`, or
only-if-absent for a new document): a write whose answer was lost and that lands late
cannot replace a newer count, and the next flush reads back what landed and writes over
it. Minutes that are over and flushed are dropped.
Only the caller decides which names are models; this module counts what it is given.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from mpfn.store.base import KeyNotFound, PreconditionFailed, Store, StoreError
from mpfn.usage import minute_of, usage_document, usage_key

log = logging.getLogger("mpfn.router")


class UsageCounter:
    """Counts requests per (model, minute); `flush` writes the changed minutes."""

    def __init__(self, instance: str, *, clock: Callable[[], float] = time.time) -> None:
        self.instance = instance
        self.clock = clock
        self._counts: dict[tuple[str, int], int] = {}
        self._dirty: set[tuple[str, int]] = set()
        # version of each document as this process last wrote it (for conditional writes)
        self.etags: dict[tuple[str, int], str] = {}

    def add(self, model: str, n: int = 1) -> None:
        slot = (model, minute_of(self.clock()))
        self._counts[slot] = self._counts.get(slot, 0) + n
        self._dirty.add(slot)

    def counts(self) -> dict[tuple[str, int], int]:
        return dict(self._counts)

    def pending(self) -> int:
        return len(self._dirty)

    def take_dirty(self) -> list[tuple[str, int, int]]:
        """The (model, minute, absolute count) triples to write, clearing the dirty set."""
        dirty = [(m, minute, self._counts[(m, minute)]) for (m, minute) in sorted(self._dirty)]
        self._dirty.clear()
        return dirty

    def mark_dirty(self, slots: list[tuple[str, int, int]]) -> None:
        """Put back slots whose write failed so the next flush retries them."""
        self._dirty.update((m, minute) for m, minute, _ in slots)

    def forget_past(self) -> None:
        """Drop clean slots of minutes that are over: they can no longer change."""
        now = minute_of(self.clock())
        for slot in [s for s in self._counts if s[1] < now and s not in self._dirty]:
            del self._counts[slot]
            self.etags.pop(slot, None)

    def flush(self, store: Store) -> int:
        """Write every changed minute (blocking); returns the number of documents written.

        Call it from one thread only; the async runtime uses `take_dirty` on the event
        loop, `write_usage` in a worker thread and `settle` back on the loop instead.
        """
        batch = self.take_dirty()
        failed = write_usage(store, self.instance, batch, self.etags)
        self.settle(failed)
        return len(batch) - len(failed)

    def settle(self, failed: list[tuple[str, int, int]]) -> None:
        """After a flush: retry `failed` next time and forget finished minutes."""
        self.mark_dirty(failed)
        self.forget_past()


def put_owned(store: Store, key: str, body: bytes, etag: str | None) -> str:
    """Write a document only this process writes, over the version it wrote last (`etag`,
    None: not written yet). When that fails, what is there is an older write of ours that
    landed late (its answer was lost): read its version back and write over it."""
    try:
        if etag is None:
            return store.put(key, body, if_absent=True)
        return store.put(key, body, if_match=etag)
    except PreconditionFailed:
        try:
            current = store.get(key)
        except KeyNotFound:
            return store.put(key, body, if_absent=True)
        assert current is not None  # no if_none_match: a blob or KeyNotFound
        return store.put(key, body, if_match=current.etag)


def write_usage(
    store: Store,
    instance: str,
    batch: list[tuple[str, int, int]],
    etags: dict[tuple[str, int], str] | None = None,
) -> list[tuple[str, int, int]]:
    """Write `batch` (model, minute, absolute count); return the slots not written.

    `etags` holds the versions written so far and is updated. A failed write stops the
    batch: the store is likely down, the rest is retried later.
    """
    versions = {} if etags is None else etags
    for i, (model, minute, count) in enumerate(batch):
        key = usage_key(model, minute, instance)
        try:
            versions[(model, minute)] = put_owned(
                store,
                key,
                usage_document(model, minute, instance, count),
                versions.get((model, minute)),
            )
        except (StoreError, OSError, ValueError) as exc:
            log.warning("usage flush failed, will retry: %s", exc)
            return batch[i:]
    return []
