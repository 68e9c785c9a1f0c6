"""The warmer's pushed metrics carry each pool's price per replica-hour."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from mpfn.telemetry.metrics import render
from mpfn.warm.metrics import plan_registry
from mpfn.warm.plan import PoolState, SizeAction, WarmPlan, WarmSettings
from tests.factories import pool


def test_pool_prices_are_gauges_for_the_pools_of_the_run() -> None:
    plan = WarmPlan(
        generated_at=datetime(2026, 11, 29, 10, 30, tzinfo=UTC),
        applied=True,
        duration_s=0.5,
        settings=WarmSettings(),
        pools=[PoolState(pool="gpu", adapter="ort")],
        sizes=[SizeAction(pool="gpu", current=2, replicas=2)],
    )
    pools = [pool("gpu", cost=2.5), pool("elsewhere", cost=9.0)]  # not in this site's run
    text = render(plan_registry(plan, pools)).decode()
    found = {
        (s.name, s.labels.get("pool")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name in ("mpfn_pool_cost_per_hour", "mpfn_pool_replicas")
    }
    assert found == {("mpfn_pool_cost_per_hour", "gpu"): 2.5, ("mpfn_pool_replicas", "gpu"): 2.0}
