"""Pick the forecaster for one model's history: Prophet when it is long enough, else a profile.

`forecast_counts` is what callers use; `FitCache` keeps serialized Prophet fits keyed by
model so they are refit on a cadence (`refit_every_s`), not on every call. The cache is a
plain dict of JSON strings so the warmer can persist it in the state store unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mpfn.forecast.profile import profile_forecast
from mpfn.forecast.prophet_fit import HOUR, HourlyForecast, ProphetFit, fit_prophet

MIN_PROPHET_HOURS = 3 * 24
MIN_PROPHET_REQUESTS = 30


def has_prophet() -> bool:
    try:
        import prophet  # noqa: F401
    except ImportError:
        return False
    return True


def prophet_eligible(counts: np.ndarray) -> bool:
    return len(counts) >= MIN_PROPHET_HOURS and float(np.sum(counts)) >= MIN_PROPHET_REQUESTS


@dataclass
class CachedFit:
    fitted_at: float
    params_json: str


@dataclass
class FitCache:
    """Serialized fits per model; `get` refits only when a fit is missing or too old."""

    refit_every_s: float = 7 * 86400.0
    fits: dict[str, CachedFit] = field(default_factory=dict)
    _live: dict[str, ProphetFit] = field(default_factory=dict)
    fits_done: int = 0

    def get(self, model: str, start: float, counts: np.ndarray, now: float) -> ProphetFit:
        cached = self.fits.get(model)
        if cached is not None and now - cached.fitted_at < self.refit_every_s:
            live = self._live.get(model)
            if live is None:
                live = self._live[model] = ProphetFit.from_json(cached.params_json)
            return live
        fit = fit_prophet(start, counts)
        self.fits_done += 1
        self.fits[model] = CachedFit(now, fit.to_json())
        self._live[model] = fit
        return fit


def forecast_counts(
    model: str,
    start: float,
    counts: np.ndarray,
    hours: int,
    now: float,
    cache: FitCache | None = None,
    use_prophet: bool = True,
) -> HourlyForecast:
    """Forecast `hours` hourly counts following the history (hour i at `start + i*3600`)."""
    counts = np.asarray(counts, dtype=float)
    if use_prophet and prophet_eligible(counts) and has_prophet():
        fit = (cache or FitCache(refit_every_s=0.0)).get(model, start, counts, now)
        next_hour = float(np.floor(start / HOUR) * HOUR) + HOUR * len(counts)
        return fit.predict(next_hour, hours)
    return profile_forecast(start, counts, hours)
