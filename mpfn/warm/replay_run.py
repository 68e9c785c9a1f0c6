"""`mpfn warm replay`, the I/O: send a schedule to a router (open loop, bounded
concurrency and time), and run the stack with a policy's warm settings (and pools allowed
to scale to zero) for the replay's duration only, restoring what was there afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from mpfn.documents import Pool, pool_key
from mpfn.registry import Registry
from mpfn.scaling.size import read_size
from mpfn.state import Documents
from mpfn.store import KeyNotFound, Store
from mpfn.warm.plan import SETTINGS_KEY, WarmSettings
from mpfn.warm.replay import (
    Arrival,
    Outcome,
    ReplayReport,
    infer_body,
    outcome_from_answer,
    policy_settings,
    pool_usage,
    schedule,
)


@dataclass
class Driven:
    """What a drive did: outcomes of the requests sent, its wall-clock window, why it
    stopped (completed, interrupted, max-seconds)."""

    outcomes: list[Outcome] = field(default_factory=list)
    wall_start: float = 0.0
    wall_end: float = 0.0
    stopped: str = "completed"


async def _interrupted(stop: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds` unless `stop` is set first; True if it was."""
    if stop.is_set():
        return True
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(seconds, 0.0))
    except TimeoutError:
        return False
    return True


