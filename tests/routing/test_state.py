from __future__ import annotations

import pytest

from mpfn.routing import PoolStatsDocument, RoutingState, Target, route, stats_key
from mpfn.routing.breaker import BreakerConfig
from tests.factories import pool
from tests.routing.factories import model, policy

M = model()


def test_in_flight_and_reported_load() -> None:
    state = RoutingState()
    state.started("a", 0.0)
    state.started("a", 0.0)
    assert state.feedback.inflight["a"] == 2
    state.finished("a", M, 12.0, True, {"x-mpfn-inflight": "7", "x-mpfn-queued": "x"}, 1.0)
    assert state.feedback.inflight["a"] == 1
    stats = state.feedback.stats["a"]
    assert (stats.reported_inflight, stats.reported_queued, stats.reported_at) == (7, 0, 1.0)
    assert stats.loaded == frozenset({"m/1"})
    # the first answer may have paid for loading: it does not feed the model's average
    assert ("a", "m/1") not in state.feedback.latency
    state.finished("a", M, 8.0, True, {}, 2.0)
    assert state.feedback.latency[("a", "m/1")].value == 8.0
    assert state.feedback.inflight["a"] == 0


def test_breaker_opens_and_closes() -> None:
    state = RoutingState(breaker_cfg=BreakerConfig(failure_threshold=2, cooldown_s=5.0))
    target = Target(M, [pool("a"), pool("b")], policy())
    for t in (0.0, 0.1):
        state.started("a", t)
        state.finished("a", M, 1.0, False, {}, t, error="connect refused")
    assert state.breaker("a", 1.0) == "open"
    d = route(target, state.feedback, now=1.0)
    assert [a.pool.id for a in d.plan] == ["b"]
    assert {e.pool: e.reason for e in d.exclusions} == {"a": "circuit open"}
    assert state.breaker("a", 5.1) == "half-open"
    state.started("a", 5.1)
    assert "a" not in [a.pool.id for a in route(target, state.feedback, now=5.2).plan]
    state.finished("a", M, 3.0, True, {}, 5.3)
    assert state.breaker("a", 5.3) == "closed"
    assert state.feedback.stats["a"].last_error == "connect refused"


def test_slowed_pool_gets_a_falling_share() -> None:
    state = RoutingState()
    target = Target(M, [pool("a", models=["m"]), pool("b", models=["m"])], policy())
    shares = []
    for phase, delay in enumerate((10.0, 40.0, 160.0)):
        picks = 0
        for i in range(200):
            now = phase * 100.0 + i * 0.01
            d = route(target, state.feedback, now=now)
            state.commit(d)
            chosen = d.plan[0].pool.id
            picks += chosen == "b"
            state.started(chosen, now)
            state.finished(chosen, M, delay if chosen == "b" else 10.0, True, {}, now)
        shares.append(picks / 200)
    assert shares[0] > shares[1] > shares[2]
    assert shares[2] < 0.1


def test_snapshot_round_trip() -> None:
    state = RoutingState()
    state.started("a", 0.0)
    state.finished("a", M, 12.0, True, {"x-mpfn-inflight": "3"}, 1.0)
    state.finished("a", M, 20.0, True, {}, 2.0)
    state.finished("a", M, 0.0, False, {}, 3.0, error="HTTP 503")
    doc = state.snapshot("a", 4.0)
    assert doc.key == stats_key("a") == "stats/a.json"
    again = PoolStatsDocument.model_validate_json(doc.model_dump_json())
    fresh = RoutingState()
    fresh.load([again])
    assert fresh.feedback.stats["a"] == state.feedback.stats["a"]
    assert dict(fresh.feedback.latency) == dict(state.feedback.latency)
    assert fresh.snapshot("a", 4.0) == doc
    # a newer local measurement is not overwritten by an older snapshot
    fresh.finished("a", M, 99.0, True, {}, 10.0)
    fresh.load([again])
    assert fresh.feedback.latency[("a", "m/1")].at == 10.0


def test_load_time_header_is_taken_out_of_the_sample() -> None:
    state = RoutingState()
    state.started("a", 0.0)
    state.finished("a", M, 2_512.0, True, {"x-mpfn-load-ms": "2500.0"}, 1.0)
    # a cold answer that says how long the load took feeds the average at once
    assert state.feedback.latency[("a", "m/1")].value == 12.0
    pool_latency = state.feedback.stats["a"].latency
    assert pool_latency is not None and pool_latency.value == 12.0
    state.finished("a", M, 10.0, True, {"x-mpfn-load-ms": "bogus"}, 2.0)
    assert state.feedback.latency[("a", "m/1")].value == 11.6


def test_failure_rate_moves_fades_and_survives_snapshots() -> None:
    state = RoutingState()
    for _ in range(3):
        state.finished("a", M, 1.0, False, {}, 4.0, error="HTTP 503")
    rate = state.feedback.stats["a"].error_rate
    assert rate == pytest.approx(1 - 0.9**3)
    state.finished("a", M, 1.0, True, {}, 4.0)
    assert state.feedback.stats["a"].error_rate == pytest.approx(0.9 * rate)
    fresh = RoutingState()
    fresh.load([state.snapshot("a", 4.0)])
    assert fresh.feedback.stats["a"].error_rate == state.feedback.stats["a"].error_rate
    # a flaky pool ranks after a healthy one even when it is cheaper
    target = Target(M, [pool("a", cost=0.0), pool("b", cost=5.0)], policy())
    state.finished("b", M, 1.0, True, {}, 4.0)
    d = route(target, state.feedback, now=4.0)
    assert [x.pool.id for x in d.plan] == ["b", "a"]
    # after a few idle half-lives the rate has faded and the cheap pool leads again
    d = route(target, state.feedback, now=4.0 + 240.0)
    assert d.plan[0].pool.id == "a"


def test_an_abandoned_probe_gives_its_slot_back() -> None:
    state = RoutingState(breaker_cfg=BreakerConfig(failure_threshold=1, cooldown_s=1.0))
    state.started("a", 0.0)
    state.finished("a", M, 1.0, False, {}, 0.0, error="refused")
    assert state.breaker("a", 0.5) == "open"
    state.started("a", 1.5)  # the half-open probe
    target = Target(M, [pool("a")], policy())
    assert route(target, state.feedback, now=1.6).plan == ()  # its one slot is taken
    state.abandoned("a")  # the client went away before the answer
    assert state.feedback.inflight["a"] == 0
    assert [x.pool.id for x in route(target, state.feedback, now=1.7).plan] == ["a"]
