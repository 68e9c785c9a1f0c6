"""A Grafana dashboard for an mpfn deployment. Pure.

Four rows: the router function from CloudWatch (invocations, errors, throttles, duration,
concurrency, and the router's own counts from its embedded-metric-format lines in the
`mpfn` namespace), the router from Prometheus (`mpfn_router_*`: requests and latency by
model and status, failovers, cold starts, circuit state, in-flight requests, rejections;
scraped from `/metrics` or pushed to a Pushgateway), the adapter workers from
Prometheus (request rate and latency per model, in-flight and queued inferences, model
loads and load time, loaded models), and cost (each pool's price per replica-hour times
its replicas, from the warmer's pushed gauges, set against the routers' requests). Both
data sources are dashboard variables, so one file fits any Grafana. Metric names:
docs/observability.md.
"""

from __future__ import annotations

import json
from typing import Any

CLOUDWATCH = {"type": "cloudwatch", "uid": "${cloudwatch}"}
PROMETHEUS = {"type": "prometheus", "uid": "${prometheus}"}


def _panel(
    pid: int,
    title: str,
    x: int,
    y: int,
    targets: list[dict[str, Any]],
    unit: str,
    source: dict[str, str],
    w: int = 8,
) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "datasource": source,
        "gridPos": {"h": 8, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": targets,
    }


def _lambda(metric: str, function: str, stat: str, ref: str, region: str) -> dict[str, Any]:
    return {
        "refId": ref,
        "datasource": CLOUDWATCH,
        "namespace": "AWS/Lambda",
        "metricName": metric,
        "dimensions": {"FunctionName": function},
        "statistic": stat,
        "region": region,
        "period": "60",
        "matchExact": True,
    }


def _prom(expr: str, legend: str, ref: str = "A") -> dict[str, Any]:
    return {"refId": ref, "datasource": PROMETHEUS, "expr": expr, "legendFormat": legend}


def _emf(metric: str, ref: str, region: str) -> dict[str, Any]:
    """The router's own count from its EMF lines, summed over models, pools and statuses."""
    return {
        "refId": ref,
        "datasource": CLOUDWATCH,
        "namespace": "mpfn",
        "metricName": metric,
        "dimensions": {"service": "router"},
        "statistic": "Sum",
        "region": region,
        "period": "60",
        "matchExact": False,
    }


def _row(pid: int, title: str, y: int) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "row",
        "title": title,
        "collapsed": False,
        "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
        "panels": [],
    }


def _quantiles(metric: str, by: str = "le") -> list[dict[str, Any]]:
    return [
        _prom(f"histogram_quantile({q}, sum by ({by}) (rate({metric}_bucket[5m])))", name, ref)
        for q, name, ref in ((0.5, "p50", "A"), (0.99, "p99", "B"))
    ]


