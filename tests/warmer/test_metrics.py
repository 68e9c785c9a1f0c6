"""Warmer metrics: a run's plan as bounded gauges, pushed to a real Pushgateway or written
as CloudWatch embedded-metric lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from mpfn.telemetry.metrics import render
from mpfn.warm.metrics import elapsed_hour_fraction, export, plan_registry
from mpfn.warm.plan import ModelWarmth, PoolState, WarmAction, WarmPlan, WarmSettings
from tests.servers.process import Proc
from tests.servers.pushgateway import gateway_value

NOW = datetime(2026, 11, 29, 10, 30, tzinfo=UTC)


def plan() -> WarmPlan:
    return WarmPlan(
        generated_at=NOW,
        applied=True,
        duration_s=1.5,
        settings=WarmSettings(),
        models=[
            ModelWarmth(
                model="demo",
                version="1",
                method="prophet",
                yhat=10.0,
                upper=14.0,
                current=7,
                probability=0.9,
                warm=True,
                reason="forecast",
                forecast_start=NOW - timedelta(minutes=30),
            ),
        ],
        pools=[PoolState(pool="gpu-a", adapter="ort", desired={"demo": 2})],
        actions=[
            WarmAction(
                pool="gpu-a", model="demo", version="1", action="load", status="done", load_ms=250.0
            ),
            WarmAction(
                pool="cpu-b",
                model="demo",
                version="1",
                action="unload",
                status="failed",
                error="unreachable",
            ),
        ],
        fits_done=1,
        errors=["pool cpu-b: unreachable"],
    )


def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = render(plan_registry(plan())).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_plan_becomes_gauges() -> None:
    s = samples()
    assert s[("mpfn_warmer_warm_replicas", (("model", "demo"), ("pool", "gpu-a")))] == 2
    assert s[("mpfn_warmer_forecast_requests", (("bound", "upper"), ("model", "demo")))] == 14
    # half the hour has passed: 7 requests against 5 forecast so far
    assert s[("mpfn_warmer_forecast_error_requests", (("model", "demo"),))] == 2.0
    assert s[("mpfn_warmer_actions", (("action", "unload"), ("status", "failed")))] == 1
    assert s[("mpfn_warmer_load_seconds_count", (("pool", "gpu-a"),))] == 1
    assert s[("mpfn_warmer_errors", ())] == 1
    assert s[("mpfn_warmer_run_seconds", ())] == 1.5


def test_elapsed_fraction_is_clamped() -> None:
    assert elapsed_hour_fraction(None, NOW) == 0.0
    assert elapsed_hour_fraction(NOW - timedelta(hours=3), NOW) == 1.0
    assert elapsed_hour_fraction(NOW + timedelta(minutes=5), NOW) == 0.0


def test_export_off_by_default_and_emf_on_lambda() -> None:
    assert export(plan(), {}) == "off"
    lines: list[str] = []
    assert export(plan(), {"AWS_LAMBDA_FUNCTION_NAME": "mpfn-warmer"}, write=lines.append) == (
        "emf"
    )
    docs = [json.loads(line) for line in lines]
    assert all(d["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "mpfn" for d in docs)
    replicas = [d for d in docs if "mpfn_warmer_warm_replicas" in d]
    assert replicas and replicas[0]["pool"] == "gpu-a" and replicas[0]["service"] == "warmer"


def test_export_pushes_to_a_real_pushgateway(pushgateway: Proc) -> None:
    assert export(plan(), {"MPFN_PUSHGATEWAY_URL": pushgateway.url}) == "push"
    value = gateway_value(pushgateway.url, "mpfn_warmer_warm_replicas", pool="gpu-a",
                          model="demo", job="mpfn-warmer")  # fmt: skip
    assert value == 2
    assert export(plan(), {"MPFN_PUSHGATEWAY_URL": "http://127.0.0.1:9"}) == "push-failed"
