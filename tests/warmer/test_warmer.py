"""Warmer runs against a local state and two real ORT workers: what gets loaded and unloaded."""

from __future__ import annotations

from mpfn.registry import Registry
from mpfn.state import Documents
from mpfn.store import LocalStore
from mpfn.warm import WarmPlan, WarmSettings, run_once
from mpfn.warm.plan import PLAN_KEY, fit_key, report_key
from tests.factories import pool
from tests.servers.ports import unused_port
from tests.warmer.helpers import (
    NOW,
    Catalog,
    Workers,
    add_models,
    add_pool,
    hourly,
    load,
    ready,
    write_usage,
)


def _state(store: LocalStore, catalog: Catalog, workers: Workers, *models: str) -> None:
    add_models(store, catalog, models)
    add_pool(store, "cheap", workers.cheap.url, 0.5)
    add_pool(store, "dear", workers.dear.url, 1.2)


def test_loads_the_predicted_model_on_the_cheapest_pool_and_unloads_idle_ones(
    warm_store: LocalStore, catalog: Catalog, workers: Workers
) -> None:
    _state(warm_store, catalog, workers, "busy", "idle", "sparse")
    write_usage(warm_store, "busy", hourly(NOW, 5 * 24, 30))  # 30 an hour for 5 days
    write_usage(warm_store, "sparse", hourly(NOW, 24, 1, every=8, first=2))  # 3 in one day
    for worker in workers.all():
        load(worker, "idle")

    plan = run_once(warm_store, now=NOW)

    assert ready(workers.cheap) == {"busy"}
    assert ready(workers.dear) == set()
    models = {m.model: m for m in plan.models}
    assert models["busy"].warm and models["busy"].reason == "forecast"
    assert models["busy"].method == "prophet" and models["busy"].refit
    assert models["busy"].last_used is None  # nothing recent: the forecast alone warmed it
    assert models["sparse"].method == "profile" and not models["sparse"].warm
    assert models["idle"].method == "none" and models["idle"].reason == "idle"
    done = {(a.action, a.model, a.pool) for a in plan.actions if a.status == "done"}
    assert done == {
        ("load", "busy", "cheap"),
        ("unload", "idle", "cheap"),
        ("unload", "idle", "dear"),
    }
    stored = Documents(warm_store).get(PLAN_KEY, WarmPlan)  # validates
    assert stored.applied and stored.models == plan.models and not stored.errors
    assert warm_store.list(fit_key("busy"))
    assert not warm_store.list(fit_key("sparse"))  # the profile estimator stores no fit
    assert warm_store.list(report_key("busy"))

    # The same forecast an hour later: nothing flaps, nothing is refit.
    again = run_once(warm_store, now=NOW + 3600)
    assert again.actions == [] and again.fits_done == 0
    assert ready(workers.cheap) == {"busy"}


def test_a_recently_used_model_stays_where_it_is_loaded(
    warm_store: LocalStore, catalog: Catalog, workers: Workers
) -> None:
    _state(warm_store, catalog, workers, "steady")
    write_usage(warm_store, "steady", {NOW - 120: 1})  # one request two minutes ago
    load(workers.dear, "steady")  # the router sent it to the dear pool

    plan = run_once(warm_store, now=NOW)

    assert ready(workers.dear) == {"steady"} and ready(workers.cheap) == set()
    assert plan.actions == []
    (steady,) = plan.models
    assert steady.warm and steady.recent == 1 and steady.last_used is not None

    later = run_once(warm_store, now=NOW + 30 * 3600)  # idle for a day and more: unloaded
    assert [(a.action, a.pool, a.status) for a in later.actions] == [("unload", "dear", "done")]
    assert ready(workers.dear) == set()


def test_a_broken_pool_adapter_or_model_does_not_stop_the_run(
    warm_store: LocalStore, catalog: Catalog, workers: Workers
) -> None:
    add_models(warm_store, catalog, ["busy", "broken"])
    add_pool(warm_store, "cheap", workers.cheap.url, 0.5)
    add_pool(warm_store, "gone", f"http://127.0.0.1:{unused_port()}", 0.1)  # nothing listens
    add_pool(warm_store, "alien", workers.dear.url, 0.2, adapter="no-such-kind")
    for model in ("busy", "broken"):
        write_usage(warm_store, model, hourly(NOW, 24, 30))

    plan = run_once(warm_store, now=NOW)

    assert ready(workers.cheap) == {"busy"}
    status = {(a.model, a.pool): a.status for a in plan.actions}
    assert status == {("busy", "cheap"): "done", ("broken", "cheap"): "failed"}
    text = " | ".join(plan.errors)
    assert "pool gone:" in text and "pool alien:" in text and "no-such-kind" in text
    assert "load broken:1" in text
    pools = {p.pool: p for p in plan.pools}
    assert pools["gone"].error and pools["alien"].error and pools["cheap"].error is None
    assert Documents(warm_store).get(PLAN_KEY, WarmPlan).errors == plan.errors


def test_plan_without_apply_changes_nothing(
    warm_store: LocalStore, catalog: Catalog, workers: Workers
) -> None:
    _state(warm_store, catalog, workers, "busy", "idle")
    write_usage(warm_store, "busy", hourly(NOW, 5 * 24, 30))
    load(workers.dear, "idle")
    before = warm_store.list("")

    plan = run_once(warm_store, now=NOW, apply=False)

    assert not plan.applied
    assert {(a.action, a.model, a.pool, a.status) for a in plan.actions} == {
        ("load", "busy", "cheap", "planned"),
        ("unload", "idle", "dear", "planned"),
    }
    assert warm_store.list("") == before  # no plan, fit, report or rollup written
    assert ready(workers.dear) == {"idle"} and ready(workers.cheap) == set()


def test_pinned_models_are_kept_on_every_pool(
    warm_store: LocalStore, catalog: Catalog, workers: Workers
) -> None:
    _state(warm_store, catalog, workers, "other")
    settings = WarmSettings(pinned=["other"])
    plan = run_once(warm_store, now=NOW, settings=settings)
    assert ready(workers.cheap) == {"other"} and ready(workers.dear) == {"other"}
    assert plan.models[0].reason == "pinned"


def test_a_site_warmer_looks_after_its_own_pools_only(
    warm_store: LocalStore, catalog: Catalog, workers: Workers
) -> None:
    add_models(warm_store, catalog, ["busy"])
    write_usage(warm_store, "busy", hourly(NOW, 5 * 24, 30))
    registry = Registry(warm_store)
    for pool_id, worker, site in (("east-1", workers.cheap, "east"), ("eu-1", workers.dear, "eu")):
        doc = pool(pool_id, worker.url, cost=0.5)
        registry.put_pool(doc.model_copy(update={"site": site}))

    plan = run_once(warm_store, now=NOW, site="eu")

    assert [p.pool for p in plan.pools] == ["eu-1"]
    assert {(a.action, a.pool) for a in plan.actions} == {("load", "eu-1")}
    assert ready(workers.dear) == {"busy"} and ready(workers.cheap) == set()
