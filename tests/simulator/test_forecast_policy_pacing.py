"""Budget pacing of the forecast policy: aligned projection, traffic growth, fallbacks."""

from __future__ import annotations

import math

import numpy as np

from mpfn.simulator.pacing import (
    WEEK_MIN,
    aligned_threshold,
    traffic_growth,
    uniform_threshold,
)


def _history(minutes: int, busy: float, quiet: float, scale_last: float = 1.0) -> list[np.ndarray]:
    """Two models; probabilities alternate between busy and quiet half-days."""
    out = []
    for m in range(minutes):
        p = busy if (m // 720) % 2 == 0 else quiet
        if m >= minutes - 1440:
            p *= scale_last
        out.append(np.array([p, p / 2]))
    return out


def test_uniform_threshold_spends_the_rate() -> None:
    hist = [np.array([0.1, 0.2, 0.3, 0.4])] * 10
    # one model-minute per minute: the most likely model only
    assert uniform_threshold(hist, 100, 100) == 0.4
    assert uniform_threshold(hist, 100, 0) == math.inf
    assert uniform_threshold(hist, 100, 1000) == 0.0
    assert uniform_threshold([], 100, 100) == math.inf


def test_growth_compares_with_the_same_minutes_a_week_earlier() -> None:
    flat = _history(WEEK_MIN + 1440, 0.2, 0.2)
    assert traffic_growth(flat, 1440) == 1.0
    doubled = _history(WEEK_MIN + 1440, 0.2, 0.2, scale_last=2.0)
    assert abs(traffic_growth(doubled, 1440) - 2.0) < 1e-9
    assert traffic_growth(doubled[:100], 1440) == 1.0  # too short: no correction


def test_aligned_threshold_falls_back_with_short_history() -> None:
    hist = _history(500, 0.3, 0.1)
    assert aligned_threshold(hist, 100, 50) == uniform_threshold(hist, 100, 50)
    assert aligned_threshold(hist, 0, 50) == math.inf


def test_aligned_threshold_projects_the_same_stretch_last_week() -> None:
    hist = _history(WEEK_MIN + 1440, 0.3, 0.1)
    # the next 720 minutes were a busy half-day last week: a budget of one model-minute per
    # minute keeps only the likelier model (0.3), not the half-as-likely one
    assert aligned_threshold(hist, 720, 720) == 0.3
    # with twice the budget both models are kept
    assert aligned_threshold(hist, 720, 1440) == 0.0


def test_aligned_threshold_raises_the_bar_when_traffic_grew() -> None:
    steady = _history(WEEK_MIN + 1440, 0.3, 0.3)
    grown = _history(WEEK_MIN + 1440, 0.3, 0.3, scale_last=2.0)
    budget = 1.5 * 720  # enough for 1.5 models over the projected stretch
    assert aligned_threshold(grown, 720, budget) > aligned_threshold(steady, 720, budget)