def router_panels(y: int) -> list[dict[str, Any]]:
    """The router's Prometheus row (`mpfn_router_*`) starting at `y`."""
    return [
        _row(102, "Router (mpfn_router_*)", y),
        _panel(
            10,
            "Routed requests per second by model and status",
            0,
            y + 1,
            [
                _prom(
                    "sum by (model, status) (rate(mpfn_router_requests_total[5m]))",
                    "{{model}} {{status}}",
                )
            ],
            "reqps",
            PROMETHEUS,
        ),
        _panel(
            11,
            "Router latency p50 / p99",
            8,
            y + 1,
            _quantiles("mpfn_router_request_seconds"),
            "s",
            PROMETHEUS,
        ),
        _panel(
            12,
            "Failovers / cold starts per second by pool",
            16,
            y + 1,
            [
                _prom(
                    "sum by (pool) (rate(mpfn_router_failovers_total[5m]))",
                    "failover from {{pool}}",
                    "A",
                ),
                _prom(
                    "sum by (pool) (rate(mpfn_router_cold_starts_total[5m]))",
                    "cold start on {{pool}}",
                    "B",
                ),
            ],
            "reqps",
            PROMETHEUS,
        ),
        _panel(
            13,
            "Circuit state by pool (0 closed, 1 half-open, 2 open)",
            0,
            y + 9,
            [_prom("max by (pool) (mpfn_router_circuit_state)", "{{pool}}")],
            "short",
            PROMETHEUS,
        ),
        _panel(
            14,
            "In flight: requests / attempts by pool",
            8,
            y + 9,
            [
                _prom("sum(mpfn_router_inflight)", "requests", "A"),
                _prom("sum by (pool) (mpfn_router_pool_inflight)", "{{pool}}", "B"),
            ],
            "short",
            PROMETHEUS,
        ),
        _panel(
            15,
            "Rejected requests per second by reason",
            16,
            y + 9,
            [
                _prom(
                    "sum by (reason) (rate(mpfn_router_rejections_total[5m]))",
                    "{{reason}}",
                )
            ],
            "reqps",
            PROMETHEUS,
        ),
        _panel(
            19,
            "Shed at capacity (503 + Retry-After) per second",
            0,
            y + 17,
            [
                _prom(
                    'sum(rate(mpfn_router_rejections_total{reason="at_capacity"}[5m]))',
                    "shed",
                    "A",
                ),
                _prom(
                    "sum(rate(mpfn_router_held_refusals_total[5m]))",
                    "held (sent before Retry-After)",
                    "B",
                ),
            ],
            "reqps",
            PROMETHEUS,
        ),
        _panel(
            20,
            "Admission limit by pool / requests waiting for a slot",
            8,
            y + 17,
            [
                _prom("max by (pool) (mpfn_router_admission_limit)", "limit {{pool}}", "A"),
                _prom("sum(mpfn_router_admission_waiting)", "waiting", "B"),
            ],
            "short",
            PROMETHEUS,
        ),
        _panel(
            21,
            "Admission queue time p50 / p99",
            16,
            y + 17,
            _quantiles("mpfn_router_admission_queue_seconds"),
            "s",
            PROMETHEUS,
        ),
    ]


# USD per hour each pool costs now: its price times its replicas (the warmer's gauges; a
# pool without `scaling` has no replica gauge and counts as one replica).
POOL_COST_PER_HOUR = (
    "(max by (pool) (mpfn_pool_cost_per_hour) * on (pool) max by (pool) (mpfn_pool_replicas))"
    " or on (pool) max by (pool) (mpfn_pool_cost_per_hour)"
)
POOL_REQUESTS_PER_S = 'sum by (pool) (rate(mpfn_router_requests_total{pool!="none"}[5m]))'


def cost_panels(y: int) -> list[dict[str, Any]]:
    """The cost row starting at `y`: cost per hour and requests per pool, and their ratio."""
    return [
        _row(103, "Cost (mpfn_pool_cost_per_hour x mpfn_pool_replicas)", y),
        _panel(
            22,
            "Cost per hour by pool (USD)",
            0,
            y + 1,
            [
                _prom(POOL_COST_PER_HOUR, "{{pool}}", "A"),
                _prom(f"sum({POOL_COST_PER_HOUR})", "total", "B"),
            ],
            "currencyUSD",
            PROMETHEUS,
        ),
        _panel(
            23,
            "Requests per second by pool",
            8,
            y + 1,
            [_prom(POOL_REQUESTS_PER_S, "{{pool}}")],
            "reqps",
            PROMETHEUS,
        ),
        _panel(
            24,
            "Cost per 1M requests by pool (USD, last hour)",
            16,
            y + 1,
            [
                _prom(
                    f"({POOL_COST_PER_HOUR}) / on (pool) (sum by (pool) "
                    '(increase(mpfn_router_requests_total{pool!="none"}[1h])) > 0) * 1e6',
                    "{{pool}}",
                )
            ],
            "currencyUSD",
            PROMETHEUS,
        ),
    ]