async def drive(
    client: httpx.AsyncClient,
    arrivals: Sequence[Arrival],
    bodies: Mapping[str, dict[str, Any]],
    *,
    concurrency: int = 32,
    max_seconds: float = 120.0,
    stop: asyncio.Event | None = None,
    headers: Mapping[str, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Driven:
    """POST each arrival to `client` (whose base URL is the router) at its time, at most
    `concurrency` at once; after `max_seconds`, or when `stop` is set, requests in flight
    are cancelled and no more are sent."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(max(concurrency, 1))
    result = Driven(wall_start=time.time())
    started = loop.time()
    deadline = started + max_seconds
    send_headers = dict(headers or {})

    async def one(a: Arrival) -> None:
        async with gate:
            sent = loop.time()
            lag_ms = max(sent - started - a.at, 0.0) * 1000
            try:
                resp = await client.post(
                    f"/v2/models/{a.model}/infer", json=bodies[a.model], headers=send_headers
                )
            except asyncio.CancelledError:
                result.outcomes.append(Outcome(a.model, lag_ms, error="cancelled"))
                raise
            except httpx.HTTPError as exc:
                result.outcomes.append(Outcome(a.model, lag_ms, error=type(exc).__name__))
                return
            latency_ms = (loop.time() - sent) * 1000
            result.outcomes.append(
                outcome_from_answer(a.model, lag_ms, resp.status_code, latency_ms, resp.headers)
            )
            if progress is not None:
                progress(len(result.outcomes), len(arrivals))

    tasks: set[asyncio.Task[None]] = set()
    for a in arrivals:
        due = started + a.at
        if due > deadline:
            result.stopped = "max-seconds"
            break
        if await _interrupted(stop, due - loop.time()):
            result.stopped = "interrupted"
            break
        tasks.add(asyncio.create_task(one(a)))
    pending = {t for t in tasks if not t.done()}
    if pending and result.stopped != "interrupted":
        stopper = asyncio.create_task(stop.wait())
        while pending:
            done, _ = await asyncio.wait(
                pending | {stopper},
                timeout=max(deadline - loop.time(), 0.0),
                return_when=asyncio.FIRST_COMPLETED,
            )
            pending = {t for t in tasks if not t.done()}
            if stopper in done:
                result.stopped = "interrupted"
                break
            if not done:
                result.stopped = "max-seconds"
                break
        stopper.cancel()
    for t in pending:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    result.wall_end = time.time()
    return result


class Interrupts:
    """SIGINT/SIGTERM call `on_signal` (settable, e.g. to stop a drive) instead of raising,
    for as long as this context lasts: setup and restore are never cut short."""

    def __init__(self) -> None:
        self.count = 0
        self.on_signal: Callable[[], None] | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.on_signal is not None:
            self.on_signal()

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _with_min(pool: Pool, minimum: int) -> Pool:
    assert pool.scaling is not None
    scaling = pool.scaling.model_copy(update={"min_replicas": minimum})
    return pool.model_copy(update={"scaling": scaling})


@contextlib.contextmanager
def stack_settings(
    store: Store, settings: WarmSettings | None, scale_to_zero: bool | None
) -> Iterator[list[str]]:
    """Run with `settings` as `config/warmer.json` (None: untouched) and pools with scaling
    at `min_replicas` 0 (`scale_to_zero` True) or at least 1 (False; None: untouched);
    yields the pools changed. Afterwards the previous `config/warmer.json` (or its
    absence) comes back and each changed pool its previous minimum, unless someone
    changed that minimum meanwhile (their other changes stay either way)."""
    docs = Documents(store)
    saved: bytes | None = None
    changed: dict[str, tuple[int, int]] = {}  # pool -> (previous minimum, the one set)
    wrote = False
    try:
        if settings is not None:
            try:
                blob = store.get(SETTINGS_KEY)
                saved = blob.body if blob is not None else None
            except KeyNotFound:
                saved = None
            wrote = True
            docs.upsert(SETTINGS_KEY, settings)
        if scale_to_zero is not None:
            for pool in Registry(store).pools():
                if pool.scaling is None:
                    continue
                before = pool.scaling.min_replicas
                wanted = 0 if scale_to_zero else max(before, 1)
                if wanted != before:
                    changed[pool.id] = (before, wanted)
                    docs.update(pool.key, Pool, functools.partial(_set_min, minimum=wanted))
        yield sorted(changed)
    finally:
        for pool_id, (before, wanted) in changed.items():

            def restore(old: Pool | None, before: int = before, wanted: int = wanted) -> Pool:
                old = _exists(old)
                if old.scaling is None or old.scaling.min_replicas != wanted:
                    return old
                return _with_min(old, min(before, old.scaling.max_replicas))

            with contextlib.suppress(KeyNotFound):
                docs.update(pool_key(pool_id), Pool, restore)
        if wrote:
            if saved is None:
                with contextlib.suppress(KeyNotFound):
                    store.delete(SETTINGS_KEY)
            else:
                store.put(SETTINGS_KEY, saved)


def _set_min(old: Pool | None, minimum: int) -> Pool:
    return _with_min(_exists(old), minimum)


def _exists(pool: Pool | None) -> Pool:
    if pool is None:
        raise KeyNotFound("pool removed meanwhile")
    return pool


@dataclass(frozen=True)
class ReplayOptions:
    """What `mpfn warm replay` was asked for."""

    trace: Path
    router: str
    speedup: float
    policy: str = "current"
    scale_to_zero: bool | None = None
    models: tuple[str, ...] = ()
    max_requests: int = 2000
    concurrency: int = 32
    max_seconds: float = 120.0
    start_at: float = 0.0
    api_key: str | None = None
    timeout_s: float = 60.0
    notes: tuple[str, ...] = ()


class ReplayError(ValueError):
    """The replay cannot start; the message says why."""


def run_replay(
    store: Store,
    options: ReplayOptions,
    *,
    client: httpx.AsyncClient | None = None,
    progress: Callable[[int, int], None] | None = None,
    interrupts: Interrupts | None = None,
) -> ReplayReport:
    """Replay `options.trace` against the router, with the policy's settings applied to
    `store` for the duration; Ctrl-C (SIGINT/SIGTERM) ends it early with a partial
    report. `client` (base URL = the router) replaces the default one."""
    from mpfn.simulator.traces import TraceFormatError, load_trace
    from mpfn.warm.warmer import latest_models

    try:
        trace = load_trace(options.trace)
    except TraceFormatError as exc:
        raise ReplayError(str(exc)) from None
    if not trace:
        raise ReplayError(f"{options.trace}: no requests")
    registry = Registry(store)
    latest = latest_models(registry.models())
    if not latest:
        raise ReplayError("no models registered on the stack's state")
    names = list(options.models) or sorted(latest)
    unknown = [m for m in names if m not in latest]
    if unknown:
        raise ReplayError(f"--models: not registered: {', '.join(unknown)}")
    try:
        arrivals, mapping = schedule(
            trace,
            options.speedup,
            names,
            start_at=options.start_at,
            max_requests=options.max_requests,
            max_seconds=options.max_seconds,
        )
        base = Documents(store).find(SETTINGS_KEY, WarmSettings) or WarmSettings()
        settings, notes = policy_settings(options.policy, base, options.speedup)
    except ValueError as exc:
        raise ReplayError(str(exc)) from None
    if not arrivals:
        raise ReplayError(f"{options.trace.name}: no request at or after --start-at")
    bodies = {m: infer_body(latest[m]) for m in set(mapping.values())}
    headers = {"authorization": f"Bearer {options.api_key}"} if options.api_key else {}

    async def send(http: httpx.AsyncClient, stop: asyncio.Event) -> Driven:
        return await drive(
            http,
            arrivals,
            bodies,
            concurrency=options.concurrency,
            max_seconds=options.max_seconds,
            stop=stop,
            headers=headers,
            progress=progress,
        )

    async def main(signals: Interrupts) -> Driven:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_signal() -> None:
            loop.call_soon_threadsafe(stop.set)

        signals.on_signal = on_signal
        if signals.count:
            stop.set()
        try:
            if client is not None:
                return await send(client, stop)
            limits = httpx.Limits(max_connections=options.concurrency)
            async with httpx.AsyncClient(
                base_url=options.router, timeout=options.timeout_s, limits=limits
            ) as http:
                return await send(http, stop)
        finally:
            signals.on_signal = None

    with (
        interrupts or Interrupts() as signals,
        stack_settings(store, settings, options.scale_to_zero) as changed,
    ):
        driven = asyncio.run(main(signals))
    pools = registry.pools()
    usage = [
        pool_usage(p, read_size(store, p.id), driven.wall_start, driven.wall_end, options.speedup)
        for p in pools
    ]
    sent = arrivals[: len(driven.outcomes)]
    notes = [
        *notes,
        "only arrivals are compressed: the stack's own clocks (warm-loop interval, load "
        "times, timeouts) run in real time",
        *options.notes,
    ]
    return ReplayReport(
        policy=options.policy,
        trace=options.trace.name,
        router=options.router,
        speedup=options.speedup,
        scheduled=len(arrivals),
        outcomes=driven.outcomes,
        wall_start=driven.wall_start,
        wall_end=driven.wall_end,
        trace_start=sent[0].trace_time if sent else None,
        trace_end=sent[-1].trace_time if sent else None,
        stopped=driven.stopped,
        pools=usage,
        model_map=dict(mapping),
        settings=settings.model_dump(mode="json") if settings is not None else None,
        scale_to_zero=changed,
        notes=notes,
    )
