from __future__ import annotations

import pytest

from mpfn.routing import NO_HINTS, HintError, RequestHints, parse_hints, tighten
from tests.routing.factories import policy


def test_no_headers_is_no_hints() -> None:
    assert parse_hints({"content-type": "application/json"}) is NO_HINTS


def test_parses_every_hint() -> None:
    hints = parse_hints(
        {
            "x-mpfn-latency-budget-ms": " 120.5",
            "x-mpfn-max-cost": "0.002",
            "x-mpfn-region": "us-east-1, eu-west-1",
            "x-mpfn-pool": "gpu-a",
        }
    )
    assert hints == RequestHints(120.5, 0.002, ("us-east-1", "eu-west-1"), "gpu-a")


@pytest.mark.parametrize(
    ("header", "value", "message"),
    [
        ("x-mpfn-latency-budget-ms", "fast", "must be a positive number"),
        ("x-mpfn-latency-budget-ms", "0", "must be a positive number"),
        ("x-mpfn-latency-budget-ms", "nan", "must be a positive number"),
        ("x-mpfn-latency-budget-ms", "inf", "must be a positive number"),
        ("x-mpfn-max-cost", "-1", "must be a non-negative number"),
        ("x-mpfn-region", " , ", "at least one region"),
        ("x-mpfn-region", "us east", "invalid region name"),
        ("x-mpfn-pool", "../etc", "invalid pool id"),
    ],
)
def test_malformed_hints_name_the_header(header: str, value: str, message: str) -> None:
    with pytest.raises(HintError, match=message) as info:
        parse_hints({header: value})
    assert header in str(info.value)
    assert isinstance(info.value, ValueError)


def test_hints_only_tighten() -> None:
    p = policy(latency_slo_ms=100, max_cost_per_1k=2.0, allowed_regions=["a", "b"])
    loose = tighten(p, RequestHints(latency_budget_ms=500, max_cost=1.0))
    assert loose.latency_slo_ms == 100
    assert loose.max_cost == pytest.approx(0.002)
    tight = tighten(p, RequestHints(latency_budget_ms=20, max_cost=0.0005, regions=("b",)))
    assert tight.latency_slo_ms == 20
    assert tight.max_cost == 0.0005
    assert list(tight.regions) == ["b"]


def test_region_outside_policy_is_an_error() -> None:
    p = policy(allowed_regions=["a"])
    with pytest.raises(HintError, match="region 'z' is not allowed by policy 'default'"):
        tighten(p, RequestHints(regions=("z",)))


def test_region_hint_narrows_an_open_policy() -> None:
    limits = tighten(policy(), RequestHints(regions=("z",)))
    assert list(limits.regions) == ["z"]
    assert tighten(policy()).regions == []
