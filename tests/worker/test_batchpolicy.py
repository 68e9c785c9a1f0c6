"""The pure batching decisions: when to send, how long to wait, the cost and rate estimates,
and how a model's limits come from its document, the worker and its routing policy."""

from __future__ import annotations

import math

import pytest

from mpfn.adapters.ort_worker.batching import OFF, BatchDefaults, resolve_limits
from mpfn.adapters.ort_worker.batchpolicy import (
    BatchLimits,
    CostFit,
    Decision,
    QueueView,
    Rate,
    count_arrival,
    decide,
    fit_preferred,
    observe_cost,
    rows_to_keep_up,
    share_cap,
    slot_share,
)
from mpfn.documents import Batching, ModelVersion

LIMITS = BatchLimits(max_batch_size=32, max_queue_delay_s=0.002, latency_target_s=0.1)


def fitted(fixed: float, per_row: float, sizes: tuple[int, ...] = (1, 2, 4, 8, 16)) -> CostFit:
    fit = CostFit()
    for _ in range(20):
        for rows in sizes:
            fit = observe_cost(fit, rows, fixed + per_row * rows)
    return fit


# a model whose batches cost 1 ms plus 0.1 ms per row: batching pays
AMORTISED = fitted(0.001, 0.0001)


def view(**changes: object) -> QueueView:
    base: dict[str, object] = {
        "waiting": 1,
        "oldest_wait_s": 0.0,
        "running": 1,
        "free_slots": 1,
        "arrival_per_s": 5000.0,
        "cost": AMORTISED,
    }
    base.update(changes)
    return QueueView(**base)  # type: ignore[arg-type]


def test_a_request_that_finds_the_model_idle_is_sent_at_once() -> None:
    # however busy the recent past and however much batching would pay
    assert decide(view(running=0, waiting=1), LIMITS) == Decision(1)
    assert decide(view(running=0, waiting=5), LIMITS) == Decision(5)


def test_nothing_waiting_or_no_free_slot_sends_nothing() -> None:
    assert decide(view(waiting=0), LIMITS).take == 0
    no_slot = decide(view(waiting=7, free_slots=0), LIMITS)
    assert no_slot.take == 0 and math.isinf(no_slot.wait_s)


def test_a_full_batch_goes_now_capped_at_the_largest_preferred_size() -> None:
    assert decide(view(waiting=40), LIMITS) == Decision(32)
    preferring = BatchLimits(32, 0.002, preferred=(8, 24))
    assert decide(view(waiting=40), preferring) == Decision(24)
    assert decide(view(waiting=8), preferring) == Decision(8)


def test_low_load_never_waits() -> None:
    # 50 rows/s against a 1.1 ms batch of one: one row per batch keeps up easily
    assert decide(view(arrival_per_s=50.0), LIMITS) == Decision(1)


def test_high_load_waits_for_enough_rows_within_the_cap() -> None:
    decision = decide(view(waiting=2, arrival_per_s=5000.0), LIMITS)
    assert decision.take == 0
    target = rows_to_keep_up(5000.0, AMORTISED, 2)
    assert target > 2
    assert decision.wait_s == pytest.approx((target - 2) / 5000.0)
    assert decision.wait_s <= LIMITS.max_queue_delay_s


def test_enough_rows_waiting_go_now() -> None:
    target = math.ceil(rows_to_keep_up(5000.0, AMORTISED, 2))
    assert decide(view(waiting=target, arrival_per_s=5000.0), LIMITS) == Decision(target)


def test_the_wait_ends_at_max_queue_delay() -> None:
    slow = view(waiting=2, arrival_per_s=3000.0)
    assert decide(slow, LIMITS).wait_s <= LIMITS.max_queue_delay_s
    late = view(waiting=2, arrival_per_s=3000.0, oldest_wait_s=LIMITS.max_queue_delay_s)
    assert decide(late, LIMITS) == Decision(2)


def test_the_wait_stays_within_the_latency_target() -> None:
    # a 30 ms target leaves 15 ms for queueing plus the batch: with 16 ms batches, none
    slow_model = fitted(0.016, 0.0001)
    tight = BatchLimits(32, 0.010, latency_target_s=0.030)
    assert decide(view(waiting=2, cost=slow_model, arrival_per_s=2000.0), tight) == Decision(2)
    roomy = BatchLimits(32, 0.010, latency_target_s=1.0)
    assert decide(view(waiting=2, cost=slow_model, arrival_per_s=2000.0), roomy).take == 0


def test_no_wait_when_batching_does_not_pay() -> None:
    # run time proportional to rows: bigger batches raise no throughput
    linear = fitted(0.0, 0.001)
    assert decide(view(waiting=2, cost=linear, arrival_per_s=5000.0), LIMITS) == Decision(2)
    # nothing measured yet
    assert decide(view(waiting=2, cost=CostFit()), LIMITS) == Decision(2)


def test_a_preferred_size_goes_when_reached_and_is_the_target_above() -> None:
    preferring = BatchLimits(32, 0.002, preferred=(4, 16))
    assert decide(view(waiting=4, arrival_per_s=50000.0), preferring) == Decision(4)
    decision = decide(view(waiting=5, arrival_per_s=50000.0), preferring)
    assert decision.take == 0  # heading for 16


