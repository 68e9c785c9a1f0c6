"""A router in a site: it prefers that site's pools, leaves it when they cannot serve and
says so in `x-mpfn-route-reason`; `MPFN_ROUTER_LOCALITY=off` ignores sites."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from mpfn.demo import demo_model_version
from mpfn.documents import Pool
from mpfn.functions.router.settings import RouterSettings
from mpfn.store import LocalStore
from tests.router.backend import Backend
from tests.router.conftest import make_pool, router, seed

INFER = "/v2/models/demo/infer"


def two_sites(store: LocalStore, a_url: str, b_url: str) -> None:
    pools: list[Pool] = [make_pool("a-1", a_url, site="a"), make_pool("b-1", b_url, site="b")]
    seed(store, models=[demo_model_version()], pools=pools)


async def answers(client: httpx.AsyncClient, n: int) -> list[httpx.Response]:
    out = []
    for _ in range(n):
        r = await client.post(INFER, content=b"{}")
        assert r.status_code == 200, r.text
        out.append(r)
    return out


async def test_the_own_site_pool_takes_the_traffic(
    store: LocalStore, backends: tuple[Backend, Backend]
) -> None:
    a, b = backends
    two_sites(store, a.url, b.url)
    async with router(store, site="a") as client:
        got = await answers(client, 20)
    assert {r.headers["x-mpfn-pool"] for r in got} == {"a-1"}
    assert not any("left site" in r.headers["x-mpfn-route-reason"] for r in got)
    assert b.answered == 0
    async with router(store, site="b") as client:
        got = await answers(client, 5)
    assert {r.headers["x-mpfn-pool"] for r in got} == {"b-1"}


async def test_locality_off_ignores_sites(
    store: LocalStore, backends: tuple[Backend, Backend]
) -> None:
    a, b = backends
    two_sites(store, a.url, b.url)
    async with router(store, site="a", locality=False) as client:
        got = await answers(client, 40)
    # As without sites: two equally fast pools share the traffic (latency-weighted, so
    # not evenly on a busy machine; with locality on, b-1 would take none of it).
    shares = Counter(r.headers["x-mpfn-pool"] for r in got)
    assert min(shares["a-1"], shares["b-1"]) >= 4, shares
    assert not any("left site" in r.headers["x-mpfn-route-reason"] for r in got)


async def test_fails_over_to_the_other_site_and_says_so(
    store: LocalStore, backends: tuple[Backend, Backend]
) -> None:
    _, b = backends
    two_sites(store, "http://127.0.0.1:9", b.url)  # nothing listens on a-1's port
    async with router(store, site="a", breaker_failures=1) as client:
        first = (await answers(client, 1))[0]
        reason = first.headers["x-mpfn-route-reason"]
        assert first.headers["x-mpfn-pool"] == "b-1"
        assert "; attempt 2 after a-1 (a-1: " in reason, reason
        assert reason.endswith("; left site a for b"), reason
        # The failure opened a-1's circuit: now the decision itself leaves the site.
        second = (await answers(client, 1))[0]
    reason = second.headers["x-mpfn-route-reason"]
    assert second.headers["x-mpfn-pool"] == "b-1"
    assert reason.endswith("; left site a for b: no pool in site a can serve (a-1: circuit open)")
    assert "attempt 2" not in reason
    assert reason.isascii() and "\n" not in reason


async def test_unreachable_host_in_the_own_site(
    store: LocalStore, backends: tuple[Backend, Backend]
) -> None:
    _, b = backends
    two_sites(store, "http://a-1.invalid:8000", b.url)
    async with router(store, site="a") as client:
        (r,) = await answers(client, 1)
    assert r.headers["x-mpfn-pool"] == "b-1"
    assert "attempt 2 after a-1" in r.headers["x-mpfn-route-reason"]
    assert r.headers["x-mpfn-route-reason"].endswith("; left site a for b")


def test_site_settings_from_the_environment() -> None:
    default = RouterSettings.from_env({})
    assert (default.site, default.locality) == ("", True)
    assert (default.cross_site_ms, default.cross_site_cost_per_1k) == (30.0, 0.0)
    assert default.routing_config.home is None
    env = {
        "MPFN_ROUTER_SITE": "aws-use1",
        "MPFN_ROUTER_CROSS_SITE_MS": "12.5",
        "MPFN_ROUTER_CROSS_SITE_COST_PER_1K": "0.09",
    }
    cfg = RouterSettings.from_env(env).routing_config
    assert (cfg.site, cfg.home, cfg.cross_site_ms, cfg.cross_site_cost_per_1k) == (
        "aws-use1",
        "aws-use1",
        12.5,
        0.09,
    )
    off = RouterSettings.from_env({**env, "MPFN_ROUTER_LOCALITY": "off"}).routing_config
    assert (off.site, off.home) == ("aws-use1", None)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MPFN_ROUTER_SITE": "US East"}, "site must be a site name"),
        ({"MPFN_ROUTER_SITE": "a" * 33}, "at most 32 characters"),
        ({"MPFN_ROUTER_LOCALITY": "maybe"}, "MPFN_ROUTER_LOCALITY='maybe': expected a bool"),
        ({"MPFN_ROUTER_CROSS_SITE_MS": "-1"}, "cross_site_ms must be a finite number >= 0"),
        ({"MPFN_ROUTER_CROSS_SITE_COST_PER_1K": "nan"}, "cross_site_cost_per_1k must be"),
    ],
)
def test_bad_site_settings_are_one_clear_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        RouterSettings.from_env(env)
    text = str(caught.value)
    assert message in text and "\n" not in text
