"""The SAM template and the Terraform module carry `deploy.aws.vpc`: each function's
VpcConfig and the network-interface statements in its role policy (parsed, not grepped)."""

from __future__ import annotations

import json
from typing import Any

import yaml

from mpfn.config import load_config
from mpfn.deploy import Project, load_deploy_config
from mpfn.deploy.export import render_text
from tests.deploy.test_export import INFRA

SUBNETS = ["subnet-0a1b2c3d4e5f60718", "subnet-0f1e2d3c4b5a69788"]
GROUPS = ["sg-0a1b2c3d4e5f60718"]
VPC_SIDS = ["CreateVpcInterfaces", "ManageVpcInterfaces", "DescribeVpcInterfaces"]


def render(*assignments: str) -> tuple[str, dict[str, Any]]:
    """(the SAM template's text, the Terraform module) of the example config."""
    loaded = load_config(cwd=INFRA)
    config = load_deploy_config(loaded.options, assignments=assignments)
    files = render_text(config, Project(INFRA, loaded.state, dict(loaded.options)), "python3.11")
    return files["sam/template.yaml"], json.loads(files["terraform/main.tf.json"])


def sids(document: dict[str, Any]) -> list[str]:
    return [s["Sid"] for s in document["Statement"] if s["Sid"] in VPC_SIDS]


def test_templates_attach_both_functions_to_the_configured_vpc() -> None:
    text, module = render(
        f"aws.vpc.subnet_ids=[{SUBNETS[1]}, {SUBNETS[0]}]",
        f"aws.vpc.security_group_ids=[{GROUPS[0]}]",
    )
    assert "&id" not in text and "*id" not in text  # no YAML aliases: CloudFormation refuses them
    resources = yaml.safe_load(text)["Resources"]
    for function, role in (("RouterFunction", "RouterRole"), ("WarmerFunction", "WarmerRole")):
        assert resources[function]["Properties"]["VpcConfig"] == {
            "SubnetIds": SUBNETS,
            "SecurityGroupIds": GROUPS,
        }
        [policy] = resources[role]["Properties"]["Policies"]
        assert sids(policy["PolicyDocument"]) == VPC_SIDS
        [create] = [s for s in policy["PolicyDocument"]["Statement"] if s["Sid"] == VPC_SIDS[0]]
        assert {
            "Fn::Sub": f"arn:aws:ec2:${{AWS::Region}}:${{AWS::AccountId}}:subnet/{SUBNETS[0]}"
        } in (create["Resource"])

    functions = module["resource"]["aws_lambda_function"]
    policies = module["resource"]["aws_iam_role_policy"]
    for name in ("router", "warmer"):
        assert functions[name]["vpc_config"] == {
            "subnet_ids": SUBNETS,
            "security_group_ids": GROUPS,
        }
        assert sids(json.loads(policies[name]["policy"])) == VPC_SIDS
    assert sids(json.loads(policies["scheduler"]["policy"])) == []


def test_templates_without_a_vpc_have_none() -> None:
    text, module = render("aws.vpc=null")
    resources = yaml.safe_load(text)["Resources"]
    for function, role in (("RouterFunction", "RouterRole"), ("WarmerFunction", "WarmerRole")):
        assert "VpcConfig" not in resources[function]["Properties"]
        [policy] = resources[role]["Properties"]["Policies"]
        assert sids(policy["PolicyDocument"]) == []
    for name in ("router", "warmer"):
        assert "vpc_config" not in module["resource"]["aws_lambda_function"][name]
        assert sids(json.loads(module["resource"]["aws_iam_role_policy"][name]["policy"])) == []


def test_the_infra_example_runs_in_a_vpc() -> None:
    """infra/ (kept in sync with its config by test_export) shows the VPC settings."""
    config = yaml.safe_load((INFRA / "mpfn.yaml").read_text())
    vpc = config["deploy"]["aws"]["vpc"]
    sam = yaml.safe_load((INFRA / "sam/template.yaml").read_text())
    assert sam["Resources"]["RouterFunction"]["Properties"]["VpcConfig"]["SubnetIds"] == sorted(
        vpc["subnet_ids"]
    )
    module = json.loads((INFRA / "terraform/main.tf.json").read_text())
    assert module["resource"]["aws_lambda_function"]["warmer"]["vpc_config"][
        "security_group_ids"
    ] == sorted(vpc["security_group_ids"])
