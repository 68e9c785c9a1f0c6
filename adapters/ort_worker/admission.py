"""Admission control: at most N inferences run at once, up to M more wait, the rest are refused.

Single event loop, no locks: slots are handed directly from a finishing request to the
oldest waiter, so the queue is FIFO and a freed slot is never stolen by a newcomer.
"""

from __future__ import annotations

import asyncio
import collections


class QueueFull(Exception):
    """Every slot is busy and the wait queue is full."""


class Admission:
    """Counts running and waiting inferences; use `async with admission.slot():`."""

    def __init__(self, max_concurrency: int, max_queue: int) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if max_queue < 0:
            raise ValueError("max_queue must be 0 or more")
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.running = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    @property
    def free(self) -> int:
        """Slots a newcomer could take now (0 while anyone waits in line)."""
        return 0 if self._waiters else max(0, self.max_concurrency - self.running)

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody waits; never waits."""
        if self.running < self.max_concurrency and not self._waiters:
            self.running += 1
            return True
        return False

    async def acquire(self, bounded: bool = True) -> None:
        """Take a slot, waiting in line if needed; raises QueueFull when the line is full
        (unless not `bounded`: a batch whose requests were admitted already)."""
        if self.try_acquire():
            return
        if bounded and len(self._waiters) >= self.max_queue:
            raise QueueFull
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as we were cancelled
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give the slot to the oldest waiter, or free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.running -= 1

    def slot(self) -> _Slot:
        return _Slot(self)


class _Slot:
    __slots__ = ("_admission",)

    def __init__(self, admission: Admission) -> None:
        self._admission = admission

    async def __aenter__(self) -> None:
        await self._admission.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._admission.release()
