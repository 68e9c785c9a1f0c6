"""`deploy.aws.vpc` against a moto server: the router and warmer Lambdas attach to subnets
and security groups made through moto's EC2 API, their roles may manage the network
interfaces, an unchanged section is a no-op, a changed one an update, a removed one
detaches; and the warmer's ImageConfig is compared like any other setting."""

from __future__ import annotations

from typing import Any

import pytest

from mpfn.deploy import Action, DeployConfigError, deploy, destroy, load_deploy_config, plan_deploy
from mpfn.deploy.aws import AwsTarget
from mpfn.deploy.aws_api import AwsApi, AwsError, AwsSettings
from mpfn.deploy.packaging import RouterPackage
from tests.deploy.conftest import AwsProject, aws_target, run_cli
from tests.deploy.test_router_package_platforms import RecordingApi

VPC_SIDS = {"CreateVpcInterfaces", "ManageVpcInterfaces", "DescribeVpcInterfaces"}


def network(api: AwsApi) -> tuple[list[str], list[str]]:
    """Two subnets and two security groups in a new moto VPC."""
    vpc = api.call("ec2", "create_vpc", CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        api.call("ec2", "create_subnet", VpcId=vpc, CidrBlock=f"10.0.{i}.0/24")["Subnet"][
            "SubnetId"
        ]
        for i in (1, 2)
    ]
    groups = [
        api.call("ec2", "create_security_group", VpcId=vpc, GroupName=f"mpfn-{i}", Description="t")[
            "GroupId"
        ]
        for i in (1, 2)
    ]
    return subnets, groups


def attached(api: AwsApi, function: str) -> tuple[list[str], list[str]]:
    config = api.call("lambda", "get_function_configuration", FunctionName=function)
    vpc = config.get("VpcConfig") or {}
    return sorted(vpc.get("SubnetIds") or []), sorted(vpc.get("SecurityGroupIds") or [])


def vpc_statements(api: AwsApi, role: str) -> dict[str, dict[str, Any]]:
    policy = api.get_role_policy(role, "mpfn")
    assert policy is not None
    return {s["Sid"]: s for s in policy["Statement"] if s["Sid"] in VPC_SIDS}


def changes(target: AwsTarget) -> list[tuple[str, str, list[str]]]:
    plan, _ = plan_deploy(target)
    return sorted(
        (c.kind, c.name, [f.field for f in c.fields]) for c in plan if c.action is not Action.KEEP
    )


def test_functions_attach_update_and_detach(
    aws_project: AwsProject, router_package: RouterPackage
) -> None:
    api = aws_project.api()
    stem = aws_project.stem
    functions = (f"{stem}-router", f"{stem}-warmer")
    roles = (f"{stem}-router-role", f"{stem}-warmer-role")
    subnets, groups = network(api)
    aws_project.raw["deploy"]["aws"]["vpc"] = {
        "subnet_ids": subnets,
        "security_group_ids": groups[:1],
    }
    aws_project.write()

    first = deploy(aws_target(aws_project, router_package), lambda _line: None)
    assert first.applied
    for function in functions:
        assert attached(api, function) == (sorted(subnets), groups[:1])
    account = api.account
    for role in roles:
        statements = vpc_statements(api, role)
        assert set(statements) == VPC_SIDS
        interfaces = f"arn:aws:ec2:us-east-1:{account}:network-interface/*"
        assert sorted(statements["CreateVpcInterfaces"]["Resource"]) == sorted(
            [interfaces]
            + [f"arn:aws:ec2:us-east-1:{account}:subnet/{s}" for s in subnets]
            + [f"arn:aws:ec2:us-east-1:{account}:security-group/{groups[0]}"]
        )
        assert statements["ManageVpcInterfaces"]["Resource"] == interfaces
        assert statements["ManageVpcInterfaces"]["Action"] == [
            "ec2:DeleteNetworkInterface",
            "ec2:AssignPrivateIpAddresses",
            "ec2:UnassignPrivateIpAddresses",
        ]
        assert statements["DescribeVpcInterfaces"]["Action"] == [
            "ec2:DescribeNetworkInterfaces",
            "ec2:DescribeSubnets",
        ]

    # Unchanged (the ids listed in another order): nothing to do.
    aws_project.raw["deploy"]["aws"]["vpc"]["subnet_ids"] = subnets[::-1]
    aws_project.write()
    assert plan_deploy(aws_target(aws_project, router_package))[0].is_noop

    # Another security group: both functions and both roles are updated, nothing else.
    other = aws_target(
        aws_project, router_package, assignments=(f"aws.vpc.security_group_ids=[{groups[1]}]",)
    )
    assert changes(other) == sorted(
        [("aws.iam.role", role, ["policy"]) for role in roles]
        + [("aws.lambda.zip", functions[0], ["security_group_ids"])]
        + [("aws.lambda.image", functions[1], ["security_group_ids"])]
    )
    deploy(other, lambda _line: None)
    for function in functions:
        assert attached(api, function) == (sorted(subnets), groups[1:])
    assert plan_deploy(other)[0].is_noop

    # The section removed: the functions leave the VPC, the roles lose the statements.
    detached = aws_target(aws_project, router_package, assignments=("aws.vpc=null",))
    assert sorted(c[1] for c in changes(detached)) == sorted([*roles, *functions])
    deploy(detached, lambda _line: None)
    for function in functions:
        assert attached(api, function) == ([], [])
    for role in roles:
        assert vpc_statements(api, role) == {}
    assert plan_deploy(detached)[0].is_noop

    destroy(detached, lambda _line: None)
    assert api.get_function(functions[0]) is None


