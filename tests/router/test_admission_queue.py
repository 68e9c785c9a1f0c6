"""The router's admission queue: slots per pool, a short fair line, shedding."""

from __future__ import annotations

import asyncio

from mpfn.documents import Pool
from mpfn.functions.router.admission import Admission
from mpfn.routing.admission import AdmissionConfig
from tests.factories import pool

ONE_SLOT = AdmissionConfig(per_capacity=1.0, min_limit=1.0, max_limit=1.0)


async def settle() -> None:
    """Let woken waiters resume (a grant resolves a future; its task runs a turn later)."""
    for _ in range(5):
        await asyncio.sleep(0)


def one_slot_pools(line_per_slot: float = 8.0) -> tuple[Admission, Pool, Pool]:
    return Admission(ONE_SLOT, max_queue=4, line_per_slot=line_per_slot), pool("a"), pool("b")


async def test_takes_the_first_pool_with_room_then_the_next() -> None:
    admission, a, b = one_slot_pools()
    assert await admission.acquire([a, b], "t", 0.0) is a
    assert await admission.acquire([a, b], "t", 0.0) is b
    assert await admission.acquire([a, b], "t", 0.0) is None  # full, no wait: shed


async def test_a_waiter_gets_the_freed_slot_before_a_newcomer() -> None:
    admission, a, _ = one_slot_pools()
    assert await admission.acquire([a], "t", 0.0) is a
    waiting = asyncio.create_task(admission.acquire([a], "t", 5.0))
    await asyncio.sleep(0)
    assert admission.waiting == 1
    admission.release(a, "ok", 1.0)
    assert not admission.try_take(a)  # handed to the waiter, not free for a newcomer
    assert await waiting is a
    assert admission.busy["a"] == 1


async def test_wait_budget_runs_out_then_shed_and_line_is_left() -> None:
    admission, a, _ = one_slot_pools()
    await admission.acquire([a], "t", 0.0)
    assert await admission.acquire([a], "t", 0.01) is None
    assert admission.waiting == 0
    admission.release(a, "ok", 1.0)
    assert admission.busy["a"] == 0


async def test_line_is_bounded_and_shared_between_tenants() -> None:
    admission, a, _ = one_slot_pools()  # max_queue 4
    await admission.acquire([a], "flood", 0.0)
    flood = [asyncio.create_task(admission.acquire([a], "flood", 5.0)) for _ in range(6)]
    await asyncio.sleep(0)
    assert admission.waiting == 4  # the line is full: two of the flood were shed
    assert sum(t.done() for t in flood) == 2
    other = asyncio.create_task(admission.acquire([a], "quiet", 5.0))
    await asyncio.sleep(0)
    assert other.done() and other.result() is None  # full line: shed at once
    for t in flood:
        t.cancel()
    await asyncio.gather(*flood, return_exceptions=True)
    assert admission.waiting == 0


async def test_freed_slots_go_to_tenants_in_turn() -> None:
    admission, a, _ = one_slot_pools()
    admission.max_queue = 8
    await admission.acquire([a], "flood", 0.0)
    flood = [asyncio.create_task(admission.acquire([a], "flood", 5.0)) for _ in range(3)]
    await asyncio.sleep(0)
    quiet = asyncio.create_task(admission.acquire([a], "quiet", 5.0))
    await asyncio.sleep(0)
    admission.release(a, "ok", 1.0)  # flood's first waiter (it queued first)
    await settle()
    admission.release(a, "ok", 1.0)  # then the quiet tenant, ahead of flood's others
    await settle()
    assert flood[0].done() and quiet.done() and not flood[1].done()
    for t in flood[1:]:
        t.cancel()
    await asyncio.gather(*flood, return_exceptions=True)


async def test_a_cancelled_waiter_gives_its_slot_back() -> None:
    admission, a, _ = one_slot_pools()
    await admission.acquire([a], "t", 0.0)
    waiting = asyncio.create_task(admission.acquire([a], "t", 5.0))
    await asyncio.sleep(0)
    admission.release(a, "ok", 1.0)  # granted to the waiter...
    waiting.cancel()  # ...whose client went away before it resumed
    await asyncio.gather(waiting, return_exceptions=True)
    assert admission.busy.get("a", 0) == 0
    assert await admission.acquire([a], "t", 0.0) is a


async def test_a_line_longer_than_the_slots_sheds_at_once() -> None:
    admission, a, b = one_slot_pools(line_per_slot=1.0)
    await admission.acquire([a], "t", 0.0)
    first = asyncio.create_task(admission.acquire([a], "t", 5.0))
    second = asyncio.create_task(admission.acquire([a], "t", 5.0))  # MIN_LINE: two places
    await asyncio.sleep(0)
    assert admission.waiting == 2
    # shed without waiting (sitting out this budget would hit the test timeout instead)
    assert await admission.acquire([a], "t", 3600.0) is None
    assert await admission.acquire([b], "t", 0.0) is b  # other pools are not affected
    other = asyncio.create_task(admission.acquire([a], "other", 3600.0))
    await asyncio.sleep(0)
    assert admission.waiting == 3  # another tenant still gets in line
    for task in (first, second, other):
        task.cancel()
    await asyncio.gather(first, second, other, return_exceptions=True)


async def test_must_shed_asks_without_queuing() -> None:
    admission, a, b = one_slot_pools(line_per_slot=1.0)
    assert not admission.must_shed([a, b], "t")  # free slots
    await admission.acquire([a], "t", 0.0)
    assert not admission.must_shed([a, b], "t")  # b has room
    assert not admission.must_shed([a], "t")  # full, but the line has room
    waiters = [asyncio.create_task(admission.acquire([a], "t", 5.0)) for _ in range(2)]
    await asyncio.sleep(0)
    assert admission.must_shed([a], "t")  # the tenant's line is at its least length
    assert not admission.must_shed([a], "other")  # another tenant may still queue
    assert admission.waiting == 2 and admission.busy["a"] == 1  # asking changed nothing
    assert (await admission.acquire([a], "t", 3600.0)) is None  # acquire agrees
    for waiter in waiters:
        waiter.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