def test_a_slot_takes_its_share_of_the_rows_in_the_system_and_leaves_the_rest() -> None:
    # 500 rows/s spending 64 ms each from arrival to answer: 32 rows in the system, 16 per
    # slot (Little's law); 28 waiting while another batch runs: 16 go, 12 wait for the next
    # slot rather than one batch taking every client while the other slot trickles
    busy = view(waiting=28, arrival_per_s=500.0, sojourn_s=0.064)
    assert slot_share(busy) == pytest.approx(16.0)
    assert decide(busy, LIMITS) == Decision(16)
    # fewer than the share waiting: wait for the rest (within max_queue_delay)
    assert decide(view(waiting=9, arrival_per_s=500.0, sojourn_s=0.064), LIMITS).take == 0
    # past the delay: what waits goes, still at most the share
    late = view(waiting=9, arrival_per_s=500.0, sojourn_s=0.064, oldest_wait_s=0.003)
    assert decide(late, LIMITS) == Decision(9)
    # no time in system measured yet: the rate rule alone, every waiting row goes
    assert decide(view(waiting=28, arrival_per_s=500.0), LIMITS) == Decision(28)
    # batching does not pay: no share is kept back
    linear = fitted(0.0, 0.001)
    assert decide(view(waiting=28, cost=linear, sojourn_s=0.064), LIMITS) == Decision(28)


def test_a_slot_taken_in_the_admission_line_is_used_at_once_up_to_the_share() -> None:
    # it would have waited for more rows, but the slot is not kept idle
    assert decide(view(waiting=2, arrival_per_s=5000.0), LIMITS).take == 0
    assert decide(view(waiting=2, arrival_per_s=5000.0, holding=True), LIMITS) == Decision(2)
    # with another batch running, the share and no more (the rest is the next slot's);
    # alone, every waiting row up to the batch size
    crowd = {"waiting": 28, "arrival_per_s": 500.0, "sojourn_s": 0.064, "holding": True}
    assert decide(view(**crowd, oldest_wait_s=0.0), LIMITS) == Decision(16)
    assert decide(view(**crowd, running=0), LIMITS) == Decision(28)


def test_share_cap() -> None:
    assert share_cap(28, 15.2) == 16
    assert share_cap(9, 16.0) == 9
    assert share_cap(28, 0.0) == 28  # unknown share: no cap


def test_cost_fit_recovers_fixed_and_per_row_cost() -> None:
    fixed, per_row = fitted(0.002, 0.0005).fixed_and_per_row()
    assert fixed == pytest.approx(0.002, rel=1e-6)
    assert per_row == pytest.approx(0.0005, rel=1e-6)
    # one size only: all of it counts per row (no evidence batching pays)
    assert fitted(0.002, 0.0, sizes=(1,)).fixed_and_per_row() == pytest.approx((0.0, 0.002))
    assert CostFit().fixed_and_per_row() == (0.0, 0.0)


def test_cost_fit_follows_recent_batches() -> None:
    fit = fitted(0.010, 0.001)
    for _ in range(400):
        for rows in (1, 8):
            fit = observe_cost(fit, rows, 0.001 + 0.0001 * rows)
    fixed, per_row = fit.fixed_and_per_row()
    assert fixed == pytest.approx(0.001, rel=0.01)
    assert per_row == pytest.approx(0.0001, rel=0.01)


def test_rows_to_keep_up() -> None:
    assert rows_to_keep_up(0.0, AMORTISED, 2) == 1.0
    assert rows_to_keep_up(1000.0, CostFit(), 2) == 1.0
    # per-row cost alone exceeds the slots: no batch size keeps up
    assert math.isinf(rows_to_keep_up(1e6, AMORTISED, 2))
    # 2 slots * b / (1 ms + 0.1 ms b) >= 5000 / 0.8  ->  b >= 6.25 / 1.375
    assert rows_to_keep_up(5000.0, AMORTISED, 2) == pytest.approx(6.25 / 1.375)


def test_arrival_rate_decays_with_time() -> None:
    rate = Rate()
    for i in range(100):
        rate = count_arrival(rate, i * 0.001)  # 1000 rows/s for 0.1 s
    busy = rate.per_second(0.1)
    assert 300 < busy < 1000
    assert rate.per_second(5.0) < 1e-6
    assert count_arrival(Rate(), 1.0, rows=4).count == 4


def test_fit_preferred() -> None:
    assert fit_preferred(10, (4, 8, 16)) == 8
    assert fit_preferred(3, (4, 8)) == 3
    assert fit_preferred(10, ()) == 10


def test_limits_come_from_the_document_over_the_worker_defaults() -> None:
    off, on = BatchDefaults(), BatchDefaults(max_batch_size=16, max_queue_delay_us=500)
    assert resolve_limits(None, off, None) == OFF
    assert resolve_limits(None, on, None) == BatchLimits(16, 0.0005, (), 0.05)
    doc = Batching(max_batch_size=8, preferred_batch_sizes=[4, 2])
    assert resolve_limits(doc, off, 200.0) == BatchLimits(8, 0.002, (2, 4), 0.2)
    assert resolve_limits(Batching(max_batch_size=1), on, None) == OFF
    assert resolve_limits(Batching(max_batch_size=0), on, None) == OFF
    assert resolve_limits(Batching(max_queue_delay_us=0), on, None).max_queue_delay_s == 0.0


def test_batching_section_is_optional_and_validated() -> None:
    old = ModelVersion.model_validate({"name": "m", "version": "1"})
    assert old.batching is None
    assert "batching" not in old.model_dump_json()  # readers without the field parse it
    doc = ModelVersion.model_validate(
        {"name": "m", "version": "1", "batching": {"max_batch_size": 8}}
    )
    assert doc.batching == Batching(max_batch_size=8)
    with pytest.raises(ValueError, match="cannot exceed"):
        Batching(max_batch_size=4, preferred_batch_sizes=[8])
    with pytest.raises(ValueError, match="at least 1"):
        Batching(preferred_batch_sizes=[0])
    with pytest.raises(ValueError):
        Batching.model_validate({"max_batch_size": 4, "unknown": 1})
