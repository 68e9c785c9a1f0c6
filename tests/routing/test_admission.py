"""The adaptive concurrency limit (AIMD on latency and busy answers) and answer classes."""

from __future__ import annotations

from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from mpfn.routing.admission import AdmissionConfig, Limit, Outcome, classify, initial, observe

CFG = AdmissionConfig(per_capacity=2.0, min_limit=1.0, max_limit=64.0)


def test_initial_limit_follows_capacity() -> None:
    assert initial(4, CFG).value == 8.0
    assert initial(0, CFG).value == 2.0  # a pool without declared capacity still gets slots
    assert initial(1000, CFG).value == 64.0


def test_fast_answers_grow_the_limit_about_one_per_window() -> None:
    limit = initial(2, CFG)  # 4
    for i in range(4):
        limit = observe(limit, "ok", 1.0, now=float(i), cfg=CFG)
    assert 4.9 < limit.value < 5.1


def test_slow_answers_and_busy_answers_shrink_it_once_per_interval() -> None:
    limit = observe(initial(8, CFG), "ok", 1.0, now=0.0, cfg=CFG)
    before = limit.value
    limit = observe(limit, "ok", 10.0, now=1.0, cfg=CFG)  # 10x the no-load latency
    assert limit.value == before * CFG.backoff
    same = observe(limit, "busy", 1.0, now=1.0 + CFG.decrease_interval_s / 2, cfg=CFG)
    assert same.value == limit.value  # one burst is one decrease
    later = observe(limit, "busy", 1.0, now=1.0 + CFG.decrease_interval_s, cfg=CFG)
    assert later.value == limit.value * CFG.backoff


def test_failures_are_left_to_the_breaker() -> None:
    limit = initial(2, CFG)
    assert observe(limit, "failure", 5000.0, now=1.0, cfg=CFG) == limit


def test_baseline_drifts_up_so_a_slower_pool_gets_a_new_one() -> None:
    limit = observe(Limit(8.0), "ok", 1.0, now=0.0, cfg=CFG)
    # 3 ms is slow at t=1 (3x the 1 ms baseline) but fine much later (the minimum aged)
    assert observe(limit, "ok", 3.0, now=1.0, cfg=CFG).value < limit.value
    assert observe(limit, "ok", 3.0, now=200.0, cfg=CFG).value > limit.value


@given(
    st.lists(
        st.tuples(st.sampled_from(["ok", "busy", "failure"]), st.floats(0.0, 1e4)),
        max_size=200,
    )
)
def test_limit_stays_within_bounds(events: list[tuple[str, float]]) -> None:
    limit = initial(3, CFG)
    for i, (outcome, latency) in enumerate(events):
        limit = observe(limit, cast(Outcome, outcome), latency, now=i * 0.01, cfg=CFG)
        assert CFG.min_limit <= limit.value <= CFG.max_limit
        assert limit.slots >= 1


def test_classify_backpressure_versus_failure() -> None:
    retry = CIMultiDict({"Retry-After": "1"})
    none: CIMultiDict[str] = CIMultiDict()
    assert classify(429, none) == "busy"
    assert classify(503, retry) == "busy"
    assert classify(503, none) == "failure"
    assert classify(500, retry) == "failure"
    assert classify(501, none) == "ok" and classify(200, none) == "ok"
    assert classify(404, none) == "ok"  # the pool answered; the client is wrong


def test_a_reported_queue_steers_the_limit_instead_of_latency() -> None:
    cfg = AdmissionConfig(per_capacity=2.0, min_limit=1.0, max_limit=64.0, queue_target=2)
    limit = observe(initial(4, cfg), "ok", 1.0, now=0.0, cfg=cfg, queued=0)
    grown = observe(limit, "ok", 50.0, now=1.0, cfg=cfg, queued=0)
    assert grown.value > limit.value  # slow but nothing waits at the pool: room to grow
    held = observe(limit, "ok", 1.0, now=1.0, cfg=cfg, queued=cfg.queue_target)
    assert held.value == limit.value
    shrunk = observe(limit, "ok", 1.0, now=1.0, cfg=cfg, queued=cfg.queue_target + 1)
    assert shrunk.value == limit.value * cfg.backoff


def test_by_default_any_reported_queue_shrinks_the_limit() -> None:
    assert CFG.queue_target == 0
    limit = observe(initial(4, CFG), "ok", 1.0, now=0.0, cfg=CFG, queued=0)
    assert observe(limit, "ok", 1.0, now=1.0, cfg=CFG, queued=0).value > limit.value
    shrunk = observe(limit, "ok", 1.0, now=1.0, cfg=CFG, queued=1)
    assert shrunk.value == limit.value * CFG.backoff


def test_the_pool_queue_target_is_a_router_setting() -> None:
    from mpfn.functions.router.settings import RouterSettings

    assert RouterSettings.from_env({}).admission_config.queue_target == 0
    env = {"MPFN_ROUTER_POOL_QUEUE_TARGET": "2"}
    assert RouterSettings.from_env(env).admission_config.queue_target == 2
    with pytest.raises(ValueError, match="pool_queue_target"):
        RouterSettings.from_env({"MPFN_ROUTER_POOL_QUEUE_TARGET": "-1"})


def test_rows_collected_for_a_batch_are_not_a_queue() -> None:
    from mpfn.functions.router.forward import queued_of

    assert queued_of({}) is None
    assert queued_of({"x-mpfn-queued": "3"}) == 3
    assert queued_of({"x-mpfn-queued": "3", "x-mpfn-batch-size": "1"}) == 3
    assert queued_of({"x-mpfn-queued": "3", "x-mpfn-batch-size": "8"}) == 0
    assert queued_of({"x-mpfn-queued": "9", "x-mpfn-batch-size": "8"}) == 2
    assert queued_of({"x-mpfn-queued": "2", "x-mpfn-batch-size": "x"}) == 2
    assert queued_of({"x-mpfn-queued": "many"}) is None
