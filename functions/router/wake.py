"""Waking a pool from zero replicas for the requests that need it.

When every pool that could serve a request is asleep (a scalable pool whose recorded size
is zero), the router asks one of them for a replica (through its scaler, with the narrow
permission deployed for it) and holds the request until the pool accepts connections or
the request's deadline comes. Concurrent requests for the same pool share one wake, and
more held requests than a pool takes (`HELD_PER_CAPACITY` x its capacity) wake the next
pool too; at most `max_waiting` requests wait per router, the rest get 503 at once. A request whose
deadline passes first gets 503 with `Retry-After` (the expected rest of the wake) and a
message saying the pool is waking; never a bare error. A woken pool counts as awake for
this router until the registry records a newer size for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from mpfn.documents import Pool
from mpfn.routing.errors import RouteError
from mpfn.scaling import ScaleError, ScalerClients, scaler_for

log = logging.getLogger("mpfn.router.wake")
FIRST_GUESS_S = 10.0  # expected wake time before one was measured
HELD_PER_CAPACITY = 2  # held requests per unit of capacity: a pool's first admission limit


@dataclass(frozen=True)
class Woken:
    pool: str
    wait_ms: float  # how long this request waited


async def accepts_connections(pool: Pool, timeout_s: float = 1.0) -> bool:
    """The pool's endpoint takes a TCP connection (its server has started)."""
    url = urlsplit(str(pool.endpoint))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(url.hostname, port), timeout=timeout_s
        )
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def default_clients() -> ScalerClients:
    """The scalers' clients: the SDKs' credentials; an HTTP client where httpx is installed
    (a Lambda router package has none: it wakes ECS pools through boto3)."""
    try:
        import httpx
    except ImportError:
        return ScalerClients(http=None)
    return ScalerClients(http=httpx.AsyncClient(timeout=30.0))


class Waker:
    """Wakes pools for this router; `asleep` says which pools to treat as asleep."""

    def __init__(
        self,
        *,
        max_waiting: int = 256,
        give_up_s: float = 600.0,
        poll_s: float = 0.2,
        clients: Callable[[], ScalerClients] | None = None,
        ready: Callable[[Pool], Awaitable[bool]] = accepts_connections,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_waiting = max_waiting
        self.give_up_s = give_up_s
        self.poll_s = poll_s
        self._clients = clients or default_clients
        self._ready = ready
        self.clock = clock
        self.waiting = 0
        self.wakes = 0  # wakes started by this router
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._asked: dict[str, float] = {}  # pool -> when this router asked for a replica
        self._woke: dict[str, float] = {}  # pool -> when it answered after a wake
        self._took: dict[str, float] = {}  # pool -> seconds its last wake took
        self._holding: dict[str, int] = {}  # pool -> requests held for its wake now

    def asleep(self, recorded: Mapping[str, float]) -> frozenset[str]:
        """Pools at zero (`recorded`: pool -> when it was set to zero) that this router
        has not woken since."""
        if not recorded:
            return frozenset()
        return frozenset(p for p, since in recorded.items() if self._woke.get(p, -1.0) < since)

    def _expected_s(self, pool: str) -> float:
        return self._took.get(pool, FIRST_GUESS_S)

    async def _wake(self, pool: Pool) -> None:
        started = self.clock()
        self._asked[pool.id] = started
        self.wakes += 1
        clients = self._clients()
        try:
            scaler = scaler_for(pool, clients)
            if await scaler.get() == 0:
                await scaler.set(1)
                log.warning("woke pool %s: asked for one replica", pool.id)
            deadline = started + self.give_up_s
            while not await self._ready(pool):
                if self.clock() > deadline:
                    raise ScaleError(f"pool {pool.id} did not start within {self.give_up_s:g} s")
                await asyncio.sleep(self.poll_s)
            now = self.clock()
            self._woke[pool.id] = now
            self._took[pool.id] = now - started
        finally:
            if clients.http is not None:
                with contextlib.suppress(Exception):
                    await clients.http.aclose()

    def _task(self, pool: Pool) -> asyncio.Task[None]:
        task = self._tasks.get(pool.id)
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(self._wake(pool))
            self._tasks[pool.id] = task
            task.add_done_callback(functools.partial(self._forget, pool.id))
        return task

    def _forget(self, pool_id: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(pool_id) is task:
            del self._tasks[pool_id]
        if not task.cancelled() and task.exception() is not None:
            log.warning("waking pool %s failed: %s", pool_id, task.exception())

    def _choose(self, pools: Sequence[Pool]) -> Pool:
        """The first of `pools` with room for one more held request; a pool holds
        `HELD_PER_CAPACITY` x its capacity before the next one is woken too."""
        for pool in pools:
            if self._holding.get(pool.id, 0) < HELD_PER_CAPACITY * max(pool.capacity, 1):
                return pool
        return min(pools, key=lambda p: self._holding.get(p.id, 0) / max(p.capacity, 1))

    async def wait(self, pools: Sequence[Pool], timeout_s: float) -> Woken:
        """Wake one of `pools` (the caller orders them, best first) and wait for it, at
        most `timeout_s`; RouteError 503 (with Retry-After when it is still waking)."""
        pool = self._choose(pools)
        if self.waiting >= self.max_waiting:
            raise self._waking(pool, f"{self.waiting} requests already wait for pools to wake")
        task = self._task(pool)
        began = time.perf_counter()
        self.waiting += 1
        self._holding[pool.id] = self._holding.get(pool.id, 0) + 1
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=max(timeout_s, 0.0))
        except TimeoutError:
            raise self._waking(pool, "the request's deadline came first") from None
        except ScaleError as exc:
            raise RouteError(
                503, f"pool {pool.id} is asleep and could not be woken: {exc}",
                f"not routed: waking pool {pool.id} failed", rejection="wake_failed",
            ) from None  # fmt: skip
        finally:
            self.waiting -= 1
            self._holding[pool.id] -= 1
        return Woken(pool.id, (time.perf_counter() - began) * 1000.0)

    def _waking(self, pool: Pool, why: str) -> RouteError:
        asked = self._asked.get(pool.id)
        elapsed = self.clock() - asked if asked is not None else 0.0
        retry = max(1, math.ceil(self._expected_s(pool.id) - elapsed))
        return RouteError(
            503,
            f"pool {pool.id} is waking from zero replicas (asked {elapsed * 1000:.0f} ms ago; "
            f"{why}): retry after {retry} s",
            f"not routed: woke pool {pool.id}, still starting",
            headers=[(b"retry-after", str(retry).encode())],
            rejection="waking",
        )
