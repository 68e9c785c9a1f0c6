"""Admission at the router: per-pool concurrency limits, a short fair queue, fast shedding.

Every forwarded attempt holds a slot of its pool; a pool has `Limit.slots` of them (the
adaptive limit of `mpfn.routing.admission`, fed with every answer). A request whose pools
are all full waits in line for a slot for at most its wait budget (a few times the
expected latency, never past its deadline). When its tenant already has more requests
waiting than `line_per_slot` x the slots of those pools (half by default: enough to
fill each slot the moment it frees, no more; every extra place in line is one more
service time of wait for whoever takes it), and at least `MIN_LINE` (so that a few
clients at once on a small pool wait rather than being refused), when the line is full, or when the
tenant already holds its share of it, the request is shed at once, without waiting; it
is shed too when its wait budget runs out. The caller answers 503 +
`Retry-After` without having touched a pool. `must_shed` tells, without queuing, whether
a request would be shed at once, so the router can refuse it before routing it.

Fairness: waiters are queued per tenant (the API key, else the model) and a freed slot
goes to the tenants in turn, so one key or model flooding the router gets its share of
the pools and the others keep theirs. A tenant may hold at most `max_queue / tenants
waiting` places in the line.

Single event loop, no locks: a freed slot is handed straight to a waiter, so a newcomer
never takes it while someone is waiting for that pool. Nothing here does I/O.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mpfn.documents import Pool
from mpfn.routing.admission import DEFAULT_ADMISSION, AdmissionConfig, Limit, Outcome, initial
from mpfn.routing.admission import observe as observe_limit

MIN_LINE = 2  # places in line a tenant always has, whatever the pools' slots


@dataclass(eq=False, slots=True)
class Waiter:
    """A request waiting for a slot on any of `pools`; `granted` gets the pool's id."""

    pools: frozenset[str]
    tenant: str
    granted: asyncio.Future[str] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Admission:
    """Slots per pool, the waiting line, and the adaptive limits of one router."""

    def __init__(
        self,
        cfg: AdmissionConfig = DEFAULT_ADMISSION,
        *,
        max_queue: int = 1024,
        line_per_slot: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.max_queue = max_queue
        self.line_per_slot = line_per_slot
        self.clock = clock
        self.limits: dict[str, Limit] = {}
        self.busy: dict[str, int] = {}  # slots held per pool
        self._lines: dict[str, collections.deque[Waiter]] = {}  # per tenant, FIFO
        self._turn: collections.deque[str] = collections.deque()  # tenants, in turn order
        self._wanted: dict[str, int] = {}  # waiters per pool they could take
        self.waiting = 0

    def limit(self, pool: Pool) -> Limit:
        found = self.limits.get(pool.id)
        if found is None:
            found = self.limits[pool.id] = initial(pool.capacity, self.cfg)
        return found

    def has_room(self, pool: Pool) -> bool:
        return self.busy.get(pool.id, 0) < self.limit(pool).slots

    def try_take(self, pool: Pool) -> bool:
        """Take a slot of `pool` now if one is free and nobody waits for one."""
        if self._wanted.get(pool.id):
            return False
        if not self.has_room(pool):
            return False
        self.busy[pool.id] = self.busy.get(pool.id, 0) + 1
        return True

    def must_shed(self, pools: Sequence[Pool], tenant: str) -> bool:
        """Would `acquire` on `pools` shed the request at once? (No slot free on any of
        them and no place in line for `tenant`.) Asking changes nothing; a request that
        would be shed for every pool serving its model is shed before it is routed."""
        for pool in pools:
            if not self._wanted.get(pool.id) and self.has_room(pool):
                return False
        return not self._may_queue(tenant, pools)

    async def acquire(self, pools: Sequence[Pool], tenant: str, wait_s: float) -> Pool | None:
        """A slot on the first of `pools` with room, waiting up to `wait_s` for one;
        None when the request must be shed."""
        for pool in pools:
            if self.try_take(pool):
                return pool
        if wait_s <= 0 or not self._may_queue(tenant, pools):
            return None
        waiter = Waiter(frozenset(p.id for p in pools), tenant)
        self._enqueue(waiter)
        try:
            await asyncio.wait([waiter.granted], timeout=wait_s)
        except BaseException:  # cancelled: the client went away
            self._leave(waiter)
            raise
        if not waiter.granted.done():
            self._leave(waiter)
            return None
        granted = waiter.granted.result()
        return next(p for p in pools if p.id == granted)

    def release(
        self,
        pool: Pool,
        outcome: Outcome | None,
        latency_ms: float,
        queued: int | None = None,
    ) -> None:
        """An attempt on `pool` ended (`outcome` None: abandoned, nothing learned; `queued`:
        the queue the pool reported); its slot goes to the next waiter in turn, or is
        freed."""
        if outcome is not None:
            self.limits[pool.id] = observe_limit(
                self.limit(pool), outcome, latency_ms, self.clock(), self.cfg, queued
            )
        self._free(pool.id)

    def _free(self, pool_id: str) -> None:
        """Give a slot of `pool_id` back: to the next waiter in turn, or free it."""
        self.busy[pool_id] = max(0, self.busy.get(pool_id, 0) - 1)
        slots = self.limits[pool_id].slots
        while self._wanted.get(pool_id) and self.busy.get(pool_id, 0) < slots:
            waiter = self._next_for(pool_id)
            if waiter is None:
                return
            self.busy[pool_id] = self.busy.get(pool_id, 0) + 1
            waiter.granted.set_result(pool_id)

    def _next_for(self, pool_id: str) -> Waiter | None:
        """The first waiter for `pool_id` of the next tenant in turn (removed from line)."""
        for _ in range(len(self._turn)):
            tenant = self._turn[0]
            self._turn.rotate(-1)
            line = self._lines[tenant]
            for waiter in line:
                if pool_id in waiter.pools and not waiter.granted.done():
                    self._remove(waiter)
                    return waiter
        return None

    def _may_queue(self, tenant: str, pools: Sequence[Pool]) -> bool:
        """Room in line? Not when the line is full, when the tenant holds its share of
        it, or when the tenant already has more waiting than `line_per_slot` x the slots
        of these pools (a newcomer would wait several service times: better shed it at
        once; other tenants still get in line, and freed slots go to tenants in turn)."""
        if self.waiting >= self.max_queue:
            return False
        slots = sum(self.limit(p).slots for p in pools)
        if len(self._lines.get(tenant, ())) >= max(self.line_per_slot * slots, MIN_LINE):
            return False
        tenants = len(self._lines) + (tenant not in self._lines)
        share = max(1, self.max_queue // tenants)
        return len(self._lines.get(tenant, ())) < share

    def _enqueue(self, waiter: Waiter) -> None:
        line = self._lines.get(waiter.tenant)
        if line is None:
            line = self._lines[waiter.tenant] = collections.deque()
            self._turn.append(waiter.tenant)
        line.append(waiter)
        self.waiting += 1
        for pool_id in waiter.pools:
            self._wanted[pool_id] = self._wanted.get(pool_id, 0) + 1

    def _remove(self, waiter: Waiter) -> None:
        line = self._lines[waiter.tenant]
        line.remove(waiter)
        self.waiting -= 1
        for pool_id in waiter.pools:
            self._wanted[pool_id] -= 1
        if not line:
            del self._lines[waiter.tenant]
            self._turn.remove(waiter.tenant)

    def _leave(self, waiter: Waiter) -> None:
        """A waiter gives up: out of the line, or, if a slot reached it meanwhile, the
        slot goes back."""
        if waiter.granted.done() and not waiter.granted.cancelled():
            self._free(waiter.granted.result())
            return
        waiter.granted.cancel()
        if waiter in self._lines.get(waiter.tenant, ()):
            self._remove(waiter)
