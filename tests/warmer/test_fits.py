"""Prophet fits are cached in the store and refit on a cadence; short histories use a profile."""

from __future__ import annotations

from datetime import UTC, datetime

from mpfn.state import Documents
from mpfn.store import LocalStore
from mpfn.warm import WarmSettings, run_once
from mpfn.warm.plan import ForecastFit, fit_key
from tests.warmer.helpers import NOW, Catalog, add_models, hourly, write_usage

SIX_HOURS = 6 * 3600.0


def _etag(store: LocalStore, key: str) -> str:
    blob = store.get(key)
    assert blob is not None
    return blob.etag


def test_fits_are_cached_and_refit_only_on_the_cadence(
    warm_store: LocalStore, catalog: Catalog
) -> None:
    add_models(warm_store, catalog, ["busy"])
    write_usage(warm_store, "busy", hourly(NOW, 4 * 24, 12))
    settings = WarmSettings(refit_every_s=SIX_HOURS)

    first = run_once(warm_store, now=NOW, settings=settings)
    assert first.fits_done == 1 and first.models[0].refit
    fit = Documents(warm_store).get(fit_key("busy"), ForecastFit)
    assert fit.fitted_at.timestamp() == NOW and fit.history_hours == 4 * 24
    etag = _etag(warm_store, fit_key("busy"))

    cached = run_once(warm_store, now=NOW + SIX_HOURS - 60, settings=settings)
    assert cached.fits_done == 0 and not cached.models[0].refit
    assert cached.models[0].method == "prophet" and cached.models[0].fitted_at == fit.fitted_at
    assert _etag(warm_store, fit_key("busy")) == etag

    due = run_once(warm_store, now=NOW + SIX_HOURS, settings=settings)
    assert due.fits_done == 1 and due.models[0].refit
    assert Documents(warm_store).get(fit_key("busy"), ForecastFit).fitted_at.timestamp() == (
        NOW + SIX_HOURS
    )


def test_a_broken_cached_fit_is_refit(warm_store: LocalStore, catalog: Catalog) -> None:
    add_models(warm_store, catalog, ["busy"])
    write_usage(warm_store, "busy", hourly(NOW, 4 * 24, 12))
    stale = ForecastFit(
        model="busy",
        fitted_at=datetime.fromtimestamp(NOW, tz=UTC),
        history_start=datetime.fromtimestamp(NOW, tz=UTC),
        history_hours=1,
        params='{"not": "a prophet model"}',
    )
    Documents(warm_store).upsert(fit_key("busy"), stale)
    plan = run_once(warm_store, now=NOW + 60)
    assert plan.fits_done == 1 and plan.models[0].method == "prophet" and not plan.errors


def test_short_history_uses_the_profile_estimator(warm_store: LocalStore, catalog: Catalog) -> None:
    add_models(warm_store, catalog, ["sparse", "steady"])
    write_usage(warm_store, "sparse", hourly(NOW, 2 * 24, 40))  # 48 h < 72 h
    write_usage(warm_store, "steady", hourly(NOW, 5 * 24, 40))
    plan = run_once(warm_store, now=NOW, settings=WarmSettings(use_prophet=False))
    assert {m.model: m.method for m in plan.models} == {"sparse": "profile", "steady": "profile"}
    plan = run_once(warm_store, now=NOW)
    methods = {m.model: (m.method, m.history_hours) for m in plan.models}
    assert methods == {"sparse": ("profile", 48), "steady": ("prophet", 120)}
    assert warm_store.list("forecast/") == [fit_key("steady")]
