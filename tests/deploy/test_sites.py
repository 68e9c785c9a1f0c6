"""`mpfn deploy` of several sites from one mpfn.yaml: AWS (moto server), Google Cloud (the
REST stand-in and fake-gcs-server) and a local site (real `mpfn up` processes).

The AWS site holds the primary state; the Google Cloud and local sites get replicas. The
test plans every site, applies, checks what reached the primary and every replica
(sites, pools with their site, router entries, the demo model), has the local site's
router serve from its replica, redeploys (a no-op), and destroys site by site.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mpfn.config import load_config
from mpfn.deploy import DeployConfig, DeployConfigError, Project, Target, open_target
from mpfn.deploy.aws import AwsTarget
from mpfn.deploy.aws_api import AwsApi, AwsSettings
from mpfn.deploy.packaging import RouterPackage
from mpfn.deploy.siteconfig import load_site_configs
from mpfn.deploy.sites import (
    check_replicas,
    deploy_one,
    deploy_sites,
    destroy_one,
    destroy_sites,
)
from mpfn.entrypoints import read_routers
from mpfn.registry import Registry
from mpfn.replication import read_sites
from mpfn.store import open_store
from tests.deploy.conftest import KEY, REGION, SECRET, AwsProject, aws_target, run_cli
from tests.deploy.test_aws_pools import with_pools
from tests.deploy.test_aws_vpc import network
from tests.servers.process import Proc

GCP_PROJECT = "mpfn-test-project"
GCP_REGION = "us-central1"  # fake-gcs-server keeps every bucket there
DEMO = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 16], "data": [0.5] * 16}]}


ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def write_project(directory: Path, moto: Proc, fake_gcs: Proc, standin: Proc) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    settings = AwsSettings(
        region=REGION, endpoint_url=moto.url, access_key_id=KEY, secret_access_key=SECRET
    )
    subnets, groups = network(AwsApi(settings))
    aws = {
        "region": REGION,
        "endpoint_url": moto.url,
        "access_key_id": KEY,
        "secret_access_key": SECRET,
        "vpc": {"subnet_ids": subnets, "security_group_ids": groups[:1]},
    }
    raw: dict[str, Any] = {
        "state": f"s3://mpfn-east-{tag}/mpfn",  # the primary: the AWS site's own state
        "s3": {"endpoint_url": moto.url, "region": REGION, "access_key_id": KEY,
               "secret_access_key": SECRET},
        "gcs": {"endpoint": fake_gcs.url, "project": GCP_PROJECT},
        "deploy": {
            "name": f"s{tag}",
            "build_dir": str(directory.parent / "mpfn-build"),
            "router": {"image": "europe-docker.pkg.dev/p/mpfn/router:1", "min_instances": 0},
            "sites": {
                "east": {
                    "target": "aws",
                    "aws": aws,
                    "images": {"worker": f"{ECR}/mpfn-worker:1"},
                    "pools": [{"id": "east-cpu", "replicas": 2, "cpu": "1", "memory": "2Gi",
                               "cost_per_hour": 0.05, "capacity": 8, "max_replicas": 3}],
                },
                "eu": {
                    "target": "gcp",
                    "images": {"worker": "europe-docker.pkg.dev/p/mpfn/worker:1"},
                    "pools": [{"id": "eu-l4", "hardware": ["nvidia"], "gpus": 1, "cpu": "4",
                               "memory": "16Gi", "cost_per_hour": 0.8, "capacity": 4,
                               "max_replicas": 2}],
                    "gcp": {
                        "project": GCP_PROJECT,
                        "region": GCP_REGION,
                        "state": f"gs://mpfn-eu-{tag}/mpfn",
                        "endpoints": {key: standin.url for key in
                                      ("run", "scheduler", "iam", "resourcemanager")}
                        | {"storage": fake_gcs.url},
                    },
                },
                "lab": {"target": "local", "local": {"state": "./lab", "port": 0}},
            },
        },
    }  # fmt: skip
    (directory / "mpfn.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return raw


def settings_of(raw: dict[str, Any]) -> AwsSettings:
    aws = raw["deploy"]["sites"]["east"]["aws"]
    return AwsSettings(
        region=REGION,
        endpoint_url=aws["endpoint_url"],
        access_key_id=KEY,
        secret_access_key=SECRET,
    )


def configs(directory: Path, **kwargs: Any) -> tuple[list[DeployConfig], Project]:
    loaded = load_config(cwd=directory)
    project = Project(directory, loaded.state, dict(loaded.options))
    return load_site_configs(loaded.options, directory, **kwargs), project


def opener(package: RouterPackage) -> Any:
    def open_one(config: DeployConfig, project: Project) -> Target:
        if config.target == "aws":
            return AwsTarget(config, project, build=lambda _dir: package)
        return open_target(config, project)

    return open_one


def wait_for_demo(url: str, timeout_s: float = 60.0) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        answer = httpx.post(f"{url}/v2/models/demo/infer", json=DEMO, timeout=30)
        if answer.status_code == 200 or time.monotonic() > deadline:
            return answer
        time.sleep(0.5)


def test_three_clouds_plan_apply_noop_and_destroy(
    tmp_path: Path,
    moto_server: Proc,
    fake_gcs_server: Proc,
    gcp_standin: Proc,
    router_package: RouterPackage,
) -> None:
    raw = write_project(tmp_path, moto_server, fake_gcs_server, gcp_standin)
    sites, project = configs(tmp_path)
    assert [c.site for c in sites] == ["east", "eu", "lab"]
    assert sites[0].prefix().endswith("-dev-east")
    assert all(c.router.env["MPFN_ROUTER_SITE"] == c.site for c in sites)
    lines: list[str] = []
    open_one = opener(router_package)

    # dry run: every site's plan, nothing created
    dry = deploy_sites(sites, project, lines.append, dry_run=True, opener=open_one)
    assert [o.site for o in dry] == ["east", "eu", "lab"]
    assert all(not o.resources.plan.is_noop for o in dry)
    assert any("== site eu (gcp) ==" in line for line in lines)
    assert not (tmp_path / "lab").exists() or not (tmp_path / "lab" / "up.json").exists()

    try:
        applied = deploy_sites(sites, project, lines.append, opener=open_one)
        outputs = {o.site: {**o.resources.record.outputs, **o.registry.record.outputs}
                   for o in applied}  # fmt: skip
        assert all("router_url" in out for out in outputs.values()), outputs

        primary = open_store(project.state, project.options)
        listed = read_sites(primary)
        assert listed is not None and sorted(listed.sites) == ["eu", "lab"]  # east is primary
        assert listed.sites["eu"].options == {
            "gcs": {"project": GCP_PROJECT, "endpoint": fake_gcs_server.url}
        }
        routers = {entry.site: entry for entry in read_routers(primary)}
        assert sorted(routers) == ["east", "eu", "lab"]
        assert (routers["east"].auth, routers["east"].region) == ("sigv4", REGION)
        assert routers["eu"].auth == "google-id-token"
        assert routers["lab"].auth == "none"
        pools = {p.id: p for p in Registry(primary).pools()}
        assert sorted(pools) == ["east-cpu", "eu-l4", "lab-1", "lab-2"]
        east, eu = pools["east-cpu"], pools["eu-l4"]
        assert (east.site, east.cloud, east.region) == ("east", "aws", REGION)
        assert str(east.endpoint) == f"http://east-cpu.{sites[0].prefix()}.mpfn.internal:8000/"
        assert (east.hardware, east.cost_per_hour, east.capacity) == (["cpu"], 0.05, 8)
        assert (eu.site, eu.cloud, eu.hardware, eu.capacity) == ("eu", "gcp", ["nvidia"], 4)
        assert eu.auth is not None and eu.auth.type == "google-id-token"
        assert str(eu.endpoint).startswith("https://")
        assert eu.auth.audience == str(eu.endpoint).rstrip("/")
        assert {pools["lab-1"].site, pools["lab-2"].site} == {"lab"}
        ecs = AwsApi(settings_of(raw)).call(
            "ecs", "describe_services", cluster=sites[0].prefix(), services=["east-cpu"]
        )
        assert [s["desiredCount"] for s in ecs["services"]] == [2]
        # a scaled pool: sized through its ECS service, the router may wake it
        assert east.scaling is not None and east.scaling.kind == "ecs"
        assert (east.scaling.cluster, east.scaling.service) == (sites[0].prefix(), "east-cpu")
        assert (east.scaling.min_replicas, east.scaling.max_replicas) == (0, 3)
        role = AwsApi(settings_of(raw)).get_role_policy(f"{sites[0].prefix()}-router-role", "mpfn")
        assert role is not None
        wake = next(st for st in role["Statement"] if st.get("Sid") == "WakePools")
        assert wake["Resource"] == [
            f"arn:aws:ecs:{REGION}:123456789012:service/{sites[0].prefix()}/east-cpu"
        ]
        assert eu.scaling is not None and (eu.scaling.kind, eu.scaling.wake) == ("cloudrun", False)
        AwsApi(settings_of(raw)).call(  # the warmer scaled it to zero meanwhile
            "ecs", "update_service", cluster=sites[0].prefix(), service="east-cpu", desiredCount=0
        )
        # every replica holds what the primary holds: models, pools, router entries
        for name in ("eu", "lab"):
            replica = open_store(
                listed.sites[name].state, {**project.options, **listed.sites[name].options}
            )
            assert "1" in Registry(replica).versions("demo"), name
            assert sorted(p.id for p in Registry(replica).pools()) == sorted(pools), name
            assert sorted(e.site for e in read_routers(replica)) == ["east", "eu", "lab"]

        # the local site's router reads its replica and serves
        answer = wait_for_demo(outputs["lab"]["router_url"])
        assert answer.status_code == 200, answer.text

        # a redeploy changes nothing anywhere
        again = deploy_sites(*configs(tmp_path), lines.append, opener=open_one)
        for outcome in again:
            assert outcome.resources.plan.is_noop, outcome.resources.plan.as_dict()
            assert outcome.registry.plan.is_noop, outcome.registry.plan.as_dict()
    finally:
        # one site alone, then the rest
        only_eu, _ = configs(tmp_path, only="eu")
        destroy_sites(only_eu, project, lines.append, opener=open_one)
        after = read_sites(open_store(project.state, project.options))
        assert after is not None and sorted(after.sites) == ["lab"]
        destroy_sites(*configs(tmp_path), lines.append, opener=open_one)

    primary = open_store(project.state, project.options)
    assert read_routers(primary) == []
    assert AwsApi(settings_of(raw)).get_cluster(sites[0].prefix()) is None
    assert Registry(primary).pools() == []
    assert not (read_sites(primary) or None) or read_sites(primary).sites == {}  # type: ignore[union-attr]
    assert raw["deploy"]["sites"]["lab"]["local"]["state"] == "./lab"


def test_site_config_errors(tmp_path: Path) -> None:
    def load(deploy: dict[str, Any], **kwargs: Any) -> list[DeployConfig]:
        return load_site_configs({"deploy": deploy}, tmp_path, **kwargs)

    with pytest.raises(DeployConfigError, match=r"sites\.a: no target"):
        load({"sites": {"a": {}}})
    with pytest.raises(DeployConfigError, match="'A B' is not a site name"):
        load({"sites": {"A B": {"target": "local"}}})
    with pytest.raises(DeployConfigError, match="list each pool under its site"):
        load({"pools": [{"id": "p"}], "sites": {"a": {"target": "local"}}})
    pool = {"id": "p", "image": "w:1"}
    with pytest.raises(DeployConfigError, match="pool p is in sites a and b"):
        load({"sites": {"a": {"target": "k8s", "pools": [pool]},
                        "b": {"target": "k8s", "pools": [pool]}}})  # fmt: skip
    with pytest.raises(DeployConfigError, match=r"--site c: no such site"):
        load({"sites": {"a": {"target": "local"}}}, only="c")
    with pytest.raises(DeployConfigError, match=r"deploy.sites.a: invalid: local.port"):
        load({"sites": {"a": {"target": "local", "local": {"port": -1}}}})
    both = load({"sites": {"a": {"target": "local"}, "b": {"target": "local"}}})
    with pytest.raises(DeployConfigError, match="sites a and b both use the primary"):
        check_replicas(both, f"file://{tmp_path}/primary")
    # the stage and --set apply to every site; a site's own settings win
    tuned = load(
        {"router": {"memory_mb": 256}, "stages": {"prod": {"router": {"memory_mb": 1024}}},
         "sites": {"a": {"target": "local"}, "b": {"target": "local",
                                                   "router": {"memory_mb": 2048}}}},
        stage="prod",
        assignments=("sites.a.local.port=9001",),
    )  # fmt: skip
    assert [c.router.memory_mb for c in tuned] == [1024, 2048]
    assert tuned[0].local.port == 9001
    assert tuned[0].record_stage() == "prod@a"


def test_cli_with_sites_refuses_target_and_shows_every_plan(tmp_path: Path) -> None:
    (tmp_path / "mpfn.yaml").write_text(
        yaml.safe_dump(
            {
                "state": "./primary",
                "deploy": {"sites": {"a": {"target": "local", "local": {"state": "./a"}},
                                     "b": {"target": "local", "local": {"state": "./b"}}}},
            }
        )
    )  # fmt: skip
    refused = run_cli(tmp_path, "deploy", "--target", "aws")
    assert refused.returncode == 1
    assert "--target and --region do not apply" in refused.stderr
    assert "Traceback" not in refused.stderr
    dry = run_cli(tmp_path, "deploy", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "== site a (local) ==" in dry.stdout and "== site b (local) ==" in dry.stdout
    assert "+ create site a" in dry.stdout
    one = run_cli(tmp_path, "deploy", "--dry-run", "--site", "b")
    assert "site a" not in one.stdout and "== site b (local) ==" in one.stdout
    unknown = run_cli(tmp_path, "deploy", "--dry-run", "--site", "c")
    assert unknown.returncode == 1 and "no such site" in unknown.stderr
    status = run_cli(tmp_path, "deploy", "status", "--json")
    assert status.returncode == 0, status.stderr
    assert [(s["site"], s["deployed"]) for s in json.loads(status.stdout)] == [
        ("a", False),
        ("b", False),
    ]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_cloud_deployment_without_sites_registers_its_pools_and_router(
    aws_project: AwsProject, router_package: RouterPackage
) -> None:
    with_pools(aws_project, [{"id": "cpu-a", "cost_per_hour": 0.1, "capacity": 6}])
    lines: list[str] = []
    tgt = aws_target(aws_project, router_package)
    _, entries = deploy_one(tgt, lines.append, dry_run=True)
    assert entries is not None and entries.plan.is_noop is False
    try:
        _, entries = deploy_one(aws_target(aws_project, router_package), lines.append)
        assert entries is not None and "router_url" in entries.record.outputs
        state = open_store(tgt.state_url, aws_project.config()[1].options)
        [router] = read_routers(state)
        assert (router.site, router.auth, router.region) == ("default", "sigv4", REGION)
        [pool] = Registry(state).pools()
        assert (pool.id, pool.site, pool.cost_per_hour, pool.capacity) == ("cpu-a", None, 0.1, 6)
        _, again = deploy_one(aws_target(aws_project, router_package), lines.append)
        assert again is not None and again.plan.is_noop
    finally:
        destroy_one(aws_target(aws_project, router_package), lines.append)
    assert aws_project.api().bucket_region(aws_project.bucket) is None  # nothing left behind
