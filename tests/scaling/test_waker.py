"""The router's waker: which pools count as asleep, and where held requests go."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from mpfn.documents import Pool
from mpfn.functions.router.wake import Waker
from mpfn.routing.errors import RouteError
from mpfn.scaling import ScalerClients
from tests.factories import pool
from tests.servers.k8s_standin import k8s_standin_server
from tests.servers.process import Proc

TOKEN = "router-sa-token"


@pytest.fixture(scope="module")
def k8s(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    with k8s_standin_server(tmp_path_factory.mktemp("k8s"), TOKEN, ["mpfn/a"]) as proc:
        for name in ("a", "b"):
            httpx.post(f"{proc.url}/_deployments",
                       json={"namespace": "mpfn", "name": name, "replicas": 0})  # fmt: skip
        yield proc


def asleep_pool(pool_id: str, k8s: Proc, capacity: int = 1) -> Pool:
    scaling = {"kind": "k8s", "namespace": "mpfn", "deployment": pool_id, "api_url": k8s.url}
    return pool(pool_id, f"http://{pool_id}.invalid:8000", capacity=capacity, scaling=scaling)


def waker(ready_after: int = 1, **kwargs: object) -> Waker:
    """A waker whose pools answer after `ready_after` readiness checks."""
    checks: dict[str, int] = {}

    async def ready(p: Pool) -> bool:
        checks[p.id] = checks.get(p.id, 0) + 1
        return checks[p.id] >= ready_after

    def clients() -> ScalerClients:
        return ScalerClients(http=httpx.AsyncClient(timeout=5.0), k8s_token=lambda: TOKEN)

    return Waker(clients=clients, ready=ready, poll_s=0.01, **kwargs)  # type: ignore[arg-type]


def test_a_woken_pool_is_awake_until_a_newer_zero_is_recorded(k8s: Proc) -> None:
    w = waker(clock=lambda: 100.0)
    assert w.asleep({"a": 50.0}) == {"a"}
    woken = asyncio.run(w.wait([asleep_pool("a", k8s)], 5.0))
    assert woken.pool == "a" and w.wakes == 1
    scale = httpx.get(f"{k8s.url}/_dump").json()
    assert {d["name"]: d["replicas"] for d in scale}["a"] == 1  # asked for one replica
    assert w.asleep({"a": 50.0}) == frozenset()
    assert w.asleep({"a": 150.0}) == {"a"}  # scaled to zero again after the wake


def test_held_requests_share_a_wake_and_spill_to_the_next_pool(k8s: Proc) -> None:
    httpx.post(f"{k8s.url}/_deployments", json={"namespace": "mpfn", "name": "a", "replicas": 0})
    w = waker(ready_after=3)
    pools = [asleep_pool("a", k8s, capacity=2), asleep_pool("b", k8s, capacity=2)]

    async def burst() -> list[str]:
        woken = await asyncio.gather(
            *(w.wait(pools, 5.0) for _ in range(6)), return_exceptions=True
        )
        return [x.pool if not isinstance(x, BaseException) else str(x) for x in woken]

    got = asyncio.run(burst())
    assert got.count("a") == 4  # 2 x capacity held for the first pool
    # the second pool's Role does not allow scaling it: those requests get a clear 503
    failed = [x for x in got if x != "a"]
    assert failed and all("pool b is asleep and could not be woken" in x for x in failed)


def test_a_deadline_shorter_than_the_wake_gets_503_with_retry_after(k8s: Proc) -> None:
    w = waker(ready_after=10_000)
    with pytest.raises(RouteError) as caught:
        asyncio.run(w.wait([asleep_pool("a", k8s)], 0.05))
    assert caught.value.status == 503
    assert (b"retry-after", b"10") in caught.value.headers
    assert "pool a is waking from zero replicas" in caught.value.message


def test_too_many_held_requests_are_refused_at_once(k8s: Proc) -> None:
    w = waker(max_waiting=0)
    with pytest.raises(RouteError, match="0 requests already wait"):
        asyncio.run(w.wait([asleep_pool("a", k8s)], 5.0))
