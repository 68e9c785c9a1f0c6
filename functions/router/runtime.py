"""The router's live state: the snapshot, routing feedback, usage counts, metrics, keys,
the session.

Refreshing (registry, API keys and `stats/` snapshots) and flushing (usage counts, and
metrics to a Pushgateway or as CloudWatch EMF lines when configured) happen off the hot
path: in background tasks when the server runs a lifespan (uvicorn, Cloud Run), or
lazily once their interval has passed when it does not (Lambda). All store I/O runs in
worker threads. A failed refresh keeps the last snapshot. Routing decisions use
wall-clock time (`routing_clock`), because `stats/` snapshots written elsewhere carry
epoch times.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import time
from collections.abc import Callable, Iterable
from typing import Protocol, cast

from opentelemetry.trace import Tracer

from mpfn.auth import ApiKey
from mpfn.functions.router.admission import Admission
from mpfn.functions.router.earlyretry import EarlyRetries
from mpfn.functions.router.errors import RouteError
from mpfn.functions.router.forward import ClientFactory, Forwarder
from mpfn.functions.router.guard import (
    METRICS_PATH,
    Guard,
    authorization,
    check_model,
    model_in_path,
    protected,
)
from mpfn.functions.router.metrics import LiveState, RouterMetrics
from mpfn.functions.router.modelstats import InferenceStats
from mpfn.functions.router.retryafter import RETRY_AFTER_S, RetryAfter
from mpfn.functions.router.settings import RouterSettings
from mpfn.functions.router.siblings import Siblings
from mpfn.functions.router.usage import UsageCounter, write_usage
from mpfn.functions.router.wake import Waker
from mpfn.poolauth.present import PoolCredentials
from mpfn.poolauth.resolver import SecretResolver
from mpfn.routing import Decision, PoolStatsDocument, RoutingState, Strategy
from mpfn.routing.decide import RouteRequest, decide, default_policy
from mpfn.routing.snapshot import Snapshot, SnapshotLoader
from mpfn.store.base import Store, StoreError
from mpfn.telemetry.emf import EmfExporter
from mpfn.telemetry.push import Pusher
from mpfn.telemetry.tracing import flush_tracing, shutdown_tracing
from mpfn.usage import writer_id

log = logging.getLogger("mpfn.router")


class Service(Protocol):
    """A server beside the ASGI app, started after the first snapshot."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class RouterRuntime:
    """Everything one router instance keeps in memory between requests."""

    def __init__(
        self,
        store: Store,
        settings: RouterSettings,
        *,
        client_factory: ClientFactory | None = None,
        clock: Callable[[], float] = time.monotonic,
        routing_clock: Callable[[], float] = time.time,
        tracer: Tracer | None = None,
        credentials: PoolCredentials | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.routing_clock = routing_clock
        self.snapshot = Snapshot()
        self._refreshed_at: float | None = None
        self.loader = SnapshotLoader(store, with_keys=settings.needs_keys)
        self.usage = UsageCounter(writer_id(settings.instance_id))
        # API keys: None when no route needs one (auth=none and metrics_auth=none)
        self.guard = Guard() if settings.needs_keys else None
        self.tracer = tracer
        self.routing_config = settings.routing_config
        self.breaker_config = settings.breaker_config
        self.routing = RoutingState(self.routing_config, self.breaker_config)
        self.strategy = cast(Strategy, settings.strategy)
        self.rng = random.Random(None if settings.seed < 0 else settings.seed)
        self.fallback_policy = default_policy(settings.request_timeout_s)
        self.admission = (
            Admission(
                settings.admission_config,
                max_queue=settings.line_bound,
                line_per_slot=settings.line_per_slot,
                clock=clock,
            )
            if settings.admission
            else None
        )
        self.early_retries = (
            EarlyRetries(RETRY_AFTER_S)
            if self.admission is not None and settings.hold_early_retries
            else None
        )
        self.forwarder = Forwarder(
            self.routing,
            connect_timeout_s=settings.connect_timeout_s,
            client_factory=client_factory,
            clock=routing_clock,
            tracer=tracer,
            admission=self.admission,
            queue_wait=settings.queue_wait_s,
            credentials=credentials or PoolCredentials(SecretResolver(ttl_s=settings.secret_ttl_s)),
            site=self.routing_config.home,
            retry_after=RetryAfter(settings.retry_spread),
        )
        self.waker = Waker(max_waiting=settings.max_waking) if settings.wake else None
        self.metrics = RouterMetrics()
        self.stats = InferenceStats(routing_clock)  # per model version, Triton's shape
        self.metrics.watch(
            LiveState(
                pools=lambda: [p.id for p in self.snapshot.pools],
                breaker=lambda pool: self.routing.breaker(pool, self.routing_clock()),
                inflight=lambda pool: self.routing.feedback.inflight.get(pool, 0),
                state_age_s=self.state_age_s,
                limit=self._limit_of,
                waiting=lambda: self.admission.waiting if self.admission else 0,
            )
        )
        self.emf = (
            EmfExporter(self.metrics.registry, fixed={"service": "router"})
            if settings.emf
            else None
        )
        self.pusher = (
            Pusher(
                self.metrics.registry,
                settings.pushgateway_url,
                job="mpfn-router",
                grouping_key={"instance": push_instance(settings, self.usage.instance)},
            )
            if settings.pushgateway_url
            else None
        )
        self.store_error: str | None = None
        self.background = False
        self._turns = itertools.count()
        self._last_refresh = float("-inf")
        self._last_flush = clock()
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._usage_write: asyncio.Future[int] | None = None
        # Servers started and stopped with the runtime (the gRPC front door)
        self.services: list[Service] = []
        self.siblings: Siblings | None = None  # the other processes serving this router

    async def render_metrics(self) -> bytes:
        """`/metrics`: this process's, or with sibling processes, theirs merged in."""
        if self.siblings is None:
            return self.metrics.render()
        return await self.siblings.render_all()

    def _limit_of(self, pool_id: str) -> float | None:
        """The admission limit of a pool (None: admission off or pool not used yet)."""
        if self.admission is None:
            return None
        limit = self.admission.limits.get(pool_id)
        return None if limit is None else limit.value

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
            asleep=self.asleep(),
        )

    def asleep(self) -> frozenset[str]:
        """Pools at zero replicas this router has not woken (none when waking is off:
        such pools are then tried like any other)."""
        if self.waker is None:
            return frozenset()
        return self.waker.asleep(self.snapshot.asleep)

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
            self.metrics.refreshes.labels("error").inc()
            log.warning("state refresh failed, serving the last snapshot: %s", exc)
            return False
        self.snapshot = snapshot
        if stats:
            self.routing.load(stats)
        if self.guard is not None:
            self.guard.forget(snapshot.keys)
        self.store_error = None
        self._refreshed_at = self.clock()
        self.metrics.refreshes.labels("ok").inc()
        return True

    def state_age_s(self) -> float:
        """Seconds since the snapshot was last read successfully (-1: never)."""
        if self._refreshed_at is None:
            return -1.0
        return self.clock() - self._refreshed_at

    async def authenticate(self, headers: Iterable[tuple[bytes, bytes]]) -> ApiKey:
        """The API key presented in `headers` (ASGI pairs), rate limit spent.

        RouteError 401/429, or 503 while no snapshot (and so no key) has been read."""
        assert self.guard is not None, "no route needs API keys"
        if not self.snapshot.loaded:
            reason = self.store_error or "not loaded yet"
            raise RouteError(503, f"model registry unavailable: {reason}")
        return self.guard.authenticate(authorization(headers), self.snapshot.keys, self.clock())

    async def admit(self, path: str, headers: Iterable[tuple[bytes, bytes]]) -> ApiKey | None:
        """The key check of a request on the route path `path`: the verified key when the
        path needs one, None when keys are off or the path is open.

        Model and OpenAI paths need a key with `auth=keys` (403 when the model the path
        names is outside the key's scope), `/metrics` with `metrics_auth=keys`."""
        settings = self.settings
        if settings.auth == "keys" and protected(path):
            key = await self.authenticate(headers)
            model = model_in_path(path)
            if model is not None:
                check_model(key, model)
            return key
        if settings.metrics_auth == "keys" and path == METRICS_PATH:
            return await self.authenticate(headers)
        return None

    async def flush_metrics(self) -> int:
        """Write EMF lines and/or push to the Pushgateway, when configured; on hosts
        without background tasks also export finished spans. Returns EMF lines written."""
        lines = self.emf.flush() if self.emf is not None else []
        for line in lines:
            _print_line(line)
        if self.pusher is not None:
            await asyncio.to_thread(self.pusher.push)
        if self.tracer is not None and not self.background:
            await asyncio.to_thread(flush_tracing)
        return len(lines)

    async def flush(self) -> int:
        """Flush usage counts, then metrics; returns the usage documents written."""
        written = await self.flush_usage()
        await self.flush_metrics()
        return written

    async def flush_usage(self) -> int:
        """Write changed usage counts; returns how many documents were written.

        One write at a time, in order, and a started write always finishes and settles
        even when its caller is cancelled (as the flush loop is at shutdown): each write
        takes the next sequence numbers of its slots, and a write that never settled
        would leave its slots out of the next flush and lose their requests.
        """
        while self._usage_write is not None and not self._usage_write.done():
            await asyncio.wait([self._usage_write])
        self._usage_write = asyncio.ensure_future(self._write_usage())
        return await asyncio.shield(self._usage_write)

    async def _write_usage(self) -> int:
        self._last_flush = self.clock()
        batch = self.usage.take_dirty()
        if not batch:
            self.usage.forget_past()
            return 0
        failed = await asyncio.to_thread(
            write_usage, self.store, self.usage.instance, batch, self.usage.sequences
        )
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
                await self.flush()

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
            asyncio.create_task(self._every(self.settings.usage_flush_s, self.flush)),
        ]
        self.background = True
        for service in self.services:
            await service.start()

    async def stop(self) -> None:
        """Stop the services and the loops, flush the last counts and close the backend
        session."""
        for service in reversed(self.services):
            await service.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self.background = False
        await self.flush()
        await self.forwarder.close()
        if self.tracer is not None:
            await asyncio.to_thread(shutdown_tracing)


def push_instance(settings: RouterSettings, writer: str) -> str:
    """The `instance` this process pushes its metrics under: the configured one, with the
    process id when several processes serve the router (each pushes its own counts, and
    one group per process keeps them from overwriting each other); else its usage name."""
    if not settings.instance_id:
        return writer
    if settings.processes > 1:
        return f"{settings.instance_id}-{os.getpid()}"
    return settings.instance_id


def _print_line(line: str) -> None:
    """Write one EMF line to stdout, where Lambda sends it to CloudWatch Logs."""
    print(line, flush=True)