def test_a_drifted_warmer_image_config_is_one_update(
    aws_project: AwsProject, router_package: RouterPackage
) -> None:
    api = aws_project.api()
    warmer = f"{aws_project.stem}-warmer"
    deploy(aws_target(aws_project, router_package), lambda _line: None)

    # The function replaced out of band by one running the image's own entry point.
    found = api.get_function(warmer)
    assert found is not None
    config = found["Configuration"]
    api.delete_function(warmer)
    api.create_function(
        FunctionName=warmer,
        PackageType="Image",
        Code={"ImageUri": found["Code"]["ImageUri"]},
        Role=config["Role"],
        MemorySize=config["MemorySize"],
        Timeout=config["Timeout"],
        Environment=config["Environment"],
    )

    settings, project = aws_project.config()
    calls = RecordingApi(api.settings)
    target = AwsTarget(settings, project, api=calls, build=lambda _d: router_package)
    assert changes(target) == [("aws.lambda.image", warmer, ["entry_point", "command"])]
    deploy(target, lambda _line: None)
    # moto ignores ImageConfig on UpdateFunctionConfiguration; the request says what was asked.
    [update] = [kw for op, kw in calls.calls if op == "update_function_configuration"]
    assert update["FunctionName"] == warmer
    assert update["ImageConfig"] == {
        "EntryPoint": ["python3", "-m", "awslambdaric"],
        "Command": ["mpfn.functions.warmer.lambda_handler.handler"],
    }
    destroy(target, lambda _line: None)


class SettlingApi(AwsApi):
    """Lambda refuses `refusals` VpcConfig updates as it does while a role's new EC2
    permissions have not reached it; every other call succeeds (no server involved)."""

    def __init__(self, refusals: int, error: str) -> None:
        self.slept: list[float] = []
        super().__init__(AwsSettings(region="us-east-1"), sleep=self.slept.append)
        self.refusals, self.error, self.attempts = refusals, error, 0

    def call(self, service: str, operation: str, /, **kwargs: Any) -> dict[str, Any]:
        if operation == "update_function_configuration":
            self.attempts += 1
            if self.attempts <= self.refusals:
                raise AwsError(f"lambda.{operation}: InvalidParameterValueException: {self.error}")
        return {"State": "Active", "LastUpdateStatus": "Successful"}


ROLE_NOT_READY = (
    "The provided execution role does not have permissions to call CreateNetworkInterface on EC2"
)


def test_vpc_updates_wait_for_the_role_permissions_to_settle() -> None:
    api = SettlingApi(2, ROLE_NOT_READY)
    api.update_function_configuration("f", VpcConfig={"SubnetIds": [], "SecurityGroupIds": []})
    assert api.attempts == 3 and api.slept == [2.0, 4.0]

    other = SettlingApi(1, "Value of memory is out of range")
    with pytest.raises(AwsError, match="out of range"):
        other.update_function_configuration("f", MemorySize=1)
    assert other.attempts == 1 and other.slept == []


@pytest.mark.parametrize(
    ("vpc", "message"),
    [
        (
            {"subnet_ids": ["subnet-0123456789abcdef0"]},
            "aws.vpc: Value error, subnet_ids needs security_group_ids",
        ),
        ({"security_group_ids": ["sg-0123456789abcdef0"]}, "subnet_ids is empty"),
        (
            {"subnet_ids": ["subnet-1"], "security_group_ids": ["sg-0123456789abcdef0"]},
            "'subnet-1' is not a subnet id",
        ),
        (
            {"subnet_ids": ["subnet-0123456789abcdef0"], "security_group_ids": ["default"]},
            "'default' is not a security group id",
        ),
        (
            {
                "subnet_ids": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef0"],
                "security_group_ids": ["sg-0123456789abcdef0"],
            },
            "subnet_ids lists subnet-0123456789abcdef0 more than once",
        ),
        ({"subnets": []}, "aws.vpc.subnets: Extra inputs are not permitted"),
    ],
)
def test_vpc_config_errors(vpc: dict[str, Any], message: str) -> None:
    with pytest.raises(DeployConfigError) as error:
        load_deploy_config({"deploy": {"target": "aws", "aws": {"vpc": vpc}}})
    assert message in str(error.value)


def test_cli_refuses_subnets_without_security_groups(aws_project: AwsProject) -> None:
    aws_project.raw["deploy"]["aws"]["vpc"] = {"subnet_ids": ["subnet-0123456789abcdef0"]}
    aws_project.write()
    result = run_cli(aws_project.directory, "deploy", "--dry-run")
    assert result.returncode == 1
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "subnet_ids needs security_group_ids" in err, err
