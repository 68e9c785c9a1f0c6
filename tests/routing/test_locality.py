"""Sites and locality in the routing core: scoring, ranking and the route reason."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpfn.documents import Pool
from mpfn.routing import (
    DEFAULT_CONFIG,
    NO_FEEDBACK,
    Feedback,
    Limits,
    PoolStats,
    RoutingConfig,
    Target,
    rank,
    route,
    score_pools,
)
from mpfn.routing.breaker import Breaker
from mpfn.routing.locality import left_for
from mpfn.routing.stats import Ewma
from tests.factories import pool
from tests.routing.factories import model, policy

M = model()
REF = "m/1"
AT_A = RoutingConfig(site="a")
FASTEST = Limits(objective="fastest")


def observed(latencies: dict[str, float], at: float = 0.0) -> Feedback:
    stats = {
        p: PoolStats(latency=Ewma(ms, at), loaded=frozenset({REF})) for p, ms in latencies.items()
    }
    return Feedback(stats, {}, {}, {}, {})


def order(
    pools: list[Pool], fb: Feedback, cfg: RoutingConfig, limits: Limits = FASTEST
) -> tuple[list[str], int]:
    scores, _ = score_pools(M, pools, fb, limits, 0.0, cfg)
    ranked, near = rank(scores, limits, cfg)
    return [s.pool.id for s in ranked], near


def test_own_site_wins_a_tie() -> None:
    pools = [pool("x", site="b"), pool("y", site="a")]
    fb = observed({"x": 10.0, "y": 10.0})
    assert order(pools, fb, DEFAULT_CONFIG) == (["x", "y"], 2)  # by id, sharing the traffic
    assert order(pools, fb, AT_A) == (["y", "x"], 1)
    assert order(pools, fb, RoutingConfig(site="b")) == (["x", "y"], 1)


def test_own_site_takes_the_traffic_within_the_tolerance_band() -> None:
    pools = [pool("x", site="b"), pool("y", site="a"), pool("z", site="b")]
    fb = observed({"x": 10.0, "y": 12.0, "z": 11.0})  # all within 25% of the best
    assert order(pools, fb, DEFAULT_CONFIG) == (["x", "z", "y"], 3)
    assert order(pools, fb, AT_A) == (["y", "x", "z"], 1)
    # Outside the band the faster pool of the other site stays first.
    slow_home = observed({"x": 10.0, "y": 20.0, "z": 11.0})
    assert order(pools, slow_home, AT_A) == (["x", "z", "y"], 2)


def test_a_pool_without_a_site_is_never_away() -> None:
    pools = [pool("x", site="b"), pool("y")]
    fb = observed({"x": 10.0, "y": 10.0})
    assert order(pools, fb, AT_A) == (["y", "x"], 1)
    scores, _ = score_pools(M, pools, NO_FEEDBACK, FASTEST, 0.0, AT_A)
    assert {s.pool.id: s.base_ms for s in scores} == {"x": 80.0, "y": 50.0}


def test_cross_site_ms_only_raises_the_prior_of_unobserved_pools() -> None:
    pools = [pool("a-1", site="a"), pool("b-1", site="b"), pool("b-2", site="b")]
    cfg = RoutingConfig(site="a", cross_site_ms=30.0)
    scores, _ = score_pools(M, pools, NO_FEEDBACK, FASTEST, 0.0, cfg)
    prior = cfg.prior_latency_ms
    assert [s.base_ms for s in scores] == [prior, prior + 30.0, prior + 30.0]
    # b-1 was observed: its average already holds the distance. The prior is that average
    # less the distance (50 - 30 ms): the unobserved b-2 pays the distance, a-1 does not.
    scores, _ = score_pools(M, pools, observed({"b-1": 50.0}), FASTEST, 0.0, cfg)
    assert [s.base_ms for s in scores] == [20.0, 50.0, 50.0]
    # An average observed for the model itself counts as it is too.
    fb = Feedback({}, {("b-1", REF): Ewma(15.0, 0.0)}, {}, {}, {})
    scores, _ = score_pools(M, pools, fb, FASTEST, 0.0, cfg)
    assert [s.base_ms for s in scores] == [prior, 15.0, prior + 30.0]


def test_cross_site_cost_is_added_per_request() -> None:
    pools = [pool("a-1", site="a", cost=3.6), pool("b-1", site="b", cost=3.6), pool("n", cost=3.6)]
    fb = observed({"a-1": 10.0, "b-1": 10.0, "n": 10.0})
    cfg = RoutingConfig(site="a", cross_site_cost_per_1k=0.5)
    scores, _ = score_pools(M, pools, fb, FASTEST, 0.0, cfg)
    compute = 3.6 * 10.0 / 3_600_000.0
    assert [s.cost for s in scores] == pytest.approx([compute, compute + 0.0005, compute])
    # The egress makes the cheap pool of the other site the dearer one.
    cheap_away = [pool("a-1", site="a", cost=3.6), pool("b-1", site="b", cost=0.36)]
    limits = Limits(objective="cheapest")
    assert order(cheap_away, fb, RoutingConfig(site="a"), limits)[0] == ["b-1", "a-1"]
    assert order(cheap_away, fb, cfg, limits)[0] == ["a-1", "b-1"]


def test_default_egress_is_free() -> None:
    assert DEFAULT_CONFIG.cross_site_cost_per_1k == 0.0
    assert DEFAULT_CONFIG.cross_site_ms == 30.0
    scores, _ = score_pools(M, [pool("b-1", site="b", cost=3.6)], NO_FEEDBACK, FASTEST, 0.0, AT_A)
    assert scores[0].cost == pytest.approx(3.6 * 80.0 / 3_600_000.0)


SITES = st.sampled_from([None, "a", "b"])


@st.composite
def sited_pools(draw: st.DrawFn) -> list[Pool]:
    n = draw(st.integers(1, 6))
    return [
        pool(
            f"p{i}",
            site=draw(SITES),
            cost=draw(st.sampled_from([0.0, 0.36, 3.6])),
            capacity=draw(st.integers(0, 3)),
        )
        for i in range(n)
    ]


@st.composite
def some_feedback(draw: st.DrawFn, pools: list[Pool]) -> Feedback:
    stats, breakers = {}, {}
    for p in pools:
        if draw(st.booleans()):
            stats[p.id] = PoolStats(latency=Ewma(draw(st.floats(1, 300)), 0.0))
        if draw(st.booleans()):
            breakers[p.id] = Breaker("open", 5, 0.0, 0)
    return Feedback(stats, {}, {}, breakers, {})


@settings(max_examples=200)
@given(st.data())
def test_locality_off_decides_as_without_a_site(data: st.DataObject) -> None:
    pools = data.draw(sited_pools())
    fb = data.draw(some_feedback(pools))
    pol = policy(
        objective=data.draw(st.sampled_from(["slo-then-cost", "fastest", "cheapest"])),
        latency_slo_ms=data.draw(st.none() | st.sampled_from([20.0, 80.0])),
    )
    target = Target(M, pools, pol)
    off = RoutingConfig(
        site=data.draw(st.sampled_from(["a", "b"])),
        locality=False,
        cross_site_ms=100.0,
        cross_site_cost_per_1k=1.0,
    )
    today = route(target, fb, now=1.0)
    ignored = route(target, fb, now=1.0, cfg=off)
    assert ignored == today
    assert "left site" not in ignored.route_reason


@settings(max_examples=200)
@given(st.data())
def test_a_site_no_pool_has_changes_nothing(data: st.DataObject) -> None:
    pools = [p.model_copy(update={"site": None}) for p in data.draw(sited_pools())]
    fb = data.draw(some_feedback(pools))
    target = Target(M, pools, policy(objective="fastest"))
    today = route(target, fb, now=1.0)
    at_a = route(target, fb, now=1.0, cfg=AT_A)
    assert at_a._replace(site=None) == today
    assert at_a.route_reason == today.route_reason


def test_reason_when_no_pool_of_the_site_can_serve() -> None:
    pools = [pool("a-1", site="a"), pool("b-1", site="b")]
    fb = Feedback({}, {}, {}, {"a-1": Breaker("open", 5, 0.0, 0)}, {})
    d = route(Target(M, pools, policy(objective="fastest")), fb, now=1.0, cfg=AT_A)
    assert d.chosen is not None and d.chosen.pool.id == "b-1"
    assert d.route_reason.endswith(
        "; left site a for b: no pool in site a can serve (a-1: circuit open)"
    )
    assert d.explain().as_dict()["site"] == "a"
    # No pool of the site serves the model at all.
    only_b = route(Target(M, [pool("b-1", site="b")], policy()), NO_FEEDBACK, now=1.0, cfg=AT_A)
    assert only_b.route_reason.endswith("; left site a for b: no pool in site a serves model m")


def test_reason_names_at_most_three_excluded_pools() -> None:
    pools = [pool(f"a-{i}", site="a", capacity=0) for i in range(5)] + [pool("b-1", site="b")]
    d = route(Target(M, pools, policy()), NO_FEEDBACK, now=1.0, cfg=AT_A)
    assert d.left_site == (
        "left site a for b: no pool in site a can serve "
        "(a-0: no capacity; a-1: no capacity; a-2: no capacity; 2 more)"
    )


def test_reason_when_the_other_site_ranked_first() -> None:
    pools = [pool("a-1", site="a"), pool("b-1", site="b")]
    fb = observed({"a-1": 45.0, "b-1": 12.0})
    d = route(Target(M, pools, policy(objective="fastest")), fb, now=0.0, cfg=AT_A)
    assert d.chosen is not None and d.chosen.pool.id == "b-1"
    assert d.left_site == "left site a for b: b-1 ranked first (12.0 ms vs 45.0 ms at a-1)"
    assert d.route_reason.startswith("fastest: 12.0ms")
    # By cost, the comparison is in dollars.
    dear = [pool("a-1", site="a", cost=36.0), pool("b-1", site="b", cost=0.36)]
    fb = observed({"a-1": 10.0, "b-1": 10.0})
    d = route(Target(M, dear, policy(objective="cheapest")), fb, now=0.0, cfg=AT_A)
    assert d.left_site == "left site a for b: b-1 ranked first ($0.001/1k vs $0.1/1k at a-1)"
    # Missing the SLO, and failing, are said so.
    fb = observed({"a-1": 45.0, "b-1": 12.0})
    d = route(Target(M, pools, policy(latency_slo_ms=20.0)), fb, now=0.0, cfg=AT_A)
    assert d.left_site.endswith("(12.0 ms vs 45.0 ms at a-1 misses-slo)")
    flaky = Feedback(
        {"a-1": PoolStats(latency=Ewma(5.0, 0.0), error_rate=0.5, observed_at=0.0)},
        {},
        {},
        {},
        {},
    )
    d = route(Target(M, pools, policy(objective="fastest")), flaky, now=0.0, cfg=AT_A)
    assert d.left_site == "left site a for b: b-1 ranked first (a-1 failing 50%)"


def test_no_clause_when_the_choice_is_home_or_unsited() -> None:
    pools = [pool("a-1", site="a"), pool("b-1", site="b"), pool("n")]
    d = route(Target(M, pools, policy()), NO_FEEDBACK, now=0.0, cfg=AT_A)
    assert d.chosen is not None and d.chosen.pool.id in ("a-1", "n")
    assert d.left_site == "" and "left site" not in d.route_reason
    fb = Feedback({}, {}, {}, {"a-1": Breaker("open", 5, 0.0, 0)}, {})
    d = route(Target(M, pools, policy()), fb, now=1.0, cfg=AT_A)
    assert d.chosen is not None and d.chosen.pool.id == "n" and d.left_site == ""


def test_failover_clause() -> None:
    a, b, c, n = pool("a-1", site="a"), pool("b-1", site="b"), pool("c-1", site="c"), pool("n")
    assert left_for("a", a, b) == "left site a for b"
    assert left_for("a", b, c) == "left site a for c"
    assert left_for("a", b, b) == ""  # the route reason already said it
    assert left_for("a", b, a) == left_for("a", a, n) == left_for(None, a, b) == ""


def test_config_checks_the_site() -> None:
    with pytest.raises(ValueError, match="not a site name"):
        RoutingConfig(site="Site A")
    with pytest.raises(ValueError, match="cross_site_ms"):
        RoutingConfig(cross_site_ms=-1.0)
    assert RoutingConfig(site="a", locality=False).home is None


def test_an_untried_home_pool_is_not_priced_at_the_distance_to_a_remote_one() -> None:
    # only the remote pool was observed: 42 ms, of which 40 ms are the way there and back
    pools = [pool("a-1", site="a", cost=1.0), pool("b-1", site="b", cost=0.05)]
    cfg = RoutingConfig(site="a", cross_site_ms=40.0)
    scores, _ = score_pools(M, pools, observed({"b-1": 42.0}), Limits(), 0.0, cfg)
    assert {s.pool.id: s.base_ms for s in scores}["a-1"] == pytest.approx(2.0)
    ranked, _ = rank(scores, Limits(), cfg)
    assert ranked[0].pool.id == "a-1"  # tried, so its own latency replaces the guess
