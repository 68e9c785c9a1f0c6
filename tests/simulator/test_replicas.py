"""Property tests for the pure desired-warm-replicas function."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mpfn.warm.replicas import ReplicaDemand, desired_replicas, raw_need

demand = st.builds(
    ReplicaDemand,
    model=st.sampled_from(["a", "b", "c", "d"]),
    pool=st.sampled_from(["p1", "p2"]),
    upper_rps=st.floats(0, 100),
    capacity_rps=st.floats(0.1, 20),
    memory_mb=st.floats(1, 4000),
    cost_per_hour=st.floats(0, 5),
    min_replicas=st.integers(0, 2),
    max_replicas=st.integers(2, 6),
)
demands = st.lists(demand, max_size=8, unique_by=lambda d: (d.model, d.pool))
budgets = st.dictionaries(st.sampled_from(["p1", "p2"]), st.floats(0, 20000))


@given(demands, budgets)
def test_clamps_hold(ds: list[ReplicaDemand], budget: dict[str, float]) -> None:
    out = desired_replicas(ds, budget)
    for d in ds:
        assert d.min_replicas <= out[(d.model, d.pool)] <= d.max_replicas


@given(demands, budgets)
def test_memory_budget_respected_above_minimums(
    ds: list[ReplicaDemand], budget: dict[str, float]
) -> None:
    out = desired_replicas(ds, budget)
    for pool, mb in budget.items():
        used = sum(out[(d.model, d.pool)] * d.memory_mb for d in ds if d.pool == pool)
        floor = sum(d.min_replicas * d.memory_mb for d in ds if d.pool == pool)
        assert used <= max(mb, floor) + 1e-6


@given(demands)
def test_unbudgeted_meets_forecast(ds: list[ReplicaDemand]) -> None:
    out = desired_replicas(ds, {})
    for d in ds:
        assert out[(d.model, d.pool)] == raw_need(d)
        if raw_need(d) < d.max_replicas:
            assert out[(d.model, d.pool)] * d.capacity_rps >= d.upper_rps - 1e-9


@given(demands, st.integers(1, 3))
def test_hysteresis_no_flap(ds: list[ReplicaDemand], h: int) -> None:
    first = desired_replicas(ds, {}, hysteresis=h)
    # re-running on its own output is a fixed point
    assert desired_replicas(ds, {}, current=first, hysteresis=h) == first
    # one replica above the need is kept, not scaled down
    bumped = {
        k: min(v + 1, next(d.max_replicas for d in ds if (d.model, d.pool) == k))
        for k, v in first.items()
    }
    assert desired_replicas(ds, {}, current=bumped, hysteresis=h) == bumped


@given(demands)
def test_monotone_in_demand(ds: list[ReplicaDemand]) -> None:
    more = [
        ReplicaDemand(
            d.model,
            d.pool,
            d.upper_rps * 2,
            d.capacity_rps,
            d.memory_mb,
            d.cost_per_hour,
            d.min_replicas,
            d.max_replicas,
        )
        for d in ds
    ]
    a, b = desired_replicas(ds, {}), desired_replicas(more, {})
    assert all(b[k] >= a[k] for k in a)
