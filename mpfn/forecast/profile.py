"""Cheap fallback forecast for short histories: a recency-weighted hour-of-day profile.

Used when a model has too little history for Prophet (or Prophet is not installed). The
forecast for hour h is a blend of the model's recent mean rate and its mean count at the
same hour of day, weighting recent days more (`half_life_days`). Pure numpy; no I/O.
"""

from __future__ import annotations

import numpy as np

from mpfn.forecast.prophet_fit import HOUR, HourlyForecast


def profile_forecast(
    start: float,
    counts: np.ndarray,
    hours: int,
    half_life_days: float = 3.0,
    prior_weight: float = 2.0,
) -> HourlyForecast:
    """Forecast `hours` hours after the history `counts` (hour i at `start + i*3600`)."""
    counts = np.asarray(counts, dtype=float)
    first_hour = int(np.floor(start / HOUR))
    t_next = first_hour + len(counts)
    if len(counts) == 0:
        zeros = np.zeros(hours)
        return HourlyForecast(t_next * HOUR, zeros, zeros, "profile")
    age_days = (len(counts) - 1 - np.arange(len(counts))) / 24.0
    w = 0.5 ** (age_days / half_life_days)
    overall = float(np.sum(w * counts) / np.sum(w))
    hod = (first_hour + np.arange(len(counts))) % 24
    sums = np.bincount(hod, weights=w * counts, minlength=24)
    weights = np.bincount(hod, weights=w, minlength=24)
    by_hour = (sums + prior_weight * overall) / (weights + prior_weight)
    future_hod = (t_next + np.arange(hours)) % 24
    yhat = by_hour[future_hod]
    # Poisson-style upper bound: mean + 1.28 sd (80 % one-sided-ish band like Prophet's)
    upper = yhat + 1.2816 * np.sqrt(yhat)
    return HourlyForecast(t_next * HOUR, yhat, upper, "profile")
