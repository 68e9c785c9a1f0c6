"""Warmer metrics: one run's plan as Prometheus gauges, exported where nothing scrapes.

A warmer run is a short-lived job (cron, Lambda, Cloud Run job), so its metrics describe
the latest run: `plan_registry` builds a fresh registry from a `WarmPlan` (pure: labels
come only from registered models and pools, so cardinality is bounded by the registry),
and `export` pushes it to a Pushgateway (`MPFN_PUSHGATEWAY_URL`; a push replaces the
group, so nothing is double counted) or prints CloudWatch embedded-metric lines (on
Lambda, or when `MPFN_WARMER_EMF=1`). Export never raises: metrics must not fail a run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge, Histogram

from mpfn.documents import Pool
from mpfn.warm.plan import WarmPlan

LOAD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def elapsed_hour_fraction(forecast_start: datetime | None, now: datetime) -> float:
    """How much of the forecast hour has passed (0..1); 0 when there is no forecast."""
    if forecast_start is None:
        return 0.0
    return min(1.0, max(0.0, (now - forecast_start).total_seconds() / 3600.0))


def plan_registry(plan: WarmPlan, pools: Iterable[Pool] = ()) -> CollectorRegistry:
    """The metrics of one run. Every series is labelled by registered names only; `pools`
    (the registry's) give each pool of the run its price per replica-hour."""
    registry = CollectorRegistry()
    g = Gauge  # short alias for the table below

    run_seconds = g("mpfn_warmer_run_seconds", "Duration of the latest run", registry=registry)
    last_run = g("mpfn_warmer_last_run_timestamp_seconds", "When the latest run started",
                 registry=registry)  # fmt: skip
    errors = g("mpfn_warmer_errors", "Errors in the latest run (pools, adapters, models)",
               registry=registry)  # fmt: skip
    fits = g("mpfn_warmer_fits", "Forecast fits done in the latest run", registry=registry)
    replicas = g("mpfn_warmer_warm_replicas", "Desired warm replicas per pool and model",
                 ["pool", "model"], registry=registry)  # fmt: skip
    forecast = g("mpfn_warmer_forecast_requests", "Forecast requests in the current hour",
                 ["model", "bound"], registry=registry)  # fmt: skip
    error = g("mpfn_warmer_forecast_error_requests",
              "Requests so far this hour minus the forecast for the elapsed part of the hour",
              ["model"], registry=registry)  # fmt: skip
    probability = g("mpfn_warmer_demand_probability",
                    "P(at least one request within the warm window)", ["model"],
                    registry=registry)  # fmt: skip
    actions = g("mpfn_warmer_actions", "Load/unload actions in the latest run",
                ["action", "status"], registry=registry)  # fmt: skip
    pool_size = g("mpfn_pool_replicas", "Replicas of each scalable pool after the latest run",
                  ["pool"], registry=registry)  # fmt: skip
    resizes = g("mpfn_pool_resizes", "Pool size changes in the latest run", ["pool", "direction"],
                registry=registry)  # fmt: skip
    price = g("mpfn_pool_cost_per_hour", "Price of one replica of the pool per hour (USD)",
              ["pool"], registry=registry)  # fmt: skip
    loads = Histogram("mpfn_warmer_load_seconds", "Model load durations in the latest run",
                      ["pool"], buckets=LOAD_BUCKETS, registry=registry)  # fmt: skip

    run_seconds.set(plan.duration_s)
    last_run.set(plan.generated_at.timestamp())
    errors.set(len(plan.errors))
    fits.set(plan.fits_done)
    for pool in plan.pools:
        for model, count in pool.desired.items():
            replicas.labels(pool.pool, model).set(count)
    for m in plan.models:
        forecast.labels(m.model, "yhat").set(m.yhat)
        forecast.labels(m.model, "upper").set(m.upper)
        expected_so_far = m.yhat * elapsed_hour_fraction(m.forecast_start, plan.generated_at)
        error.labels(m.model).set(m.current - expected_so_far)
        probability.labels(m.model).set(m.probability)
    for action in ("load", "unload"):
        for status in ("planned", "done", "failed"):
            count = sum(a.action == action and a.status == status for a in plan.actions)
            actions.labels(action, status).set(count)
    for size in plan.sizes:
        if size.current is None:
            continue
        now_at = (
            size.replicas if size.status == "done" and size.replicas is not None else size.current
        )
        pool_size.labels(size.pool).set(now_at)
        if size.status == "done" and size.replicas is not None:
            direction = "up" if size.replicas > size.current else "down"
            resizes.labels(size.pool, direction).set(1)
    in_run = {p.pool for p in plan.pools} | {s.pool for s in plan.sizes}
    for doc in pools:
        if doc.id in in_run:
            price.labels(doc.id).set(doc.cost_per_hour)
    for a in plan.actions:
        if a.action == "load" and a.status == "done" and a.load_ms is not None:
            loads.labels(a.pool).observe(a.load_ms / 1000.0)
    return registry


def export(
    plan: WarmPlan,
    env: Mapping[str, str] | None = None,
    *,
    write: Callable[[str], None] = print,
    pools: Iterable[Pool] = (),
) -> str:
    """Push or print the run's metrics as configured; returns how ("push", "emf", "off")."""
    from mpfn.telemetry.emf import EmfExporter
    from mpfn.telemetry.push import Pusher

    env = os.environ if env is None else env
    registry = plan_registry(plan, pools)
    url = env.get("MPFN_PUSHGATEWAY_URL")
    if url:
        pusher = Pusher(registry, url, job="mpfn-warmer")
        return "push" if pusher.push() else "push-failed"
    if env.get("MPFN_WARMER_EMF", "") == "1" or env.get("AWS_LAMBDA_FUNCTION_NAME"):
        for line in EmfExporter(registry, fixed={"service": "warmer"}).flush():
            write(line)
        return "emf"
    return "off"
