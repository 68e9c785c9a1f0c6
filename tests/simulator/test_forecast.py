"""Forecasting: Prophet fits round-trip through JSON, the fallback, the arrival model."""

from __future__ import annotations

import numpy as np
import pytest

from mpfn.forecast import ArrivalModel, FitCache, ProphetFit, forecast_counts, profile_forecast

START = 1_731_628_800.0  # a UTC midnight


def _daily(days: int) -> np.ndarray:
    h = np.arange(days * 24)
    return np.random.default_rng(0).poisson(4 + 3 * np.sin(2 * np.pi * h / 24)).astype(float)


def test_prophet_roundtrip_and_cache() -> None:
    counts = _daily(8)
    cache = FitCache(refit_every_s=86400)
    fc = forecast_counts("m", START, counts, 24, now=START + 8 * 86400, cache=cache)
    assert fc.method == "prophet" and fc.yhat.shape == (24,)
    assert np.all(fc.upper >= fc.yhat)
    # the daily cycle is recovered: peak hours forecast above trough hours
    assert fc.yhat[6] > fc.yhat[18]
    again = forecast_counts("m", START, counts, 24, now=START + 8 * 86400 + 60, cache=cache)
    assert cache.fits_done == 1 and np.allclose(again.yhat, fc.yhat)
    reloaded = ProphetFit.from_json(cache.fits["m"].params_json)
    assert np.allclose(reloaded.predict(fc.start, 24).yhat, fc.yhat)


def test_short_history_uses_profile() -> None:
    fc = forecast_counts("m", START, _daily(1), 24, now=START + 86400)
    assert fc.method == "profile"
    direct = profile_forecast(START, _daily(1), 24)
    assert np.allclose(fc.yhat, direct.yhat)
    assert fc.yhat[6] > fc.yhat[18]


def test_arrival_model_calibrated_and_serializable() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 2))
    p = 1 / (1 + np.exp(-(1.5 * x[:, 0] - 2)))
    y = (rng.random(4000) < p).astype(float)
    m = ArrivalModel(l2=0.01).fit(x, y)
    assert m.weights[0] == pytest.approx(1.5, abs=0.3)
    again = ArrivalModel.from_list(m.to_list())
    assert np.allclose(again.predict(x), m.predict(x))
