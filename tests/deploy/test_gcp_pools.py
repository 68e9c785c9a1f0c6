"""`deploy.pools` on the gcp target: one Cloud Run service per pool, through the client
libraries against the GCP stand-in (tests/servers/gcp_standin.py) and fake-gcs-server.

Plan, create (containers, GPU, scaling, invokers, internal ingress, VPC egress), no-op
redeploy, update, removal, destroy, one-line config errors, and the placements deploy
registers before and after the services exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mpfn.deploy import Action, DeployConfigError, deploy, destroy, plan_deploy
from mpfn.deploy.gcp import GcpTarget
from mpfn.deploy.gcp_resources import RunPoolService
from mpfn.deploy.placement import pool_document
from tests.deploy.test_gcp import PROJECT, REGION, dump, gcp_target, write_project
from tests.servers.process import Proc

PARENT = f"projects/{PROJECT}/locations/{REGION}"
WORKER = "us-docker.pkg.dev/p/mpfn/worker:1"
ADAPTER = "us-docker.pkg.dev/p/mpfn/adapter-tfserving:1"
TFSERVING = "tensorflow/serving:2.16.1-gpu"
TRITON = "nvcr.io/nvidia/tritonserver:24.08-py3"
SUBNET = f"projects/{PROJECT}/regions/{REGION}/subnetworks/pools"
INVOKER = "roles/run.invoker"
INTERNAL = ("INGRESS_TRAFFIC_INTERNAL_ONLY", 2)  # the enum by name or number

POOLS: list[dict[str, Any]] = [
    {"id": "cpu", "replicas": 1, "args": ["--threads", "2"]},
    {
        "id": "gpu",
        "adapter": "tfserving",
        "image": TFSERVING,
        "hardware": ["nvidia"],
        "gpus": 1,
        "cpu": "4",
        "memory": "16Gi",
        "replicas": 0,
    },
    {"id": "triton", "adapter": "triton", "image": TRITON, "memory": "4096Mi", "port": 8001},
]


def write_pools(
    directory: Path,
    fake_gcs: Proc,
    standin: Proc,
    pools: list[dict[str, Any]],
    images: dict[str, Any] | None = None,
    **gcp: Any,
) -> dict[str, Any]:
    raw = write_project(directory, fake_gcs, standin, **gcp)
    raw["deploy"]["pools"] = pools
    raw["deploy"]["images"] = (
        images if images is not None else {"worker": WORKER, "adapters": {"tfserving": ADAPTER}}
    )
    (directory / "mpfn.yaml").write_text(yaml.safe_dump(raw))
    return raw


def rewrite(directory: Path, raw: dict[str, Any]) -> None:
    (directory / "mpfn.yaml").write_text(yaml.safe_dump(raw))


def services(standin: Proc, stem: str) -> dict[str, Any]:
    """Pool id -> the stand-in's service."""
    run = dump(standin)["run"]
    prefix = f"{PARENT}/services/{stem}-pool-"
    return {k.removeprefix(prefix): v for k, v in run.items() if k.startswith(prefix)}


def account(stem: str, role: str) -> str:
    return f"{stem}-{role}@{PROJECT}.iam.gserviceaccount.com"


def changes(target: GcpTarget) -> list[tuple[str, str, str, list[str]]]:
    plan, _ = plan_deploy(target)
    return sorted(
        (c.action.value, c.kind, c.name, [f.field for f in c.fields])
        for c in plan
        if c.action is not Action.KEEP
    )


