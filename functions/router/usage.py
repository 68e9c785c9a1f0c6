"""Per-model, per-minute request counts, kept in memory and flushed to the store.

Each router process writes documents of its own, in the format `mpfn.usage` defines: each
flush of a (model, minute) whose count changed creates a new document holding the
absolute count for that minute, under the slot's next sequence number. The writer id is
the configured instance id (if any) plus a random part, so a restarted process never
writes under the name of the one before it. Documents are only ever created
(only-if-absent), never overwritten or deleted, so the router needs no more than a
create-only grant on `usage/`; readers count the highest sequence per (minute, writer),
so repeating a flush can never double count.

A sequence number is tried once: after any attempt, landed or not, the slot moves on to
the next. A write whose answer was lost and that lands late therefore lands under a lower
sequence than every later write and cannot hide a newer count, and a retry never meets
its own earlier write (on a create-only grant that could be refused like an overwrite).
A create refused because the key exists (`PreconditionFailed`) is retried at once under
the next sequence. Minutes that are over and flushed are dropped.
Only the caller decides which names are models; this module counts what it is given.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from mpfn.store.base import PreconditionFailed, Store, StoreError
from mpfn.usage import FIRST_SEQUENCE, minute_of, usage_document, usage_key

log = logging.getLogger("mpfn.router")

TAKEN_TRIES = 8  # sequence numbers tried in a row when each one already exists


class UsageCounter:
    """Counts requests per (model, minute); `flush` writes the changed minutes."""

    def __init__(self, instance: str, *, clock: Callable[[], float] = time.time) -> None:
        self.instance = instance
        self.clock = clock
        self._counts: dict[tuple[str, int], int] = {}
        self._dirty: set[tuple[str, int]] = set()
        # the next sequence number of each (model, minute) document
        self.sequences: dict[tuple[str, int], int] = {}

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
            self.sequences.pop(slot, None)

    def flush(self, store: Store) -> int:
        """Write every changed minute (blocking); returns the number of documents written.

        Call it from one thread only; the async runtime uses `take_dirty` on the event
        loop, `write_usage` in a worker thread and `settle` back on the loop instead.
        """
        batch = self.take_dirty()
        failed = write_usage(store, self.instance, batch, self.sequences)
        self.settle(failed)
        return len(batch) - len(failed)

    def settle(self, failed: list[tuple[str, int, int]]) -> None:
        """After a flush: retry `failed` next time and forget finished minutes."""
        self.mark_dirty(failed)
        self.forget_past()


def create_next(
    store: Store,
    writer: str,
    model: str,
    minute: int,
    count: int,
    sequences: dict[tuple[str, int], int],
) -> str:
    """Create the next document of (model, minute) holding `count`; return its ETag.

    `sequences` holds the slot's next sequence number and moves past every number tried.
    """
    body = usage_document(model, minute, writer, count)
    for _ in range(TAKEN_TRIES):
        seq = sequences.get((model, minute), FIRST_SEQUENCE)
        sequences[(model, minute)] = seq + 1
        try:
            return store.put(usage_key(model, minute, writer, seq), body, if_absent=True)
        except PreconditionFailed:
            continue  # already there (another process with this writer id?): next one
    raise PreconditionFailed(f"usage of {model}: {TAKEN_TRIES} sequence numbers in a row exist")


def write_usage(
    store: Store,
    instance: str,
    batch: list[tuple[str, int, int]],
    sequences: dict[tuple[str, int], int],
) -> list[tuple[str, int, int]]:
    """Write `batch` (model, minute, absolute count); return the slots not written.

    `sequences` holds each slot's next sequence number and is updated. A failed write
    stops the batch: the store is likely down, the rest is retried later.
    """
    for i, (model, minute, count) in enumerate(batch):
        try:
            create_next(store, instance, model, minute, count, sequences)
        except (StoreError, OSError, ValueError) as exc:
            log.warning("usage flush failed, will retry: %s", exc)
            return batch[i:]
    return []
