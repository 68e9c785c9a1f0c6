"""Online per-model demand features, updated from requests as they arrive (never ahead).

`DemandState` keeps, for every model seen so far: exponentially decayed request counts over
several half-lives, minutes since its last request and the gap before it, hourly counts
(for the seasonal forecast) and the latest seasonal forecast. `features()` turns that, with
the time of day and a weekend flag, into one row per model for `mpfn.forecast.ArrivalModel`.
Time advances only through `advance_minute`, called by the policy on each tick, so a row is
built from requests strictly before the tick.
"""

from __future__ import annotations

import math

import numpy as np

HALF_LIVES_MIN = (1.0, 5.0, 30.0, 180.0, 1440.0, 10080.0)
GLOBAL_HALF_LIVES_MIN = (10.0, 60.0)
IDLE_EDGES_MIN = (1, 2, 3, 5, 8, 12, 20, 30, 45, 60, 90, 120, 240, 480, 1440)
N_BUCKETS = len(IDLE_EDGES_MIN) + 1


class DemandState:
    def __init__(self, first_time: float) -> None:
        self.hour0 = math.floor(first_time / 3600.0)
        self.index: dict[str, int] = {}
        self.names: list[str] = []
        self.decayed = np.zeros((0, len(HALF_LIVES_MIN)))
        self.global_decayed = np.zeros(len(GLOBAL_HALF_LIVES_MIN))
        self.last = np.zeros(0)
        self.prev_gap = np.zeros(0)
        self.pending = np.zeros(0)
        self.hourly: list[list[float]] = []
        self.seasonal = np.zeros(0)  # forecast requests/hour for the current hour
        self._factors = np.array([0.5 ** (1 / h) for h in HALF_LIVES_MIN])
        self._gfactors = np.array([0.5 ** (1 / h) for h in GLOBAL_HALF_LIVES_MIN])

    def __len__(self) -> int:
        return len(self.names)

    def model_index(self, model: str) -> int:
        i = self.index.get(model)
        if i is None:
            i = self.index[model] = len(self.names)
            self.names.append(model)
            self.decayed = np.vstack([self.decayed, np.zeros((1, len(HALF_LIVES_MIN)))])
            self.last = np.append(self.last, -math.inf)
            self.prev_gap = np.append(self.prev_gap, math.inf)
            self.pending = np.append(self.pending, 0.0)
            self.seasonal = np.append(self.seasonal, 0.0)
            self.hourly.append([])
        return i

    def record(self, model: str, t: float) -> int:
        """A request arrived at `t` (the past, from the policy's point of view)."""
        i = self.model_index(model)
        self.pending[i] += 1
        if math.isfinite(self.last[i]):
            self.prev_gap[i] = t - self.last[i]
        self.last[i] = t
        hour = int(t // 3600) - self.hour0
        series = self.hourly[i]
        if len(series) <= hour:
            series.extend([0.0] * (hour + 1 - len(series)))
        series[hour] += 1
        return i

    def advance_minute(self) -> np.ndarray:
        """Fold the last minute's requests into the decayed counts; return which arrived."""
        arrived = self.pending > 0
        self.decayed = self.decayed * self._factors + self.pending[:, None]
        self.global_decayed = self.global_decayed * self._gfactors + self.pending.sum()
        self.pending = np.zeros(len(self.names))
        return arrived

    def hourly_counts(self, i: int, upto_hour: int) -> np.ndarray:
        """Hourly counts of model i for hours [0, upto_hour) relative to `hour0`."""
        series = np.zeros(upto_hour)
        got = self.hourly[i][:upto_hour]
        series[: len(got)] = got
        return series

    def features(self, now: float, rows: np.ndarray | None = None) -> np.ndarray:
        """Feature rows (all models, or `rows`) as of `now`; pending requests count too."""
        idx = np.arange(len(self.names)) if rows is None else rows
        counts = np.log1p(self.decayed[idx] + self.pending[idx, None])
        glob = np.broadcast_to(np.log1p(self.global_decayed), (len(idx), len(self.global_decayed)))
        idle_min = (now - self.last[idx]) / 60.0
        bucket = np.searchsorted(np.asarray(IDLE_EDGES_MIN, dtype=float), idle_min, side="right")
        onehot = np.zeros((len(idx), N_BUCKETS))
        onehot[np.arange(len(idx)), bucket] = 1.0
        long_rate = counts[:, -1:]
        mid_rate = counts[:, 3:4]
        season = np.log1p(self.seasonal[idx])[:, None]
        idle = np.log1p(np.minimum(idle_min, 10080.0))[:, None]
        prev = np.log1p(np.minimum(self.prev_gap[idx] / 60.0, 10080.0))[:, None]
        hour = 2 * math.pi * ((now / 3600.0) % 24) / 24
        weekend = ((now // 86400) + 3) % 7 >= 5  # Saturday or Sunday (UTC)
        day = np.full((len(idx), 1), float(weekend))
        cyc = np.broadcast_to([[math.sin(hour), math.cos(hour)]], (len(idx), 2))
        extra = np.hstack([idle, idle**2 / 10, prev, cyc, day])
        return np.hstack(
            [counts, glob, season, onehot, onehot * long_rate, onehot * mid_rate, extra]
        )
