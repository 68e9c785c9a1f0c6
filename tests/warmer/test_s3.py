"""A warmer run on S3 state (moto server on loopback): rollups, fits, reports and the plan."""

from __future__ import annotations

import uuid

import pytest

from mpfn.state import Documents
from mpfn.store.s3 import S3Store
from mpfn.warm import WarmPlan, run_once
from mpfn.warm.plan import PLAN_KEY, fit_key, report_key
from tests.servers.process import Proc
from tests.warmer.helpers import NOW, Catalog, add_models, hourly, write_usage


@pytest.fixture(scope="module")
def s3_store(moto_server: Proc) -> S3Store:
    bucket = f"mpfn-warm-{uuid.uuid4().hex[:12]}"
    store = S3Store(
        bucket,
        "state",
        endpoint_url=moto_server.url,
        region="us-east-1",
        access_key_id="mpfn-moto-key",
        secret_access_key="mpfn-moto-secret",
    )
    store.client.create_bucket(Bucket=bucket)
    return store


def test_a_run_on_s3_state(s3_store: S3Store, catalog: Catalog) -> None:
    add_models(s3_store, catalog, ["busy", "sparse"])
    write_usage(s3_store, "busy", hourly(NOW, 4 * 24, 20, every=2))
    write_usage(s3_store, "sparse", hourly(NOW, 12, 3))

    plan = run_once(s3_store, now=NOW)

    assert {m.model: m.method for m in plan.models} == {"busy": "prophet", "sparse": "profile"}
    assert plan.fits_done == 1 and not plan.errors
    assert Documents(s3_store).get(PLAN_KEY, WarmPlan) == plan
    assert s3_store.list("forecast/") == [fit_key("busy")]
    assert set(s3_store.list("reports/")) == {report_key("busy"), report_key("sparse")}
    # 14 days of history span 15 UTC days, each with its rollup of finished hours
    assert len(s3_store.list("rollups/usage/busy/")) == 15

    again = run_once(s3_store, now=NOW + 60)
    assert again.fits_done == 0
    assert [(m.method, m.fitted_at) for m in again.models] == [
        (m.method, m.fitted_at) for m in plan.models
    ]
