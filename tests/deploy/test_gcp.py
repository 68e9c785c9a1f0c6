"""`mpfn deploy --target gcp` with the real client libraries (REST transport) against a
stand-in of the Cloud Run v2 / Cloud Scheduler v1 / IAM REST APIs, and fake-gcs-server."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mpfn.config import load_config
from mpfn.deploy import (
    Action,
    DeployConfigError,
    Project,
    deploy,
    destroy,
    load_deploy_config,
    plan_deploy,
)
from mpfn.deploy.gcp import GcpTarget
from mpfn.deploy.record import RecordStore
from mpfn.store.gcs import GCSStore
from tests.servers.process import Proc

PROJECT = "mpfn-test-project"
REGION = "us-central1"


def write_project(directory: Path, fake_gcs: Proc, standin: Proc, **gcp: Any) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    raw: dict[str, Any] = {
        "state": f"gs://mpfn-gcp-{tag}/mpfn",
        "gcs": {"endpoint": fake_gcs.url, "project": PROJECT},
        "deploy": {
            "target": "gcp",
            "name": f"g{tag}",
            "router": {"image": "us-docker.pkg.dev/p/mpfn/router:1", "min_instances": 0},
            "warmer": {"image": "us-docker.pkg.dev/p/mpfn/warmer:1", "every_minutes": 5},
            "gcp": {
                "project": PROJECT,
                "region": REGION,
                "endpoints": {
                    "run": standin.url,
                    "scheduler": standin.url,
                    "iam": standin.url,
                    "resourcemanager": standin.url,
                    "storage": fake_gcs.url,
                },
                **gcp,
            },
        },
    }
    (directory / "mpfn.yaml").write_text(yaml.safe_dump(raw))
    return raw


def gcp_target(directory: Path, **kwargs: Any) -> GcpTarget:
    loaded = load_config(cwd=directory)
    config = load_deploy_config(loaded.options, **kwargs)
    return GcpTarget(config, Project(directory, loaded.state, dict(loaded.options)))


def dump(standin: Proc) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"{standin.url}/_dump").json()
    return data


def test_gcp_deploy_noop_update_destroy(
    tmp_path: Path, fake_gcs_server: Proc, gcp_standin: Proc
) -> None:
    raw = write_project(tmp_path, fake_gcs_server, gcp_standin)
    stem = f"{raw['deploy']['name']}-dev"
    bucket = raw["state"].split("/")[2]
    parent = f"projects/{PROJECT}/locations/{REGION}"

    first = deploy(gcp_target(tmp_path), lambda _line: None)
    assert first.applied
    kinds = sorted(c.kind for c in first.plan if c.action is Action.CREATE)
    assert kinds == sorted(
        ["gcp.storage.bucket"]
        + ["gcp.iam.service-account"] * 2
        + ["gcp.iam.grant"] * 3
        + ["gcp.run.service", "gcp.run.job", "gcp.scheduler.job"]
    )
    state = dump(gcp_standin)
    service = state["run"][f"{parent}/services/{stem}-router"]
    container = service["template"]["containers"][0]
    assert container["image"] == "us-docker.pkg.dev/p/mpfn/router:1"
    assert {"name": "MPFN_STATE", "value": raw["state"]} in container["env"]
    assert service["template"]["serviceAccount"] == (
        f"{stem}-router@{PROJECT}.iam.gserviceaccount.com"
    )
    assert first.record.outputs["router_url"] == service["uri"]
    # IAM-only by default: nobody is granted the invoker role on the router.
    router_policy = state["policies"].get(f"{parent}/services/{stem}-router", {})
    assert not router_policy.get("bindings")
    job_policy = state["policies"][f"{parent}/jobs/{stem}-warmer"]
    assert job_policy["bindings"] == [
        {
            "role": "roles/run.invoker",
            "members": [f"serviceAccount:{stem}-warmer@{PROJECT}.iam.gserviceaccount.com"],
        }
    ]
    schedule = state["scheduler"][f"{parent}/jobs/{stem}-warmer-schedule"]
    assert schedule["schedule"] == "*/5 * * * *"
    assert schedule["httpTarget"]["uri"].endswith(f"/jobs/{stem}-warmer:run")
    grants = {
        b["condition"]["title"]: b
        for b in state["policies"][f"projects/{PROJECT}"]["bindings"]
        if b["condition"]["title"].startswith(stem)
    }
    assert grants[f"{stem}-router-read"]["role"] == "roles/storage.objectViewer"
    assert (
        f"buckets/{bucket}/objects/mpfn/"
        in grants[f"{stem}-router-read"]["condition"]["expression"]
    )
    assert grants[f"{stem}-router-usage"]["condition"]["expression"].endswith('mpfn/usage/")')

    records = RecordStore(
        lambda: GCSStore(bucket, "mpfn", endpoint=fake_gcs_server.url, project=PROJECT),
        "gcp",
        "dev",
    )
    record = records.read()
    assert record is not None and record.complete and len(record.resources) == 9

    assert plan_deploy(gcp_target(tmp_path))[0].is_noop

    public = gcp_target(tmp_path, assignments=("gcp.public=true",))
    changed = [c for c in plan_deploy(public)[0] if c.action is not Action.KEEP]
    assert [(c.kind, [f.field for f in c.fields]) for c in changed] == [
        ("gcp.run.service", ["public"])
    ]
    deploy(public, lambda _line: None)
    policy = dump(gcp_standin)["policies"][f"{parent}/services/{stem}-router"]
    assert policy["bindings"] == [{"role": "roles/run.invoker", "members": ["allUsers"]}]
    assert plan_deploy(public)[0].is_noop

    destroy(public, lambda _line: None)
    state = dump(gcp_standin)
    assert not [k for k in state["run"] if stem in k]
    assert not [k for k in state["scheduler"] if stem in k]
    assert not [k for k in state["accounts"] if stem in k]
    assert not [
        b
        for b in state["policies"][f"projects/{PROJECT}"]["bindings"]
        if b["condition"]["title"].startswith(stem)
    ]
    assert gcp_target(tmp_path).api.get_bucket(bucket) is None


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"project": None}, "deploy.gcp.project is required for --target gcp"),
        ({"region": None}, "deploy.gcp.region is required for --target gcp"),
        ({"region": "Central"}, "gcp.region: String should match pattern"),
    ],
)
def test_gcp_config_errors(
    tmp_path: Path, fake_gcs_server: Proc, gcp_standin: Proc, edit: dict[str, Any], message: str
) -> None:
    write_project(tmp_path, fake_gcs_server, gcp_standin, **edit)
    with pytest.raises(DeployConfigError) as error:
        gcp_target(tmp_path)
    assert message in str(error.value)
