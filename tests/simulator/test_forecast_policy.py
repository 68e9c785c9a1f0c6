"""The budgeted forecast policy: keeps its budget, beats keep-alive on patterned demand."""

from __future__ import annotations

import numpy as np

from mpfn.simulator import BudgetedForecast, KeepAlive, Request, parse_policy, replay


def _patterned(days: int = 10) -> list[Request]:
    """Model "a" is busy in office hours, "b" fires every 45 minutes, "c" at random."""
    rng = np.random.default_rng(3)
    out: list[Request] = []
    for d in range(days):
        base = d * 86400.0
        for _ in range(40):
            out.append(Request(base + 9 * 3600 + rng.uniform(0, 8 * 3600), "a"))
        out.extend(Request(base + k * 2700.0 + 5, "b") for k in range(32))
        out.extend(Request(base + t, "c") for t in rng.uniform(0, 86400, 6))
    return sorted(out)


def test_budget_is_a_hard_limit() -> None:
    trace = _patterned()
    for budget in (5.0, 20.0):
        r = replay(trace, BudgetedForecast(budget, use_prophet=False), holdout_days=3)
        assert r.warm_model_hours <= budget + 1e-6


def test_more_budget_fewer_cold_starts() -> None:
    trace = _patterned()
    lo = replay(trace, BudgetedForecast(5.0, use_prophet=False), holdout_days=3)
    hi = replay(trace, BudgetedForecast(40.0, use_prophet=False), holdout_days=3)
    assert hi.cold_starts < lo.cold_starts


def test_beats_keepalive_at_equal_hours_on_periodic_demand() -> None:
    trace = _patterned()
    ka = replay(trace, KeepAlive(600), holdout_days=3)
    fc = replay(trace, BudgetedForecast(ka.warm_model_hours, use_prophet=False), holdout_days=3)
    assert fc.warm_model_hours <= ka.warm_model_hours + 1e-6
    assert fc.cold_starts < ka.cold_starts


def test_parse_policy() -> None:
    assert parse_policy("keepalive:600").name == "keepalive:600"
    assert parse_policy("forecast:budget=533").name == "forecast:budget=533"
    assert parse_policy("histogram").name == "histogram"
    for bad in ("keepalive", "forecast:533", "lru", "none:3"):
        try:
            parse_policy(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
