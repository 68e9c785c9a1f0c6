"""mpfn's budgeted forecast policy: spend a fixed number of warm model-hours where requests
are most likely.

Every minute the policy predicts, for each model it has seen, the probability of at least
one request in the next minute (`mpfn.forecast.ArrivalModel` over `DemandState` features:
recency-decayed counts, time since the last request, global activity and the model's
Prophet / profile hourly forecast). A model-minute kept warm costs one minute of the budget
and saves a cold start with that probability, so the best use of a budget is to keep warm
exactly the model-minutes whose probability clears a threshold. The threshold is re-set
hourly by `mpfn.simulator.pacing.aligned_threshold`: the remaining time is projected from
the probabilities of the same stretch one week earlier, scaled by the traffic trend of the
last day, so that the projected spend matches the remaining budget; a hard cap unloads
everything once the budget is spent.

Learning is strictly online: rows are labelled after their minute has passed, the arrival
model is refit daily on the trailing week, and the seasonal forecasts are refit weekly.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from mpfn.forecast.arrivals import ArrivalModel
from mpfn.forecast.select import FitCache, forecast_counts
from mpfn.simulator.engine import Scoring, Window
from mpfn.simulator.features import DemandState
from mpfn.simulator.pacing import WEEK_MIN, aligned_threshold
from mpfn.simulator.traces import Request

MINUTE = 60.0


@dataclass
class BudgetedForecast:
    budget_hours: float
    use_prophet: bool = True
    negative_rate: float = 0.2
    refit_minutes: int = 1440
    season_refit_minutes: int = 7 * 1440
    threshold_every_minutes: int = 60
    growth_minutes: int = 1440
    seed: int = 0
    tick_seconds: float | None = MINUTE
    _state: DemandState | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"forecast:budget={self.budget_hours:g}"

    def begin(self, first_time: float, scoring: Scoring) -> None:
        self._state = DemandState(first_time)
        self._scoring = scoring
        self._model = ArrivalModel()
        self._cache = FitCache(refit_every_s=self.season_refit_minutes * MINUTE)
        self._season: dict[int, tuple[float, np.ndarray]] = {}
        self._rng = np.random.default_rng(self.seed)
        self._rows: deque[tuple[np.ndarray, np.ndarray, np.ndarray]] = deque(maxlen=WEEK_MIN)
        self._probs: deque[np.ndarray] = deque(maxlen=WEEK_MIN + self.growth_minutes)
        self._prev_x: np.ndarray | None = None
        self._warm: set[int] = set()
        self._threshold = math.inf
        self._spent_s = 0.0
        self._ticks = 0
        self._next_tick = first_time

    @property
    def state(self) -> DemandState:
        assert self._state is not None, "begin() first"
        return self._state

    def report(self) -> dict[str, float]:
        return {"budget_hours": self.budget_hours, "prophet_fits": self._cache.fits_done}

    # -- learning -------------------------------------------------------------------------
    def _label(self, arrived: np.ndarray) -> None:
        if self._prev_x is None:
            return
        n = len(self._prev_x)
        y = arrived[:n].astype(float)
        keep = (y > 0) | (self._rng.random(n) < self.negative_rate)
        w = np.where(y > 0, 1.0, 1.0 / self.negative_rate)
        self._rows.append((self._prev_x[keep], y[keep], w[keep]))

    def _refit(self) -> None:
        if not self._rows:
            return
        x = np.vstack([r[0] for r in self._rows])
        y = np.concatenate([r[1] for r in self._rows])
        if y.sum() < 10:
            return
        w = np.concatenate([r[2] for r in self._rows])
        self._model.fit(x, y, w, iterations=8 if self._model.fitted else 15)

    def _refresh_season(self, now: float, full: bool) -> None:
        st = self.state
        hour_now = int(now // 3600) - st.hour0
        for i, model in enumerate(st.names):
            if not full and i in self._season:
                continue
            counts = st.hourly_counts(i, hour_now)
            fc = forecast_counts(
                model, st.hour0 * 3600.0, counts, 8 * 24, now, self._cache, self.use_prophet
            )
            self._season[i] = (fc.start, fc.yhat)

    def _update_seasonal_now(self, now: float) -> None:
        st = self.state
        for i, (start, yhat) in self._season.items():
            h = int((now - start) // 3600)
            st.seasonal[i] = yhat[min(max(h, 0), len(yhat) - 1)]

    # -- budget ---------------------------------------------------------------------------
    def _set_threshold(self, now: float) -> None:
        remaining_min = max(0.0, (self._scoring.end - now) / MINUTE)
        budget_left_min = max(0.0, self.budget_hours * 60.0 - self._spent_s / MINUTE)
        self._threshold = aligned_threshold(
            list(self._probs), remaining_min, budget_left_min, self.growth_minutes
        )

    def _scored(self, now: float) -> bool:
        return self._scoring.start - MINUTE < now <= self._scoring.end

    def _charge(self, start: float, end: float) -> float:
        lo, hi = max(start, self._scoring.start), min(end, self._scoring.end)
        return max(0.0, hi - lo)

    # -- policy interface -----------------------------------------------------------------
    def on_tick(self, now: float) -> Mapping[str, Window]:
        st = self.state
        self._next_tick = now + MINUTE
        arrived = st.advance_minute()
        self._label(arrived)
        self._ticks += 1
        if self._ticks % self.season_refit_minutes == 1440 or (
            self._ticks > 1440 and self._ticks % self.refit_minutes == 0
        ):
            self._refresh_season(now, full=self._ticks % self.season_refit_minutes == 1440)
        if self._ticks % 60 == 0:
            self._update_seasonal_now(now)
        if self._ticks % self.refit_minutes == 0 and self._ticks >= 1440:
            self._refit()
        x = st.features(now)
        self._prev_x = x
        if not self._model.fitted:
            return {}
        p = self._model.predict(x)
        self._p = p
        self._probs.append(p)
        if not self._scored(now):
            return {}
        if self._ticks % self.threshold_every_minutes == 0 or math.isinf(self._threshold):
            self._set_threshold(now)
        want = np.flatnonzero(p >= self._threshold)
        cost = self._charge(now, now + MINUTE)
        if cost > 0:
            affordable = int(max(0.0, self.budget_hours * 3600 - self._spent_s) // cost)
            if len(want) > affordable:
                want = want[np.argsort(-p[want])][:affordable]
            self._spent_s += cost * len(want)
        new = {int(i) for i in want}
        out = {st.names[i]: Window(now, now + MINUTE) for i in new}
        out.update({st.names[i]: Window(now, now) for i in self._warm - new})
        self._warm = new
        return out

    def on_request(self, request: Request) -> Window:
        i = self.state.record(request.model, request.time)
        t = request.time
        if i in self._warm:
            return Window(t, self._next_tick)
        if not self._model.fitted or not self._scored(t) or i >= len(self._p):
            return Window(t, t)
        p = float(self._model.predict(self.state.features(t, np.array([i])))[0])
        cost = self._charge(t, self._next_tick)
        if p >= self._threshold and self._spent_s + cost <= self.budget_hours * 3600:
            self._spent_s += cost
            self._warm.add(i)
            return Window(t, self._next_tick)
        return Window(t, t)
