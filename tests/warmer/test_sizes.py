"""The warmer sizes pools with `scaling`: their Deployments' scale subresource on the
Kubernetes API stand-in (no cluster can run here) follows the warm plan."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mpfn.documents import Pool
from mpfn.registry import Registry
from mpfn.scaling import ScalerClients, read_size
from mpfn.store import LocalStore
from mpfn.warm import run_once
from mpfn.warm.metrics import plan_registry
from mpfn.warm.warmer import run_warmer
from tests.factories import pool
from tests.servers.k8s_standin import k8s_standin_server
from tests.servers.process import Proc
from tests.warmer.helpers import NOW, Catalog, Workers, add_models, hourly, ready, write_usage

TOKEN = "warmer-sa-token"
DEPLOYMENTS = {"cheap": 1, "spare": 2, "sleepy": 0}


@pytest.fixture(scope="module")
def k8s(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    allowed = [f"mpfn/{name}" for name in DEPLOYMENTS]
    with k8s_standin_server(tmp_path_factory.mktemp("k8s"), TOKEN, allowed) as proc:
        yield proc


def replicas(k8s: Proc) -> dict[str, int]:
    return {d["name"]: d["replicas"] for d in httpx.get(f"{k8s.url}/_dump").json()}


def scalable(pool_id: str, endpoint: str, k8s: Proc, **scaling: Any) -> Pool:
    spec = {"kind": "k8s", "namespace": "mpfn", "deployment": pool_id, "api_url": k8s.url,
            "max_replicas": 3, **scaling}  # fmt: skip
    return pool(pool_id, endpoint, cost=0.5, scaling=spec)


def run(store: LocalStore, now: float) -> Any:
    async def go() -> Any:
        async with httpx.AsyncClient(timeout=10.0) as http:
            clients = ScalerClients(http=http, k8s_token=lambda: TOKEN)
            return await run_warmer(store, now=now, scalers=clients)

    return asyncio.run(go())


def test_pools_are_sized_to_the_plan(
    warm_store: LocalStore, catalog: Catalog, workers: Workers, k8s: Proc
) -> None:
    for name, size in DEPLOYMENTS.items():
        httpx.post(f"{k8s.url}/_deployments",
                   json={"namespace": "mpfn", "name": name, "replicas": size})  # fmt: skip
    add_models(warm_store, catalog, ["busy", "idle"])
    write_usage(warm_store, "busy", hourly(NOW, 5 * 24, 30))
    registry = Registry(warm_store)
    only_busy = {"models": ["busy"]}
    registry.put_pool(scalable("cheap", workers.cheap.url, k8s).model_copy(update=only_busy))
    registry.put_pool(scalable("spare", workers.dear.url, k8s).model_copy(update=only_busy))
    # asleep (0 replicas): nothing answers at its address, and nothing needs to
    sleepy = scalable("sleepy", "http://sleepy.invalid:8000", k8s)
    registry.put_pool(sleepy.model_copy(update={"models": ["idle"]}))
    write_usage(warm_store, "idle", hourly(NOW, 5 * 24, 30))

    plan = run(warm_store, NOW)

    sizes = {a.pool: a for a in plan.sizes}
    assert (sizes["cheap"].current, sizes["cheap"].replicas, sizes["cheap"].status) == (
        1,
        1,
        "kept",
    )
    assert (sizes["sleepy"].replicas, sizes["sleepy"].status) == (1, "done")  # woken at once
    assert sizes["sleepy"].reason == "up: need 1"
    assert (sizes["spare"].replicas, sizes["spare"].status) == (2, "kept")  # not yet idle long
    assert sizes["spare"].reason == "down to 0 in 300 s"
    assert replicas(k8s) == {"cheap": 1, "spare": 2, "sleepy": 1}
    assert ready(workers.cheap) == {"busy"}
    sleepy_loads = [a for a in plan.actions if a.pool == "sleepy"]
    assert [(a.model, a.status) for a in sleepy_loads] == [("idle", "planned")]  # once it is up
    assert plan.errors == []

    metrics = plan_registry(plan)
    assert metrics.get_sample_value("mpfn_pool_replicas", {"pool": "sleepy"}) == 1
    assert metrics.get_sample_value("mpfn_pool_resizes", {"pool": "sleepy", "direction": "up"})

    later = run(warm_store, NOW + 301)
    spare = next(a for a in later.sizes if a.pool == "spare")
    assert (spare.current, spare.replicas, spare.status) == (2, 0, "done")
    assert replicas(k8s)["spare"] == 0
    recorded = read_size(warm_store, "spare")
    assert recorded is not None and recorded.replicas == 0 and recorded.by == "warmer"
    assert [n for _, n in recorded.history] == [2, 0]


def test_a_pool_whose_size_cannot_be_read_is_reported(
    warm_store: LocalStore, catalog: Catalog, workers: Workers, k8s: Proc
) -> None:
    add_models(warm_store, catalog, ["busy"])
    Registry(warm_store).put_pool(scalable("unknown", workers.cheap.url, k8s))
    plan = run_once(warm_store, now=NOW, apply=False)
    [size] = plan.sizes
    assert size.status == "failed" and "pool unknown" in (size.error or "")


def test_ecs_and_cloud_run_sizes_follow_the_plan(
    warm_store: LocalStore,
    catalog: Catalog,
    workers: Workers,
    moto_server: Proc,
    gcp_standin: Proc,
) -> None:
    import boto3

    cluster = "warm-sizes"
    ecs = boto3.client("ecs", region_name="us-east-1", endpoint_url=moto_server.url,
                       aws_access_key_id="k", aws_secret_access_key="s")  # fmt: skip
    ecs.create_cluster(clusterName=cluster)
    ecs.register_task_definition(
        family=cluster, containerDefinitions=[{"name": "w", "image": "w:1", "memory": 512}]
    )
    ecs.create_service(cluster=cluster, serviceName="idle-ecs", taskDefinition=cluster,
                       desiredCount=2)  # fmt: skip
    parent = "projects/mpfn-test-project/locations/us-central1"
    body = {"template": {"containers": [{"image": "w:1", "ports": [{"containerPort": 8000}]}]}}
    httpx.post(f"{gcp_standin.url}/v2/{parent}/services?serviceId=idle-run", json=body)

    add_models(warm_store, catalog, ["busy", "idle"])
    write_usage(warm_store, "idle", hourly(NOW, 5 * 24, 30))
    registry = Registry(warm_store)
    ecs_scaling = {
        "kind": "ecs",
        "region": "us-east-1",
        "cluster": cluster,
        "service": "idle-ecs",
        "api_url": moto_server.url,
        "max_replicas": 3,
    }
    run_scaling = {"kind": "cloudrun", "service": f"{parent}/services/idle-run",
                   "api_url": gcp_standin.url, "max_replicas": 2, "wake": False}  # fmt: skip
    registry.put_pool(pool("idle-ecs", workers.dear.url, models=["busy"], scaling=ecs_scaling))
    registry.put_pool(pool("idle-run", "http://run.invalid", models=["idle"], scaling=run_scaling))

    async def go(now: float) -> Any:
        async with httpx.AsyncClient(timeout=10.0) as http:
            clients = ScalerClients(
                http=http,
                ecs=lambda region, url: boto3.client(
                    "ecs", region_name=region, endpoint_url=url,
                    aws_access_key_id="k", aws_secret_access_key="s",
                ),
                google_token=_token,
            )  # fmt: skip
            return await run_warmer(warm_store, now=now, scalers=clients)

    first = asyncio.run(go(NOW))
    sizes = {a.pool: (a.current, a.replicas, a.status) for a in first.sizes}
    assert sizes == {"idle-ecs": (2, 2, "kept"), "idle-run": (0, 1, "done")}
    served = httpx.get(f"{gcp_standin.url}/v2/{parent}/services/idle-run").json()
    assert served["scaling"]["minInstanceCount"] == 1

    later = asyncio.run(go(NOW + 301))
    assert {a.pool: a.replicas for a in later.sizes}["idle-ecs"] == 0
    found = ecs.describe_services(cluster=cluster, services=["idle-ecs"])["services"][0]
    assert found["desiredCount"] == 0


async def _token() -> str:
    return "google-token"
