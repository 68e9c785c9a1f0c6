from __future__ import annotations

from mpfn.routing import PoolStatsDocument, RoutingState, Target, route, stats_key
from mpfn.routing.breaker import BreakerConfig

from .factories import model, policy, pool

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