def test_pool_services_lifecycle(tmp_path: Path, fake_gcs_server: Proc, gcp_standin: Proc) -> None:
    vpc = {"network": "pools-net", "subnetwork": SUBNET, "egress": "all-traffic"}
    raw = write_pools(tmp_path, fake_gcs_server, gcp_standin, [dict(p) for p in POOLS], vpc=vpc)
    stem = f"{raw['deploy']['name']}-dev"
    state = raw["state"]

    # Plan (a dry run): the pools' account, its read grant and one service per pool.
    target = gcp_target(tmp_path)
    dry = deploy(target, lambda _line: None, dry_run=True)
    created = sorted((c.kind, c.name) for c in dry.plan if c.action is Action.CREATE)
    assert [n for k, n in created if k == "gcp.run.pool"] == [
        f"{stem}-pool-cpu",
        f"{stem}-pool-gpu",
        f"{stem}-pool-triton",
    ]
    assert ("gcp.iam.service-account", f"{stem}-pools") in created
    assert ("gcp.iam.grant", f"{stem}-pools-read") in created
    assert not services(gcp_standin, stem)
    before = target.placements()
    assert [p.pool.id for p in before] == ["cpu", "gpu", "triton"]
    assert all(p.endpoint is None and p.cloud == "gcp" and p.region == REGION for p in before)
    assert all(p.auth == {"type": "google-id-token"} for p in before)
    assert all(pool_document(p, None) is None for p in before)
    assert not any("internal traffic only" in note for note in target.notes())

    first = deploy(gcp_target(tmp_path), lambda _line: None)
    assert first.applied
    found = services(gcp_standin, stem)
    assert sorted(found) == ["cpu", "gpu", "triton"]
    router = dump(gcp_standin)["run"][f"{PARENT}/services/{stem}-router"]

    cpu = found["cpu"]["template"]
    assert found["cpu"]["ingress"] in INTERNAL
    assert cpu["serviceAccount"] == account(stem, "pools")
    assert cpu["scaling"] == {"minInstanceCount": 1, "maxInstanceCount": 1}
    assert cpu["vpcAccess"] == router["template"]["vpcAccess"]
    assert "nodeSelector" not in cpu
    [worker] = cpu["containers"]
    assert worker["image"] == WORKER
    assert worker["ports"] == [{"name": "http1", "containerPort": 8000}]
    assert worker["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}
    assert worker["args"] == [
        *("--host", "0.0.0.0", "--port", "8000"),
        *("--state", state, "--cache-dir", "/var/cache/mpfn"),
        *("--threads", "2"),
    ]
    assert {"name": "MPFN_POOL_ID", "value": "cpu"} in worker["env"]

    gpu = found["gpu"]["template"]
    assert gpu["nodeSelector"] == {"accelerator": "nvidia-l4"}
    assert gpu["gpuZonalRedundancyDisabled"] is True
    assert gpu["scaling"] == {"maxInstanceCount": 1}  # min 0: the default, not sent
    adapter, backend = gpu["containers"]
    assert (adapter["name"], adapter["image"]) == ("adapter", ADAPTER)
    assert adapter["ports"] == [{"name": "http1", "containerPort": 8000}]
    assert adapter["dependsOn"] == ["backend"]
    assert adapter["args"][4:6] == ["--backend", "http://127.0.0.1:8501"]
    assert (backend["name"], backend["image"]) == ("backend", TFSERVING)
    assert "ports" not in backend
    assert backend["resources"]["limits"] == {
        "cpu": "4",
        "memory": "16Gi",
        "nvidia.com/gpu": "1",
    }
    assert backend["startupProbe"]["tcpSocket"] == {"port": 8501}
    assert {m["mountPath"] for c in (adapter, backend) for m in c["volumeMounts"]} == {
        "/var/cache/mpfn"
    }

    [triton] = found["triton"]["template"]["containers"]
    assert triton["image"] == TRITON
    assert triton["ports"] == [{"name": "http1", "containerPort": 8001}]
    assert triton["resources"]["limits"] == {"cpu": "1", "memory": "4Gi"}

    # Only the router's and the warmer's accounts may invoke a pool.
    policies = dump(gcp_standin)["policies"]
    members = sorted(["serviceAccount:" + account(stem, r) for r in ("router", "warmer")])
    for pool in found:
        bindings = policies[f"{PARENT}/services/{stem}-pool-{pool}"]["bindings"]
        assert bindings == [{"role": INVOKER, "members": members}]
    grants = {b["condition"]["title"]: b for b in policies[f"projects/{PROJECT}"]["bindings"]}
    assert grants[f"{stem}-pools-read"]["role"] == "roles/storage.objectViewer"
    assert grants[f"{stem}-pools-read"]["members"] == ["serviceAccount:" + account(stem, "pools")]

    # Placements: each service's URL, with a Google ID token for it.
    after = {p.pool.id: p for p in gcp_target(tmp_path).placements()}
    for pool, placement in after.items():
        uri = found[pool]["uri"]
        assert placement.endpoint == uri
        assert placement.auth == {"type": "google-id-token", "audience": uri}
        doc = pool_document(placement, None)
        assert doc is not None and doc.cloud == "gcp" and doc.region == REGION
    gpu_doc = pool_document(after["gpu"], None)
    assert gpu_doc is not None and gpu_doc.adapter_server and gpu_doc.hardware == ["nvidia"]

    assert plan_deploy(gcp_target(tmp_path))[0].is_noop

    # A new image and more replicas update the service in place; nothing else changes.
    raw["deploy"]["pools"][0] |= {"image": f"{WORKER}-b", "replicas": 2}
    rewrite(tmp_path, raw)
    assert changes(gcp_target(tmp_path)) == [
        (
            "update",
            "gcp.run.pool",
            f"{stem}-pool-cpu",
            ["image", "min_instances", "max_instances"],
        )
    ]
    uri = found["cpu"]["uri"]
    deploy(gcp_target(tmp_path), lambda _line: None)
    cpu_now = services(gcp_standin, stem)["cpu"]
    assert cpu_now["template"]["containers"][0]["image"] == f"{WORKER}-b"
    assert cpu_now["template"]["scaling"] == {"minInstanceCount": 2, "maxInstanceCount": 2}
    assert cpu_now["uri"] == uri
    assert plan_deploy(gcp_target(tmp_path))[0].is_noop

    # A service changed behind deploy's back (made public) is put back.
    target = gcp_target(tmp_path)
    target._set_invokers(target.api.services, f"{PARENT}/services/{stem}-pool-cpu", ["allUsers"])
    assert changes(gcp_target(tmp_path)) == [
        ("update", "gcp.run.pool", f"{stem}-pool-cpu", ["invokers"])
    ]
    deploy(gcp_target(tmp_path), lambda _line: None)
    bindings = dump(gcp_standin)["policies"][f"{PARENT}/services/{stem}-pool-cpu"]["bindings"]
    assert bindings == [{"role": INVOKER, "members": members}]

    # A removed pool's service is deleted.
    raw["deploy"]["pools"] = raw["deploy"]["pools"][:2]
    rewrite(tmp_path, raw)
    assert changes(gcp_target(tmp_path)) == [("delete", "gcp.run.pool", f"{stem}-pool-triton", [])]
    deploy(gcp_target(tmp_path), lambda _line: None)
    assert sorted(services(gcp_standin, stem)) == ["cpu", "gpu"]
    assert plan_deploy(gcp_target(tmp_path))[0].is_noop

    destroy(gcp_target(tmp_path), lambda _line: None)
    left = dump(gcp_standin)
    assert not services(gcp_standin, stem)
    assert not [k for k in left["accounts"] if stem in k]
    assert not [k for k in left["policies"] if f"{stem}-pool-" in k]


def test_pools_without_warmer_or_vpc(
    tmp_path: Path, fake_gcs_server: Proc, gcp_standin: Proc
) -> None:
    """Without a warmer only the router invokes a pool; without all-traffic egress a note
    says the router cannot reach internal services."""
    raw = write_pools(tmp_path, fake_gcs_server, gcp_standin, [{"id": "cpu"}])
    raw["deploy"]["warmer"] = {"image": None}
    rewrite(tmp_path, raw)
    stem = f"{raw['deploy']['name']}-dev"
    target = gcp_target(tmp_path)
    assert any("internal traffic only" in note for note in target.notes())
    deploy(target, lambda _line: None)
    bindings = dump(gcp_standin)["policies"][f"{PARENT}/services/{stem}-pool-cpu"]["bindings"]
    assert bindings == [{"role": INVOKER, "members": ["serviceAccount:" + account(stem, "router")]}]
    [service] = services(gcp_standin, stem).values()
    assert service["template"]["scaling"] == {"minInstanceCount": 1, "maxInstanceCount": 1}
    assert "vpcAccess" not in service["template"]
    assert plan_deploy(gcp_target(tmp_path))[0].is_noop
    destroy(gcp_target(tmp_path), lambda _line: None)
    assert not services(gcp_standin, stem)


def test_gpu_type_setting(tmp_path: Path, fake_gcs_server: Proc, gcp_standin: Proc) -> None:
    write_pools(tmp_path, fake_gcs_server, gcp_standin, [POOLS[1]], gpu_type="nvidia-rtx-pro-6000")
    [pool] = [r for r in gcp_target(tmp_path).desired() if isinstance(r, RunPoolService)]
    assert (pool.accelerator, pool.gpus, pool.cpu, pool.memory) == (
        "nvidia-rtx-pro-6000",
        1,
        "4",
        "16Gi",
    )


GPU = {"hardware": ["nvidia"], "gpus": 1, "cpu": "4", "memory": "16Gi"}


@pytest.mark.parametrize(
    ("pool", "images", "message"),
    [
        ({"hardware": ["amd"]}, None, "pool p: Cloud Run cannot give hardware amd"),
        ({"hardware": ["tpu"]}, None, "pool p: Cloud Run cannot give hardware tpu"),
        ({"hardware": ["inferentia"]}, None, "pool p: Cloud Run cannot give hardware inferentia"),
        ({**GPU, "gpus": 2}, None, "pool p: gpus 2: a Cloud Run instance has at most one GPU"),
        ({"hardware": ["nvidia"]}, None, "pool p: a GPU pool on Cloud Run lists hardware nvidia"),
        ({"gpus": 1}, None, "pool p: a GPU pool on Cloud Run lists hardware nvidia and sets"),
        ({**GPU, "cpu": "2", "memory": "8Gi"}, None, "needs at least 4 CPUs and 16Gi"),
        ({**GPU, "memory": "8Gi"}, None, "pool p: cpu 4, memory 8Gi: a GPU instance"),
        ({"cpu": "3"}, None, "pool p: cpu '3': a Cloud Run pool gets 1, 2, 4, 6 or 8 CPUs"),
        ({"cpu": "500m"}, None, "pool p: cpu '500m'"),
        ({"memory": "8Gi"}, None, "Cloud Run gives 1 CPU(s) between 512Mi and 4Gi"),
        ({"memory": "lots"}, None, "pool p: memory 'lots' is not a quantity"),
        (
            {"cpu": "8", "memory": "32Gi", "adapter": "tfserving", "image": TFSERVING},
            None,
            "with the adapter server",
        ),
        ({"id": "p" * 32}, None, "Cloud Run service name"),
        ({}, {}, "deploy.images.worker is required for --target gcp"),
        (
            {"adapter": "tfserving", "image": TFSERVING},
            {"worker": WORKER},
            "deploy.images.adapters.tfserving is required for --target gcp",
        ),
        ({"adapter": "triton"}, None, "deploy.pools.p.image is required for --target gcp"),
        ({"token_secret": "tokens"}, None, "pool p: tls_secret, client_certs and token_secret"),
    ],
)
def test_pool_config_errors(
    tmp_path: Path,
    fake_gcs_server: Proc,
    gcp_standin: Proc,
    pool: dict[str, Any],
    images: dict[str, Any] | None,
    message: str,
) -> None:
    write_pools(tmp_path, fake_gcs_server, gcp_standin, [{"id": "p", **pool}], images)
    with pytest.raises(DeployConfigError) as error:
        gcp_target(tmp_path)
    assert message in str(error.value)
    assert "\n" not in str(error.value)
