"""`deploy.gcp.vpc` through the client libraries against the GCP stand-in: the router
service and the warmer job carry `vpcAccess` (Direct VPC egress or a connector), an
unchanged section redeploys as a no-op, a changed one updates both, a removed one clears it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mpfn.deploy import Action, DeployConfigError, deploy, destroy, load_deploy_config, plan_deploy
from mpfn.deploy.gcp import GcpTarget
from tests.deploy.test_gcp import PROJECT, REGION, dump, gcp_target, write_project
from tests.servers.process import Proc

PARENT = f"projects/{PROJECT}/locations/{REGION}"
SUBNET = f"projects/{PROJECT}/regions/{REGION}/subnetworks/pools"


def vpc_access(standin: Proc, stem: str) -> tuple[Any, Any]:
    """(the router service's, the warmer job's) `vpcAccess` as the stand-in holds them."""
    run = dump(standin)["run"]
    service = run[f"{PARENT}/services/{stem}-router"]["template"]
    job = run[f"{PARENT}/jobs/{stem}-warmer"]["template"]["template"]
    return service.get("vpcAccess"), job.get("vpcAccess")


def changed(target: GcpTarget) -> list[tuple[str, list[str]]]:
    plan, _ = plan_deploy(target)
    return sorted(
        (c.kind, [f.field for f in c.fields]) for c in plan if c.action is not Action.KEEP
    )


def test_service_and_job_carry_vpc_access(
    tmp_path: Path, fake_gcs_server: Proc, gcp_standin: Proc
) -> None:
    vpc = {"network": "pools-net", "subnetwork": SUBNET, "egress": "all-traffic"}
    raw = write_project(tmp_path, fake_gcs_server, gcp_standin, vpc=vpc)
    stem = f"{raw['deploy']['name']}-dev"

    first = deploy(gcp_target(tmp_path), lambda _line: None)
    assert first.applied
    for access in vpc_access(gcp_standin, stem):
        assert access is not None
        assert access["networkInterfaces"][0]["network"] == "pools-net"
        assert access["networkInterfaces"][0]["subnetwork"] == SUBNET
        assert access["egress"] in ("ALL_TRAFFIC", 1)  # the enum by name or number
        assert not access.get("connector")
    assert plan_deploy(gcp_target(tmp_path))[0].is_noop

    # A connector instead (short name): both templates are updated, then nothing is left.
    connector = gcp_target(
        tmp_path,
        assignments=(
            "gcp.vpc=null",  # --set merges mappings: drop network and subnetwork first
            "gcp.vpc={connector: pools-connector}",
        ),
    )
    assert changed(connector) == [("gcp.run.job", ["vpc"]), ("gcp.run.service", ["vpc"])]
    deploy(connector, lambda _line: None)
    path = f"{PARENT}/connectors/pools-connector"
    for access in vpc_access(gcp_standin, stem):
        assert access["connector"] == path
        assert access["egress"] in ("PRIVATE_RANGES_ONLY", 2)
        assert not access.get("networkInterfaces")
    assert plan_deploy(connector)[0].is_noop

    # The section removed: no VPC access left on either.
    removed = gcp_target(tmp_path, assignments=("gcp.vpc=null",))
    assert changed(removed) == [("gcp.run.job", ["vpc"]), ("gcp.run.service", ["vpc"])]
    deploy(removed, lambda _line: None)
    assert vpc_access(gcp_standin, stem) == (None, None)
    assert plan_deploy(removed)[0].is_noop
    destroy(removed, lambda _line: None)


@pytest.mark.parametrize(
    ("vpc", "message"),
    [
        ({"egress": "all-traffic"}, "set exactly one of network (Direct VPC egress) and connector"),
        ({"network": "n", "connector": "c"}, "set exactly one of network"),
        ({"connector": "c", "subnetwork": "s"}, "subnetwork applies to Direct VPC egress"),
        ({"network": "n", "egress": "some"}, "gcp.vpc.egress: Input should be"),
    ],
)
def test_gcp_vpc_config_errors(vpc: dict[str, Any], message: str) -> None:
    with pytest.raises(DeployConfigError) as error:
        load_deploy_config({"deploy": {"target": "gcp", "gcp": {"vpc": vpc}}})
    assert message in str(error.value)
