"""Demand forecasting for warm plans: Prophet per model, a profile fallback, arrival odds."""

from mpfn.forecast.arrivals import ArrivalModel
from mpfn.forecast.profile import profile_forecast
from mpfn.forecast.prophet_fit import HourlyForecast, ProphetFit, fit_prophet
from mpfn.forecast.select import CachedFit, FitCache, forecast_counts, prophet_eligible

__all__ = [
    "ArrivalModel",
    "CachedFit",
    "FitCache",
    "HourlyForecast",
    "ProphetFit",
    "fit_prophet",
    "forecast_counts",
    "profile_forecast",
    "prophet_eligible",
]
