"""A Grafana dashboard for an mpfn deployment. Pure.

Two rows: the router function from CloudWatch (invocations, errors, throttles, duration,
concurrency) and the adapter workers from Prometheus (request rate and latency per model,
in-flight and queued inferences, model loads and load time, loaded models). Both data
sources are dashboard variables, so one file fits any Grafana.
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
) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "datasource": source,
        "gridPos": {"h": 8, "w": 8, "x": x, "y": y},
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


def dashboard(stem: str, region: str) -> dict[str, Any]:
    router = f"{stem}-router"
    row1 = 1
    row2 = 18
    panels = [
        {
            "id": 100,
            "type": "row",
            "title": f"Router function {router}",
            "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": 0},
            "panels": [],
        },
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
        ),
        _panel(
            2,
            "Duration (avg, max)",
            8,
            row1,
            [
                _lambda("Duration", router, "Average", "A", region),
                _lambda("Duration", router, "Maximum", "B", region),
            ],
            "ms",
            CLOUDWATCH,
        ),
        _panel(
            3,
            "Concurrent executions",
            16,
            row1,
            [
                _lambda("ConcurrentExecutions", router, "Maximum", "A", region),
            ],
            "short",
            CLOUDWATCH,
        ),
        {
            "id": 101,
            "type": "row",
            "title": "Adapter workers",
            "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": row2 - 1},
            "panels": [],
        },
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
