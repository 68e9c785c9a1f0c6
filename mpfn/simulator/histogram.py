"""The hybrid histogram policy of "Serverless in the Wild" (Shahrad et al., USENIX ATC'20).

Our reading of the paper's Section 4.2, with its published parameters:

- Per model, a histogram of idle times (time between the end of one request and the next)
  with 1-minute bins over a 4-hour range (240 bins); idle times past the range are counted
  as out-of-bounds (OOB).
- Representative histogram (enough samples and a coefficient of variation of the bin counts
  above `cv_threshold` = 2): the pre-warm window is the 5th percentile ("head") of the idle
  times and the keep-alive window ends at the 99th percentile ("tail"), both with a 10 %
  margin (head rounded down then shrunk by 10 %, tail rounded up then grown by 10 %). After
  a request the model is unloaded; it is loaded again `prewarm` later and stays until
  `tail` after the request. A head of 0 means "no pre-warm": keep the model loaded after the
  request until the tail.
- Too many OOB idle times (more than `oob_fraction` of all samples): the histogram cannot see
  the pattern, so the paper's time-series fallback predicts the next idle time. The paper
  uses ARIMA; we fit an AR(1) on log idle times by least squares (ARIMA(1,0,0) on the log),
  and warm the model in [0.85 * predicted, 1.15 * predicted] after the request (15 % margin).
- Not enough information yet (fewer than `min_samples` idle times, or a flat histogram):
  the paper's conservative fallback, a fixed keep-alive of the histogram range (4 hours).

Only the model's own past idle times are used, so the policy is causal by construction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from mpfn.simulator.engine import Scoring, Window
from mpfn.simulator.traces import Request

RANGE_MINUTES = 240
HEAD_PERCENTILE = 5.0
TAIL_PERCENTILE = 99.0
MARGIN = 0.10
ARIMA_MARGIN = 0.15


@dataclass
class _ModelHistory:
    bins: np.ndarray = field(default_factory=lambda: np.zeros(RANGE_MINUTES, dtype=np.int64))
    oob: int = 0
    log_idle: list[float] = field(default_factory=list)
    last: float | None = None


@dataclass(frozen=True)
class HistogramDecision:
    """Where the next window comes from, relative to the end of a request (seconds)."""

    prewarm_s: float
    keepalive_until_s: float
    mode: str  # "histogram" | "timeseries" | "fallback"


def percentile_minute(bins: np.ndarray, pct: float) -> int:
    """Smallest bin index whose cumulative count reaches `pct` percent of the total."""
    cum = np.cumsum(bins)
    return int(np.searchsorted(cum, cum[-1] * pct / 100.0, side="left"))


def decide_windows(
    bins: np.ndarray,
    oob: int,
    log_idle: list[float],
    min_samples: int = 10,
    cv_threshold: float = 2.0,
    oob_fraction: float = 0.5,
) -> HistogramDecision:
    """Pure decision from one model's idle-time histogram (see the module docstring)."""
    total_in = int(bins.sum())
    total = total_in + oob
    if total >= min_samples and oob > oob_fraction * total and len(log_idle) >= 3:
        predicted = _ar1_next(log_idle)
        return HistogramDecision(
            predicted * (1 - ARIMA_MARGIN), predicted * (1 + ARIMA_MARGIN), "timeseries"
        )
    mean = bins.mean()
    cv = float(bins.std() / mean) if mean > 0 else 0.0
    if total_in < min_samples or cv < cv_threshold:
        return HistogramDecision(0.0, RANGE_MINUTES * 60.0, "fallback")
    head = percentile_minute(bins, HEAD_PERCENTILE)  # lower edge of the head bin, minutes
    tail = percentile_minute(bins, TAIL_PERCENTILE) + 1  # upper edge of the tail bin
    prewarm = head * 60.0 * (1 - MARGIN)
    return HistogramDecision(prewarm, tail * 60.0 * (1 + MARGIN), "histogram")


def _ar1_next(log_idle: list[float]) -> float:
    y = np.asarray(log_idle[-100:], dtype=float)
    x, nxt = y[:-1], y[1:]
    if x.std() < 1e-9:
        return float(math.exp(y[-1]))
    slope, intercept = np.polyfit(x, nxt, 1)
    return float(math.exp(intercept + slope * y[-1]))


@dataclass
class HybridHistogram:
    """Per-model hybrid histogram policy (ATC'20)."""

    name: str = "histogram"
    tick_seconds: float | None = None
    modes: dict[str, int] = field(default_factory=dict)
    _models: dict[str, _ModelHistory] = field(default_factory=dict)

    def begin(self, first_time: float, scoring: Scoring) -> None:
        self._models.clear()
        self.modes.clear()

    def on_request(self, request: Request) -> Window:
        h = self._models.setdefault(request.model, _ModelHistory())
        if h.last is not None:
            idle = request.time - h.last
            minute = int(idle // 60)
            if minute < RANGE_MINUTES:
                h.bins[minute] += 1
            else:
                h.oob += 1
            h.log_idle.append(math.log(max(idle, 1.0)))
        h.last = request.time
        d = decide_windows(h.bins, h.oob, h.log_idle)
        self.modes[d.mode] = self.modes.get(d.mode, 0) + 1
        start = request.time + d.prewarm_s
        return Window(start, request.time + max(d.keepalive_until_s, d.prewarm_s))

    def on_tick(self, now: float) -> Mapping[str, Window]:
        return {}
