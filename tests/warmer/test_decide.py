"""The warmer's pure decisions: demand, warm-or-not with hysteresis, placement, actions."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from mpfn.documents import Pool
from mpfn.forecast import HourlyForecast
from mpfn.warm.desired import (
    ModelSignal,
    PoolView,
    desired_state,
    expected_from_forecast,
    expected_from_recent,
    plan_actions,
    request_probability,
    warm_decision,
)
from mpfn.warm.plan import WarmSettings
from tests.factories import pool

S = WarmSettings()


def view(p: Pool, loaded: dict[str, set[str]] | None, serves: set[str]) -> PoolView:
    held = None if loaded is None else {m: frozenset(v) for m, v in loaded.items()}
    return PoolView(p, held, frozenset(serves))


def signal(
    model: str, expected: float, *, pinned: bool = False, memory_mb: float = 0.0
) -> ModelSignal:
    return ModelSignal(
        model=model,
        version="1",
        expected=expected,
        recent_use=False,
        pinned=pinned,
        memory_mb=memory_mb,
    )


def test_expected_requests_integrate_the_upper_bound_across_hours() -> None:
    f = HourlyForecast(0.0, np.array([0.0, 0.0]), np.array([60.0, 120.0]), "profile")
    assert expected_from_forecast(f, now=1800, window_s=900) == 15.0
    # 10 minutes at 60/h then 5 minutes at 120/h
    assert abs(expected_from_forecast(f, now=3000, window_s=900) - 20.0) < 1e-9
    assert expected_from_forecast(f, now=7200, window_s=900) == 0.0  # past the forecast
    assert expected_from_recent(3, recent_s=900, window_s=300) == 1.0


def test_warm_decision_has_a_hysteresis_band() -> None:
    between = -np.log(1 - 0.3)  # P(request) = 0.3: between keep (0.2) and load (0.5)
    s = signal("m", float(between))
    assert abs(request_probability(s.expected) - 0.3) < 1e-9
    assert warm_decision(s, loaded_anywhere=False, settings=S) == (False, "idle")
    assert warm_decision(s, loaded_anywhere=True, settings=S) == (True, "hysteresis")
    assert warm_decision(signal("m", 5.0), False, S) == (True, "forecast")
    assert warm_decision(signal("m", 0.0, pinned=True), False, S) == (True, "pinned")
    recent = ModelSignal("m", "1", expected=0.0, recent_use=True)
    assert warm_decision(recent, False, S) == (True, "recent")


def test_a_warm_model_goes_to_the_cheapest_pool_unless_already_loaded() -> None:
    cheap, dear = pool("cheap", cost=0.5), pool("dear", cost=1.5)
    s = [signal("m", 5.0)]
    views = [view(cheap, {}, {"m"}), view(dear, {}, {"m"})]
    assert desired_state(s, {"m": True}, views, S) == {("m", "cheap"): 1, ("m", "dear"): 0}
    views = [view(cheap, {}, {"m"}), view(dear, {"m": {"1"}}, {"m"})]
    assert desired_state(s, {"m": True}, views, S) == {("m", "cheap"): 0, ("m", "dear"): 1}
    # More demand than one pool's replicas sustain: spread to the next pool.
    busy = [signal("m", S.replica_rps * S.window_s * 1.5)]
    views = [view(cheap, {}, {"m"}), view(dear, {}, {"m"})]
    assert desired_state(busy, {"m": True}, views, S) == {("m", "cheap"): 1, ("m", "dear"): 1}


def test_unreadable_pools_get_nothing_and_budgets_keep_the_busiest() -> None:
    small = pool("small", cost=0.5, memory_mb=150)
    gone = pool("gone", cost=0.1)
    s = [signal("hot", 100.0, memory_mb=100), signal("warmish", 2.0, memory_mb=100)]
    views = [view(small, {}, {"hot", "warmish"}), view(gone, None, {"hot", "warmish"})]
    out = desired_state(s, {"hot": True, "warmish": True}, views, S)
    assert out == {("hot", "small"): 1, ("warmish", "small"): 0}
    assert not [a for a in plan_actions(s, out, views) if a.pool == "gone"]


def test_pinned_models_want_every_pool_and_idle_ones_none() -> None:
    a, b = pool("a", cost=1.0), pool("b", cost=2.0)
    s = [signal("pin", 0.0, pinned=True), signal("idle", 0.0)]
    views = [view(a, {"idle": {"1"}}, {"pin", "idle"}), view(b, {}, {"pin", "idle"})]
    out = desired_state(s, {"pin": True, "idle": False}, views, S)
    assert out == {("pin", "a"): 1, ("pin", "b"): 1, ("idle", "a"): 0, ("idle", "b"): 0}


def test_actions_unload_every_version_and_never_touch_unknown_models() -> None:
    a = pool("a", cost=1.0)
    s = [
        ModelSignal("m", "2", expected=5.0, recent_use=False),
        ModelSignal("old", "1", expected=0.0, recent_use=False),
    ]
    views = [view(a, {"m": {"1"}, "old": {"1", "2"}, "stranger": {"7"}}, {"m", "old"})]
    desired = {("m", "a"): 1, ("old", "a"): 0}
    got = [(x.action, x.model, x.version) for x in plan_actions(s, desired, views)]
    assert got == [("unload", "old", "1"), ("unload", "old", "2"), ("load", "m", "2")]


def test_settings_reject_a_keep_threshold_above_the_load_threshold() -> None:
    with pytest.raises(ValidationError, match="keep_probability"):
        WarmSettings(load_probability=0.3, keep_probability=0.4)
