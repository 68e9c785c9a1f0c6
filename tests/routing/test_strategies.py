"""Baseline strategies: same hard constraints as mpfn's filter, their own order."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpfn.routing import (
    NO_FEEDBACK,
    RequestHints,
    RoutingState,
    Strategy,
    Target,
    route_baseline,
)
from mpfn.routing.breaker import Breaker
from mpfn.routing.stats import Feedback
from tests.factories import pool
from tests.routing.factories import model, policy

M = model()


@settings(max_examples=100)
@given(st.sampled_from(["round-robin", "random", "least-loaded"]), st.integers(0, 100))
def test_baselines_keep_hard_constraints_but_ignore_breakers(strategy: Strategy, turn: int) -> None:
    pools = [
        pool("a"),
        pool("b", cloud="aws"),
        pool("c", hardware=["nvidia"]),
        pool("d", capacity=0),
        pool("e"),
    ]
    target = Target(M, pools, policy(allowed_clouds=["local"]))
    open_a = Feedback({}, {}, {}, {"a": Breaker("open", 5, 0.0, 0)}, {})
    d = route_baseline(strategy, target, open_a, now=0.0, rng=random.Random(turn), turn=turn)
    assert sorted(a.pool.id for a in d.plan) == ["a", "e"]
    assert {e.pool for e in d.exclusions} == {"b", "c", "d"}
    assert d.route_reason.startswith(strategy)


def test_round_robin_rotates_and_random_is_seeded() -> None:
    target = Target(M, [pool("c"), pool("a"), pool("b")], policy())
    firsts = [
        route_baseline("round-robin", target, NO_FEEDBACK, now=0.0, rng=random.Random(0),
                       turn=t).plan[0].pool.id
        for t in range(6)
    ]  # fmt: skip
    assert firsts == ["a", "b", "c", "a", "b", "c"]
    draws = [
        route_baseline("random", target, NO_FEEDBACK, now=0.0, rng=random.Random(9), turn=0).plan
        for _ in range(3)
    ]
    assert draws[0] == draws[1] == draws[2]
    spread = Counter(
        route_baseline("random", target, NO_FEEDBACK, now=0.0, rng=random.Random(s), turn=0)
        .plan[0]
        .pool.id
        for s in range(300)
    )
    assert set(spread) == {"a", "b", "c"} and min(spread.values()) > 60


def test_least_loaded_follows_in_flight_counts() -> None:
    target = Target(M, [pool("a"), pool("b"), pool("c")], policy())
    state = RoutingState()
    state.started("a", 0.0)
    state.started("a", 0.0)
    state.started("b", 0.0)
    plans = [
        [x.pool.id for x in route_baseline("least-loaded", target, state.feedback, now=0.0,
                                           rng=random.Random(0), turn=t).plan]
        for t in range(3)
    ]  # fmt: skip
    assert all(p == ["c", "b", "a"] for p in plans)


def test_baselines_obey_pins_and_mpfn_is_not_a_baseline() -> None:
    target = Target(M, [pool("a"), pool("b")], policy())
    d = route_baseline("random", target, NO_FEEDBACK, now=0.0, rng=random.Random(0), turn=0,
                       hints=RequestHints(pool="b"))  # fmt: skip
    assert [a.pool.id for a in d.plan] == ["b"]
    with pytest.raises(ValueError, match="use route for mpfn"):
        route_baseline("mpfn", target, NO_FEEDBACK, now=0.0, rng=random.Random(0), turn=0)
