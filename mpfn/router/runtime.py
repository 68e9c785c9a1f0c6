"""The router's live state: the current snapshot, usage counts, backend health, session.

Refreshing and flushing happen off the hot path: in background tasks when the server runs
a lifespan (uvicorn, Cloud Run), or lazily once their interval has passed when it does not
(Lambda). All store I/O runs in worker threads. A failed refresh keeps the last snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable

from mpfn.router.forward import BackendHealth, Forwarder, SessionFactory
from mpfn.router.settings import RouterSettings
from mpfn.router.snapshot import Snapshot, SnapshotLoader
from mpfn.router.usage import UsageCounter, new_instance_id, write_usage
from mpfn.store.base import Store, StoreError

log = logging.getLogger("mpfn.router")


class RouterRuntime:
    """Everything one router instance keeps in memory between requests."""

    def __init__(
        self,
        store: Store,
        settings: RouterSettings,
        *,
        session_factory: SessionFactory | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.snapshot = Snapshot()
        self.loader = SnapshotLoader(store)
        self.usage = UsageCounter(settings.instance_id or new_instance_id())
        self.health = BackendHealth(settings.down_cooldown_s, clock)
        self.forwarder = Forwarder(
            self.health,
            connect_timeout_s=settings.connect_timeout_s,
            session_factory=session_factory,
        )
        self.store_error: str | None = None
        self.background = False
        self._turns = itertools.count()
        self._last_refresh = float("-inf")
        self._last_flush = clock()
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    def next_turn(self) -> int:
        return next(self._turns)

    async def refresh(self) -> bool:
        """Reload the snapshot; on failure keep the last one. True when it succeeded."""
        self._last_refresh = self.clock()
        try:
            snapshot = await asyncio.to_thread(self.loader.load)
        except (StoreError, OSError, ValueError) as exc:
            self.store_error = str(exc)
            log.warning("state refresh failed, serving the last snapshot: %s", exc)
            return False
        self.snapshot = snapshot
        self.store_error = None
        return True

    async def flush_usage(self) -> int:
        """Write changed usage counts; returns how many documents were written."""
        self._last_flush = self.clock()
        batch = self.usage.take_dirty()
        if not batch:
            self.usage.forget_past()
            return 0
        failed = await asyncio.to_thread(write_usage, self.store, self.usage.instance, batch)
        self.usage.settle(failed)
        return len(batch) - len(failed)

    async def tick(self) -> None:
        """Lazy upkeep for hosts without background tasks: refresh/flush when due."""
        now = self.clock()
        refresh_due = now - self._last_refresh >= self.settings.refresh_ttl_s
        flush_due = now - self._last_flush >= self.settings.usage_flush_s
        if not (refresh_due or flush_due):
            return
        async with self._lock:
            now = self.clock()
            if now - self._last_refresh >= self.settings.refresh_ttl_s:
                await self.refresh()
            if now - self._last_flush >= self.settings.usage_flush_s:
                await self.flush_usage()

    async def _every(self, interval: float, job: Callable[[], object]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                result = job()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:  # a background job must never die
                log.exception("router background job failed")

    async def start(self) -> None:
        """Load the first snapshot and start the refresh and flush loops."""
        await self.refresh()
        self._tasks = [
            asyncio.create_task(self._every(self.settings.refresh_ttl_s, self.refresh)),
            asyncio.create_task(self._every(self.settings.usage_flush_s, self.flush_usage)),
        ]
        self.background = True

    async def stop(self) -> None:
        """Stop the loops, flush the last counts and close the backend session."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self.background = False
        await self.flush_usage()
        await self.forwarder.close()