def dashboard(stem: str, region: str) -> dict[str, Any]:
    router = f"{stem}-router"
    row1 = 1
    row2 = 35
    panels = [
        _row(100, f"Router function {router}", 0),
        _panel(
            1,
            "Invocations / errors / throttles",
            0,
            row1,
            [
                _lambda("Invocations", router, "Sum", "A", region),
                _lambda("Errors", router, "Sum", "B", region),
                _lambda("Throttles", router, "Sum", "C", region),
            ],
            "short",
            CLOUDWATCH,
            w=6,
        ),
        _panel(
            2,
            "Duration (avg, max)",
            6,
            row1,
            [
                _lambda("Duration", router, "Average", "A", region),
                _lambda("Duration", router, "Maximum", "B", region),
            ],
            "ms",
            CLOUDWATCH,
            w=6,
        ),
        _panel(
            3,
            "Concurrent executions",
            12,
            row1,
            [
                _lambda("ConcurrentExecutions", router, "Maximum", "A", region),
            ],
            "short",
            CLOUDWATCH,
            w=6,
        ),
        _panel(
            16,
            "Routed requests / failovers / cold starts (EMF)",
            18,
            row1,
            [
                _emf("mpfn_router_requests_total", "A", region),
                _emf("mpfn_router_failovers_total", "B", region),
                _emf("mpfn_router_cold_starts_total", "C", region),
            ],
            "short",
            CLOUDWATCH,
            w=6,
        ),
        *router_panels(row1 + 8),
        _row(101, "Adapter workers", row2 - 1),
        _panel(
            4,
            "Requests per second by model",
            0,
            row2,
            [
                _prom("sum by (model) (rate(mpfn_worker_requests_total[5m]))", "{{model}}"),
            ],
            "reqps",
            PROMETHEUS,
        ),
        _panel(
            5,
            "Request latency p50 / p99",
            8,
            row2,
            [
                _prom(
                    "histogram_quantile(0.5, sum by (le) "
                    "(rate(mpfn_worker_request_seconds_bucket[5m])))",
                    "p50",
                    "A",
                ),
                _prom(
                    "histogram_quantile(0.99, sum by (le) "
                    "(rate(mpfn_worker_request_seconds_bucket[5m])))",
                    "p99",
                    "B",
                ),
            ],
            "s",
            PROMETHEUS,
        ),
        _panel(
            6,
            "In flight / queued",
            16,
            row2,
            [
                _prom("sum(mpfn_worker_inflight)", "in flight", "A"),
                _prom("sum(mpfn_worker_queued)", "queued", "B"),
            ],
            "short",
            PROMETHEUS,
        ),
        _panel(
            7,
            "Model loads by outcome",
            0,
            row2 + 8,
            [
                _prom(
                    "sum by (outcome) (increase(mpfn_worker_model_loads_total[15m]))", "{{outcome}}"
                ),
            ],
            "short",
            PROMETHEUS,
        ),
        _panel(
            8,
            "Model load time p90",
            8,
            row2 + 8,
            [
                _prom(
                    "histogram_quantile(0.9, sum by (le) "
                    "(rate(mpfn_worker_model_load_seconds_bucket[15m])))",
                    "p90",
                ),
            ],
            "s",
            PROMETHEUS,
        ),
        _panel(
            9,
            "Loaded models / model memory",
            16,
            row2 + 8,
            [
                _prom("sum(mpfn_worker_loaded_models)", "models", "A"),
                _prom("sum(mpfn_worker_model_memory_mb)", "MB", "B"),
            ],
            "short",
            PROMETHEUS,
        ),
        *cost_panels(row2 + 16),
    ]
    return {
        "title": f"mpfn {stem}",
        "uid": f"mpfn-{stem}"[:40],
        "tags": ["mpfn"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "1m",
        "templating": {
            "list": [
                {
                    "name": "cloudwatch",
                    "type": "datasource",
                    "query": "cloudwatch",
                    "label": "CloudWatch",
                },
                {
                    "name": "prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                },
            ]
        },
        "panels": panels,
    }


def render(stem: str, region: str) -> str:
    return json.dumps(dashboard(stem, region), indent=2) + "\n"
