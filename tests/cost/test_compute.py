"""The cost report's arithmetic on hand-built usage and size histories: replica-time,
idle time, the model split, tokens, and pools without a size history."""

from __future__ import annotations

import pytest

from mpfn.cost import UNUSED, UsageTotals, compute, parse_duration
from mpfn.usage import PoolUsage, read_usage, usage_document
from tests.factories import pool

T0 = 1_800_000_000.0  # on the hour
H = 3600.0
M0 = int(T0 // 60)
K8S = {"kind": "k8s", "namespace": "n", "deployment": "d", "max_replicas": 3}

POOLS = [
    pool("gpu", adapter="openai", cost=3.0, site="eu", models=["llm", "chat"], scaling=K8S),
    pool("cpu", cost=0.5, site="us"),  # no scaling, no history: one replica throughout
    pool("spare", cost=1.0, site="us", scaling=K8S),  # history starts inside the period
]
HISTORIES = {
    "gpu": [(T0 - H, 2), (T0 + H, 0), (T0 + 2 * H, 1)],  # 2 x 1 h + 0 x 1 h + 1 x 2 h
    "spare": [(T0 + 2 * H, 2)],
}


def usage() -> UsageTotals:
    u = UsageTotals()
    u.add("llm", M0, 4, {"gpu": PoolUsage(3, 300, 90)})  # one of the 4 refused
    u.add("chat", M0, 1, {"gpu": PoolUsage(1, 100, 10)})
    u.add("llm", M0 + 130, 2, {"gpu": PoolUsage(2)})  # at 1 replica
    u.add("demo", M0 + 5, 5, {"cpu": PoolUsage(5)})
    u.add("demo", M0 + 6, 5, {"cpu": PoolUsage(4), "gone": PoolUsage(1)})
    u.add("demo", M0 + 7, 3, {})  # a document without pools (an older router)
    return u


def rows(by: str) -> dict[str, dict[str, object]]:
    report = compute(POOLS, HISTORIES, usage(), T0, T0 + 4 * H, by)  # type: ignore[arg-type]
    out = {g["name"]: g for g in report.to_json()["groups"]}
    out["total"] = report.to_json()["total"]
    return out


def test_by_pool_prices_replica_time_and_idle_minutes() -> None:
    r = rows("pool")
    gpu, cpu, spare = r["gpu"], r["cpu"], r["spare"]
    assert gpu["replica_hours"] == 4.0 and gpu["cost"] == 12.0
    # busy: the first minute at 2 replicas and minute 130 at 1 replica
    assert gpu["idle_replica_hours"] == pytest.approx((4 * H - 120 - 60) / H, abs=1e-6)
    assert gpu["idle_cost"] == pytest.approx(3.0 * (4 * H - 180) / H, abs=1e-5)
    assert gpu["requests"] == 6 and gpu["prompt_tokens"] == 400 and gpu["tokens"] == 500
    assert gpu["cost_per_1m_requests"] == pytest.approx(12.0 / 6 * 1e6)
    assert gpu["cost_per_1m_tokens"] == pytest.approx(12.0 / 500 * 1e6)
    assert cpu["cost"] == 2.0 and cpu["requests"] == 9 and cpu["tokens"] == 0
    assert cpu["cost_per_1m_tokens"] is None
    assert cpu["idle_cost"] == pytest.approx(0.5 * (4 * H - 120) / H, abs=1e-5)
    # its first recorded size (2) is taken for the two hours before it: 8 replica-hours
    assert spare["cost"] == 8.0 and spare["idle_cost"] == 8.0 and spare["requests"] == 0
    assert spare["cost_per_1m_requests"] is None
    assert r["gone"]["cost"] == 0.0 and r["gone"]["requests"] == 1
    assert r["total"]["cost"] == 22.0 and r["total"]["requests"] == 16


def test_by_model_splits_each_pool_by_its_requests() -> None:
    r = rows("model")
    assert r["llm"]["cost"] == pytest.approx(12.0 * 5 / 6, abs=1e-5)
    assert r["chat"]["cost"] == pytest.approx(12.0 / 6, abs=1e-5)
    assert r["llm"]["idle_cost"] == pytest.approx(3.0 * (4 * H - 180) / H * 5 / 6, abs=1e-5)
    assert r["llm"]["requests"] == 5 and r["llm"]["tokens"] == 390
    assert r["llm"]["cost_per_1m_tokens"] == pytest.approx(10.0 / 390 * 1e6, abs=1e-3)
    assert r["demo"]["cost"] == 2.0 and r["demo"]["requests"] == 10  # 9 on cpu, 1 on gone
    assert r[UNUSED]["cost"] == 8.0 and r[UNUSED]["requests"] == 0
    assert r["total"]["cost"] == pytest.approx(22.0)


def test_by_site_and_notes() -> None:
    report = compute(POOLS, HISTORIES, usage(), T0, T0 + 4 * H, "site")
    sites = {g.name: round(g.cost, 6) for g in report.groups}
    assert sites == {"eu": 12.0, "us": 10.0, "(no site)": 0.0}  # (no site): the unknown pool
    assert [g.name for g in report.groups][:2] == ["eu", "us"]  # most expensive first
    # 4 + 1 + 2 + 5 + 5 + 3 counted, 16 answered by a recorded pool
    assert report.unattributed_requests == 4
    notes = " | ".join(report.notes)
    assert "1 replica assumed for the whole period: cpu" in notes
    assert "spare: its size before" in notes and "taken as 2" in notes
    assert "not priced: pool(s) gone" in notes


def test_compute_rejects_an_unknown_grouping() -> None:
    with pytest.raises(ValueError, match="cannot group by"):
        compute(POOLS, {}, UsageTotals(), T0, T0 + H, "region")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "seconds"), [("24h", 86400.0), ("7d", 604800.0), ("90m", 5400.0), ("1.5h", 5400.0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "24", "h", "3x", "-1h", "0d", "1e3h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_documents_old_and_new_read_back() -> None:
    old = usage_document("m", M0, "r1", 7)
    assert read_usage("k", old).count == 7 and dict(read_usage("k", old).pools) == {}
    new = usage_document("m", M0, "r1", 7, {"b": PoolUsage(2), "a": PoolUsage(5, 10, 20)})
    back = read_usage("k", new)
    assert back.count == 7 and dict(back.pools) == {"a": PoolUsage(5, 10, 20), "b": PoolUsage(2)}
    bad = b'{"count": 3, "pools": {"a": {"requests": -1}, "b": [], "c": {"requests": 2}}}'
    assert dict(read_usage("k", bad).pools) == {"c": PoolUsage(2)}
    assert read_usage("k", b"not json").count == 0
