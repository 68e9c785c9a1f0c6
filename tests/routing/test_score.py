from __future__ import annotations

import pytest

from mpfn.documents import Pool
from mpfn.routing import (
    DEFAULT_CONFIG,
    Feedback,
    Limits,
    PoolStats,
    RoutingConfig,
    rank,
    score_pools,
)
from mpfn.routing.stats import Ewma
from tests.factories import pool
from tests.routing.factories import model

CFG = DEFAULT_CONFIG
M = model()
REF = "m/1"


def feedback(
    latencies: dict[str, float], *, loaded: bool = True, inflight: dict[str, int] | None = None
) -> Feedback:
    stats = {
        p: PoolStats(latency=Ewma(ms, 0.0), loaded=frozenset({REF}) if loaded else frozenset())
        for p, ms in latencies.items()
    }
    return Feedback(stats, {}, inflight or {}, {}, {})


def best(pools: list[Pool], fb: Feedback, limits: Limits) -> list[str]:
    scores, _ = score_pools(M, pools, fb, limits, 0.0, CFG)
    return [s.pool.id for s in rank(scores, limits, CFG)[0]]


POOLS = [
    pool("fast-dear", cost=36.0),  # 10 ms -> $0.0001 per request
    pool("mid", cost=3.6),  # 40 ms -> $0.00004
    pool("slow-cheap", cost=0.36),  # 200 ms -> $0.00002
]
FB = feedback({"fast-dear": 10.0, "mid": 40.0, "slow-cheap": 200.0})


def test_fastest() -> None:
    assert best(POOLS, FB, Limits(objective="fastest")) == ["fast-dear", "mid", "slow-cheap"]


def test_cheapest() -> None:
    assert best(POOLS, FB, Limits(objective="cheapest")) == ["slow-cheap", "mid", "fast-dear"]


def test_slo_then_cost_picks_cheapest_meeting_the_slo() -> None:
    limits = Limits(objective="slo-then-cost", latency_slo_ms=50)
    assert best(POOLS, FB, limits) == ["mid", "fast-dear", "slow-cheap"]


def test_slo_then_cost_falls_back_to_fastest_when_nothing_meets_it() -> None:
    limits = Limits(objective="slo-then-cost", latency_slo_ms=5)
    assert best(POOLS, FB, limits) == ["fast-dear", "mid", "slow-cheap"]


def test_slo_then_cost_without_slo_is_cheapest() -> None:
    assert best(POOLS, FB, Limits())[0] == "slow-cheap"


def test_components_and_cost() -> None:
    fb = feedback({"p": 20.0}, loaded=False, inflight={"p": 3})
    m = model(load_ms=500.0)
    (s,), _ = score_pools(m, [pool("p", cost=7.2, capacity=2)], fb, Limits(), 0.0, CFG)
    assert s.base_ms == 20.0
    assert s.queue_ms == pytest.approx(20.0 * 3 / 2)
    assert s.load_ms == 500.0
    assert s.latency_ms == pytest.approx(20 + 30 + 500)
    assert s.cost == pytest.approx(7.2 * 0.520 / 3600 / 2)


def test_default_load_time_and_listed_models() -> None:
    fb = Feedback({}, {}, {}, {}, {})
    pessimist = RoutingConfig(assume_loaded=False)
    pools = [pool("a"), pool("b", models=["m"])]
    scores, _ = score_pools(M, pools, fb, Limits(), 0.0, pessimist)
    assert [s.load_ms for s in scores] == [pessimist.default_load_ms, 0.0]
    assert [s.base_ms for s in scores] == [CFG.prior_latency_ms] * 2
    # By default a pool that never said what it holds gets the benefit of the doubt...
    scores, _ = score_pools(M, pools, fb, Limits(), 0.0, CFG)
    assert [s.load_ms for s in scores] == [0.0, 0.0]
    # ...but once it said (here: nothing loaded), a load is expected.
    told = Feedback({"a": PoolStats(loaded=frozenset())}, {}, {}, {}, {})
    scores, _ = score_pools(M, pools, told, Limits(), 0.0, CFG)
    assert [s.load_ms for s in scores] == [CFG.default_load_ms, 0.0]


def test_reported_load_counts_while_fresh() -> None:
    stats = {
        "p": PoolStats(
            latency=Ewma(10.0, 0.0),
            reported_inflight=4,
            reported_queued=2,
            reported_at=0.0,
            loaded=frozenset({"m"}),
        )
    }
    fb = Feedback(stats, {}, {"p": 1}, {}, {})
    fresh, _ = score_pools(M, [pool("p", capacity=2)], fb, Limits(), 1.0, CFG)
    assert fresh[0].queue_ms == pytest.approx(10.0 * (4 + 2) / 2, rel=0.05)
    stale, _ = score_pools(M, [pool("p", capacity=2)], fb, Limits(), 100.0, CFG)
    assert stale[0].load_ms == 0.0  # a bare name counts as any version loaded
    assert stale[0].queue_ms == pytest.approx(stale[0].base_ms * 1 / 2)


def test_model_average_beats_pool_average_and_decays() -> None:
    stats = {"p": PoolStats(latency=Ewma(100.0, 0.0), loaded=frozenset({REF}))}
    fb = Feedback(stats, {("p", REF): Ewma(10.0, 0.0)}, {}, {}, {})
    (now,), _ = score_pools(M, [pool("p")], fb, Limits(), 0.0, CFG)
    assert now.base_ms == 10.0
    half = CFG.stale_half_life_s
    (later,), _ = score_pools(M, [pool("p")], fb, Limits(), half, CFG)
    pool_avg = 0.5 * 100.0 + 0.5 * CFG.prior_latency_ms
    assert later.base_ms == pytest.approx(0.5 * 10.0 + 0.5 * pool_avg)


def test_cost_budget_excludes_with_reason() -> None:
    scores, excluded = score_pools(M, POOLS, FB, Limits(max_cost=0.00005), 0.0, CFG)
    assert {s.pool.id for s in scores} == {"mid", "slow-cheap"}
    assert [e.pool for e in excluded] == ["fast-dear"]
    assert "over budget" in excluded[0].reason
