"""Forecast one model's demand, with its Prophet fit cached in the store.

A fit lives at `forecast/<model>.json` (`ForecastFit`, Prophet's own JSON) and is reused
until it is `refit_every_s` old, so a run that finds fresh fits only predicts. Short
histories (see `mpfn.forecast.prophet_eligible`) use the cheap hour-of-day profile and
store nothing; so does everything when Prophet is not installed or fails. A broken cached
fit is refit. This module reads and writes fit documents only; it decides nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from mpfn.forecast import CachedFit, FitCache, HourlyForecast, forecast_counts, prophet_eligible
from mpfn.forecast.profile import profile_forecast
from mpfn.forecast.select import has_prophet
from mpfn.state import Documents, InvalidDocument
from mpfn.store import KeyNotFound, Store, StoreError
from mpfn.warm.plan import ForecastFit, Method, fit_key
from mpfn.warm.usage import HOUR, UsageHistory

log = logging.getLogger("mpfn.warm")


@dataclass(frozen=True)
class ModelForecast:
    forecast: HourlyForecast
    method: Method
    fitted_at: float | None = None
    refit: bool = False
    error: str | None = None
    params: str | None = None  # a new fit's Prophet JSON, to be cached


def quiet_backends() -> None:
    """Give Prophet's and CmdStan's loggers a handler that drops records, so they neither
    print through logging's last-resort handler nor install their own console handler."""
    for name in ("prophet", "prophet.plot", "cmdstanpy"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)


class FitStore:
    """Forecasts models, reading and (unless `write=False`) storing their Prophet fits."""

    def __init__(
        self,
        store: Store,
        *,
        refit_every_s: float,
        use_prophet: bool = True,
        write: bool = True,
    ) -> None:
        self.docs = Documents(store)
        self.refit_every_s = refit_every_s
        if use_prophet:
            quiet_backends()
        self.use_prophet = use_prophet and has_prophet()
        self.write = write
        self.fits_done = 0

    def forecast(self, history: UsageHistory, now: float, hours: int) -> ModelForecast:
        """`hours` hourly forecasts from the current hour on."""
        counts = history.counts
        if len(counts) == 0:
            zeros = np.zeros(hours)
            return ModelForecast(HourlyForecast(now // HOUR * HOUR, zeros, zeros, "none"), "none")
        if not (self.use_prophet and prophet_eligible(counts)):
            return ModelForecast(profile_forecast(history.start, counts, hours), "profile")
        cached = self._cached(history.model)
        try:
            result = self._prophet(history, now, hours, cached)
        except Exception as exc:  # Prophet/Stan failures must not stop the run
            if cached is None:
                return self._fallback(history, hours, exc)
            log.warning("%s: cached fit unusable (%s); refitting", history.model, exc)
            try:
                result = self._prophet(history, now, hours, None)
            except Exception as again:
                return self._fallback(history, hours, again)
        if result.refit:
            self.fits_done += 1
            if self.write:
                self._store(history, result)
        return result

    def _fallback(self, history: UsageHistory, hours: int, exc: Exception) -> ModelForecast:
        message = f"prophet failed: {type(exc).__name__}: {exc}".replace("\n", " ")[:300]
        log.warning("%s: %s; using the profile estimator", history.model, message)
        forecast = profile_forecast(history.start, history.counts, hours)
        return ModelForecast(forecast, "profile", error=message)

    def _store(self, history: UsageHistory, result: ModelForecast) -> None:
        assert result.fitted_at is not None and result.params is not None
        doc = ForecastFit(
            model=history.model,
            fitted_at=_utc(result.fitted_at),
            history_start=_utc(history.start),
            history_hours=history.hours,
            params=result.params,
        )
        try:
            self.docs.upsert(fit_key(history.model), doc)
        except StoreError as exc:  # the next run refits; this run's forecast stands
            log.warning("%s: cannot cache the fit: %s", history.model, exc)

    def _cached(self, model: str) -> ForecastFit | None:
        try:
            return self.docs.get(fit_key(model), ForecastFit)
        except KeyNotFound:
            return None
        except InvalidDocument as exc:
            log.warning("%s; refitting", exc)
            return None

    def _prophet(
        self, history: UsageHistory, now: float, hours: int, cached: ForecastFit | None
    ) -> ModelForecast:
        model = history.model
        cache = FitCache(refit_every_s=self.refit_every_s)
        if cached is not None:
            cache.fits[model] = CachedFit(cached.fitted_at.timestamp(), cached.params)
        forecast = forecast_counts(
            model, history.start, history.counts, hours, now, cache, use_prophet=True
        )
        fit = cache.fits[model]
        refit = cache.fits_done > 0
        return ModelForecast(
            forecast,
            "prophet",
            fitted_at=fit.fitted_at,
            refit=refit,
            params=fit.params_json if refit else None,
        )
