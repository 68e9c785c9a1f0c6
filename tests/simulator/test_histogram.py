"""Hybrid histogram policy decisions (pure) and its behaviour in replay."""

from __future__ import annotations

import numpy as np

from mpfn.simulator import HybridHistogram, Request, decide_windows, replay
from mpfn.simulator.histogram import RANGE_MINUTES


def test_fallback_when_few_samples() -> None:
    d = decide_windows(np.zeros(RANGE_MINUTES, dtype=np.int64), 0, [])
    assert d.mode == "fallback" and d.prewarm_s == 0 and d.keepalive_until_s == 4 * 3600


def test_periodic_model_is_prewarmed() -> None:
    bins = np.zeros(RANGE_MINUTES, dtype=np.int64)
    bins[30] = 50  # always idle 30-31 minutes
    d = decide_windows(bins, 0, [])
    assert d.mode == "histogram"
    assert d.prewarm_s == 30 * 60 * 0.9 and d.keepalive_until_s == 31 * 60 * 1.1


def test_out_of_bounds_uses_time_series() -> None:
    log_idle = [float(np.log(6 * 3600))] * 20
    d = decide_windows(np.zeros(RANGE_MINUTES, dtype=np.int64), 20, log_idle)
    assert d.mode == "timeseries"
    assert 0.85 * 6 * 3600 - 1 <= d.prewarm_s <= 0.85 * 6 * 3600 + 1


def test_periodic_trace_becomes_warm() -> None:
    trace = [Request(i * 1800.0, "m") for i in range(200)]
    r = replay(trace, HybridHistogram(), holdout_days=1)
    assert r.cold_starts == 0
    assert r.warm_model_hours < 0.25 * 24  # pre-warmed a few minutes per 30-minute period
