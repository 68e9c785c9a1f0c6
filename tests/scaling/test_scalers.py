"""Each scaler against a real server: ECS on the moto server, Cloud Run on the GCP REST
stand-in, a Deployment's scale subresource on the Kubernetes API stand-in (no cluster can
run here)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from mpfn.documents import Pool
from mpfn.scaling import ScaleError, ScalerClients, scaler_for
from tests.factories import pool
from tests.servers.k8s_standin import k8s_standin_server
from tests.servers.process import Proc

REGION = "us-east-1"
TOKEN = "k8s-sa-token"


def scaled(base: Pool, **scaling: Any) -> Pool:
    return Pool.model_validate({**base.model_dump(mode="json"), "scaling": scaling})


def sizes(p: Pool, clients: ScalerClients, *steps: int) -> list[int]:
    async def run() -> list[int]:
        scaler = scaler_for(p, clients)
        seen = [await scaler.get()]
        for n in steps:
            await scaler.set(n)
            seen.append(await scaler.get())
        return seen

    return asyncio.run(run())


def ecs(moto: Proc) -> Any:
    return boto3.client(
        "ecs", region_name=REGION, endpoint_url=moto.url,
        aws_access_key_id="k", aws_secret_access_key="s",
    )  # fmt: skip


def clients(**kwargs: Any) -> ScalerClients:
    async def token() -> str:
        return "google-token"

    defaults: dict[str, Any] = {
        "http": httpx.AsyncClient(timeout=10.0),
        "ecs": lambda region, url: boto3.client(
            "ecs", region_name=region, endpoint_url=url,
            aws_access_key_id="k", aws_secret_access_key="s",
        ),
        "google_token": token,
        "k8s_token": lambda: TOKEN,
    }  # fmt: skip
    return ScalerClients(**(defaults | kwargs))


def test_ecs_desired_count_follows(moto_server: Proc) -> None:
    cluster = f"c{uuid.uuid4().hex[:8]}"
    api = ecs(moto_server)
    api.create_cluster(clusterName=cluster)
    api.register_task_definition(
        family=cluster, containerDefinitions=[{"name": "w", "image": "w:1", "memory": 512}]
    )
    api.create_service(cluster=cluster, serviceName="cpu-a", taskDefinition=cluster, desiredCount=1)
    p = scaled(pool("cpu-a"), kind="ecs", region=REGION, cluster=cluster, service="cpu-a",
               api_url=moto_server.url, max_replicas=3)  # fmt: skip
    assert sizes(p, clients(), 0, 3) == [1, 0, 3]
    missing = scaled(p, kind="ecs", region=REGION, cluster=cluster, service="nope",
                     api_url=moto_server.url)  # fmt: skip
    with pytest.raises(ScaleError, match="pool cpu-a: reading the ECS service failed"):
        sizes(missing, clients())


def test_cloud_run_min_instances_follow(gcp_standin: Proc) -> None:
    parent = "projects/mpfn-test-project/locations/us-central1"
    rid = f"pool-{uuid.uuid4().hex[:8]}"
    body = {"template": {"containers": [{"image": "w:1", "ports": [{"containerPort": 8000}]}]}}
    created = httpx.post(f"{gcp_standin.url}/v2/{parent}/services?serviceId={rid}", json=body)
    assert created.status_code == 200, created.text
    p = scaled(pool("eu-1"), kind="cloudrun", service=f"{parent}/services/{rid}",
               api_url=gcp_standin.url, max_replicas=4)  # fmt: skip
    assert sizes(p, clients(), 2, 0) == [0, 2, 0]
    served = httpx.get(f"{gcp_standin.url}/v2/{parent}/services/{rid}").json()
    assert served["template"] == body["template"]  # only the scaling changed


@pytest.fixture(scope="module")
def k8s(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    with k8s_standin_server(tmp_path_factory.mktemp("k8s"), TOKEN, ["mpfn/pool-a"]) as proc:
        for name in ("pool-a", "pool-b"):
            httpx.post(f"{proc.url}/_deployments",
                       json={"namespace": "mpfn", "name": name, "replicas": 1})  # fmt: skip
        yield proc


def test_k8s_scale_subresource_follows_with_the_roles_token(k8s: Proc, tmp_path: Path) -> None:
    p = scaled(pool("pool-a"), kind="k8s", namespace="mpfn", deployment="pool-a",
               api_url=k8s.url, max_replicas=5)  # fmt: skip
    assert sizes(p, clients(), 5, 0) == [1, 5, 0]
    other = scaled(p, kind="k8s", namespace="mpfn", deployment="pool-b", api_url=k8s.url)
    with pytest.raises(ScaleError, match="403 Forbidden"):
        sizes(other, clients(), 3)
    with pytest.raises(ScaleError, match="401 Unauthorized"):
        sizes(p, clients(k8s_token=lambda: "wrong"))


def test_a_pool_without_scaling_has_a_fixed_size() -> None:
    with pytest.raises(ScaleError, match="pool p has no scaling settings"):
        scaler_for(pool("p"), clients())
    with pytest.raises(ValueError, match="scaling kind ecs needs region, cluster, service"):
        scaled(pool("p"), kind="ecs")
