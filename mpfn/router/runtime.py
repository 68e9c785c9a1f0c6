"""The router's live state: the snapshot, routing feedback, usage counts, the session.

Refreshing (registry and `stats/` snapshots) and flushing happen off the hot path: in
background tasks when the server runs a lifespan (uvicorn, Cloud Run), or lazily once
their interval has passed when it does not (Lambda). All store I/O runs in worker
threads. A failed refresh keeps the last snapshot. Routing decisions use wall-clock
time (`routing_clock`), because `stats/` snapshots written elsewhere carry epoch times.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Callable
from typing import cast

from mpfn.router.decide import RouteRequest, decide, default_policy
from mpfn.router.forward import Forwarder, SessionFactory
from mpfn.router.settings import RouterSettings
from mpfn.router.snapshot import Snapshot, SnapshotLoader
from mpfn.router.usage import UsageCounter, new_instance_id, write_usage
from mpfn.routing import Decision, PoolStatsDocument, RoutingState, Strategy
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
        routing_clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.routing_clock = routing_clock
        self.snapshot = Snapshot()
        self.loader = SnapshotLoader(store)
        self.usage = UsageCounter(settings.instance_id or new_instance_id())
        self.routing_config = settings.routing_config
        self.breaker_config = settings.breaker_config
        self.routing = RoutingState(self.routing_config, self.breaker_config)
        self.strategy = cast(Strategy, settings.strategy)
        self.rng = random.Random(None if settings.seed < 0 else settings.seed)
        self.fallback_policy = default_policy(settings.request_timeout_s)
        self.forwarder = Forwarder(
            self.routing,
            connect_timeout_s=settings.connect_timeout_s,
            session_factory=session_factory,
            clock=routing_clock,
        )
        self.store_error: str | None = None
        self.background = False
        self._turns = itertools.count()
        self._last_refresh = float("-inf")
        self._last_flush = clock()
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    def decide(self, request: RouteRequest, *, explain: bool = False) -> Decision:
        """The routing decision for `request` with this router's snapshot and feedback
        (not committed: the caller commits what it acts on)."""
        return decide(
            self.snapshot,
            self.routing.feedback,
            request,
            now=self.routing_clock(),
            rng=self.rng,
            fallback_policy=self.fallback_policy,
            strategy=self.strategy,
            turn=next(self._turns),
            cfg=self.routing_config,
            breaker_cfg=self.breaker_config,
            explain=explain,
        )

    def _load(self) -> tuple[Snapshot, list[PoolStatsDocument]]:
        snapshot = self.loader.load()
        try:
            stats = self.loader.load_stats()
        except (StoreError, OSError, ValueError) as exc:
            log.warning("reading stats/ failed, keeping the feedback: %s", exc)
            stats = []
        return snapshot, stats

    async def refresh(self) -> bool:
        """Reload the snapshot and changed `stats/` documents; on failure keep the last
        snapshot. True when it succeeded."""
        self._last_refresh = self.clock()
        try:
            snapshot, stats = await asyncio.to_thread(self._load)
        except (StoreError, OSError, ValueError) as exc:
            self.store_error = str(exc)
            log.warning("state refresh failed, serving the last snapshot: %s", exc)
            return False
        self.snapshot = snapshot
        if stats:
            self.routing.load(stats)
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
