"""Prophet per-model demand forecasts with fitted parameters that can be stored and reloaded.

`fit_prophet` fits hourly request counts with daily and weekly seasonality and returns a
`ProphetFit` whose `to_json()` is Prophet's own serialization (so the warmer can cache fits
in the state store and refit on a cadence). `ProphetFit.predict` forecasts hourly counts
with an upper bound. Prophet is imported lazily: it is an optional dependency.

The upper bound is `yhat + z * sigma_obs` (observation noise of the fitted model, z for the
interval width) rather than Prophet's trend-simulation intervals, which cost ~100x more to
compute and add little over a one-day horizon. Nothing here reads or writes storage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

HOUR = 3600.0


def _quiet() -> None:
    for name in ("cmdstanpy", "prophet", "prophet.plot"):
        logging.getLogger(name).setLevel(logging.ERROR)
        logging.getLogger(name).propagate = False


@dataclass(frozen=True)
class HourlyForecast:
    """Forecast of requests per hour for consecutive hours starting at `start` (Unix s)."""

    start: float
    yhat: np.ndarray
    upper: np.ndarray
    method: str


@dataclass
class ProphetFit:
    model: Any  # prophet.Prophet (fitted)
    interval_width: float = 0.8

    def to_json(self) -> str:
        from prophet.serialize import model_to_json

        return str(model_to_json(self.model))

    @classmethod
    def from_json(cls, text: str, interval_width: float = 0.8) -> ProphetFit:
        _quiet()
        from prophet.serialize import model_from_json

        _quiet()
        return cls(model_from_json(text), interval_width)

    def predict(self, start: float, hours: int) -> HourlyForecast:
        """Hourly forecast for `hours` hours from `start` (floored to the hour)."""
        start = float(np.floor(start / HOUR) * HOUR)
        import pandas as pd  # with Prophet: an optional dependency

        ds = pd.to_datetime(start + HOUR * np.arange(hours), unit="s")
        out = self.model.predict(pd.DataFrame({"ds": ds}))
        yhat = np.clip(out["yhat"].to_numpy(dtype=float), 0.0, None)
        sigma = float(np.mean(self.model.params["sigma_obs"])) * float(self.model.y_scale)
        z = NormalDist().inv_cdf(0.5 + self.interval_width / 2)
        return HourlyForecast(start, yhat, yhat + z * sigma, "prophet")


def fit_prophet(start: float, counts: np.ndarray, interval_width: float = 0.8) -> ProphetFit:
    """Fit hourly `counts` (hour i covers `start + i*3600`) with daily+weekly seasonality."""
    _quiet()
    import pandas as pd
    from prophet import Prophet

    _quiet()
    ds = pd.to_datetime(
        float(np.floor(start / HOUR) * HOUR) + HOUR * np.arange(len(counts)), unit="s"
    )
    model = Prophet(
        daily_seasonality=True,
        weekly_seasonality=len(counts) >= 14 * 24,
        yearly_seasonality=False,
        interval_width=interval_width,
        uncertainty_samples=0,
    )
    model.fit(pd.DataFrame({"ds": ds, "y": np.asarray(counts, dtype=float)}))
    return ProphetFit(model, interval_width)
