"""Per-model, per-minute request counts, kept in memory and flushed to the store.

`add` counts a request for a model as it arrives; `served` counts the answer of the pool
that gave it, with the prompt and completion tokens `TokenTap` read from an OpenAI
answer's `usage` (both in the minute the call is made).

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
import re
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple

from starlette.types import Message, Send

from mpfn.store.base import PreconditionFailed, Store, StoreError
from mpfn.usage import FIRST_SEQUENCE, PoolUsage, minute_of, usage_document, usage_key

log = logging.getLogger("mpfn.router")

TAKEN_TRIES = 8  # sequence numbers tried in a row when each one already exists


class Slot(NamedTuple):
    """One (model, minute) document to write: its request count and answers per pool."""

    model: str
    minute: int
    requests: int  # the absolute count (a field cannot be named `count` on a tuple)
    pools: Mapping[str, PoolUsage] = {}


class UsageCounter:
    """Counts requests per (model, minute); `flush` writes the changed minutes."""

    def __init__(self, instance: str, *, clock: Callable[[], float] = time.time) -> None:
        self.instance = instance
        self.clock = clock
        self._counts: dict[tuple[str, int], int] = {}
        # (model, minute) -> pool -> [answers, prompt tokens, completion tokens]
        self._pools: dict[tuple[str, int], dict[str, list[int]]] = {}
        self._dirty: set[tuple[str, int]] = set()
        # the next sequence number of each (model, minute) document
        self.sequences: dict[tuple[str, int], int] = {}

    def add(self, model: str, n: int = 1) -> None:
        slot = (model, minute_of(self.clock()))
        self._counts[slot] = self._counts.get(slot, 0) + n
        self._dirty.add(slot)

    def served(
        self, model: str, pool: str, prompt_tokens: int = 0, completion_tokens: int = 0
    ) -> None:
        """Count one answer `pool` gave to a request for `model`, with its tokens."""
        slot = (model, minute_of(self.clock()))
        if slot not in self._counts:
            self._counts[slot] = 0
        per_pool = self._pools.get(slot)
        if per_pool is None:
            per_pool = self._pools[slot] = {}
        entry = per_pool.get(pool)
        if entry is None:
            per_pool[pool] = [1, prompt_tokens, completion_tokens]
        else:
            entry[0] += 1
            entry[1] += prompt_tokens
            entry[2] += completion_tokens
        self._dirty.add(slot)

    def counts(self) -> dict[tuple[str, int], int]:
        return dict(self._counts)

    def pending(self) -> int:
        return len(self._dirty)

    def take_dirty(self) -> list[Slot]:
        """The slots to write with their absolute counts (copies), clearing the dirty set."""
        dirty = [
            Slot(m, minute, self._counts[(m, minute)], self._pool_usage((m, minute)))
            for (m, minute) in sorted(self._dirty)
        ]
        self._dirty.clear()
        return dirty

    def _pool_usage(self, slot: tuple[str, int]) -> dict[str, PoolUsage]:
        return {pool: PoolUsage(*entry) for pool, entry in self._pools.get(slot, {}).items()}

    def mark_dirty(self, slots: list[Slot]) -> None:
        """Put back slots whose write failed so the next flush retries them."""
        self._dirty.update((s.model, s.minute) for s in slots)

    def forget_past(self) -> None:
        """Drop clean slots of minutes that are over: they can no longer change."""
        now = minute_of(self.clock())
        for slot in [s for s in self._counts if s[1] < now and s not in self._dirty]:
            del self._counts[slot]
            self._pools.pop(slot, None)
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

    def settle(self, failed: list[Slot]) -> None:
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
    pools: Mapping[str, PoolUsage] | None = None,
) -> str:
    """Create the next document of (model, minute) holding `count` and `pools`; return its
    ETag. `sequences` holds the slot's next sequence number and moves past every number
    tried."""
    body = usage_document(model, minute, writer, count, pools)
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
    batch: list[Slot],
    sequences: dict[tuple[str, int], int],
) -> list[Slot]:
    """Write `batch` (absolute counts); return the slots not written.

    `sequences` holds each slot's next sequence number and is updated. A failed write
    stops the batch: the store is likely down, the rest is retried later.
    """
    for i, (model, minute, requests, pools) in enumerate(batch):
        try:
            create_next(store, instance, model, minute, requests, sequences, pools)
        except (StoreError, OSError, ValueError) as exc:
            log.warning("usage flush failed, will retry: %s", exc)
            return batch[i:]
    return []


_PROMPT = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')
_COMPLETION = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')
TAIL_BYTES = 256  # kept from one body message to the next: a key split across them


def _last(pattern: re.Pattern[bytes], data: bytes) -> int | None:
    found = pattern.findall(data)
    return int(found[-1]) if found else None


class TokenTap:
    """Relays an OpenAI answer unchanged and notes the token counts of its `usage`.

    Scans the bytes as they pass (no JSON parsing): the last `"prompt_tokens": N` and
    `"completion_tokens": N` of a successful, uncompressed answer. That is the `usage` of a
    buffered answer, and of a stream the usage of its last chunk that carries one (sent
    when the request asks for `stream_options: {"include_usage": true}`). Inside JSON
    strings those quotes are escaped, so message text cannot be mistaken for them.
    """

    __slots__ = ("_off", "_tail", "completion_tokens", "downstream", "prompt_tokens")

    def __init__(self, send: Send) -> None:
        self.downstream = send
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._off = False
        self._tail = b""

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.body":
            if not self._off:
                self._scan(message.get("body", b""))
        elif message["type"] == "http.response.start":
            self._off = not 200 <= message["status"] < 300 or any(
                name == b"content-encoding" and value.strip().lower() != b"identity"
                for name, value in message.get("headers", ())
            )
        await self.downstream(message)

    def _scan(self, chunk: bytes) -> None:
        data = self._tail + chunk if self._tail else chunk
        if b'_tokens"' in data:
            prompt = _last(_PROMPT, data)
            if prompt is not None:
                self.prompt_tokens = prompt
            completion = _last(_COMPLETION, data)
            if completion is not None:
                self.completion_tokens = completion
        self._tail = data[-TAIL_BYTES:]
