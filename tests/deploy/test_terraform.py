"""The exported Terraform module, applied with the real Terraform against a moto server.

`terraform init` installs hashicorp/aws from the offline provider mirror on this machine
(a CLI config with `filesystem_mirror`; nothing is downloaded), then apply, plan and
destroy run against moto on loopback, once as configured and once with both functions in
a VPC made through moto's EC2 API. Skipped where Terraform or the mirror is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import KEY, REGION, SECRET, AwsProject, run_cli
from tests.deploy.test_aws_vpc import attached, network

MIRRORS = (
    os.environ.get("MPFN_TF_MIRROR", ""),
    "/opt/tf-plugins",
    "/usr/share/terraform/plugins",
    str(Path.home() / ".terraform.d/plugins"),
)
SERVICES = ("s3", "iam", "lambda", "sts", "cloudwatchlogs", "scheduler", "ec2")


def provider_mirror() -> Path | None:
    for candidate in MIRRORS:
        if candidate and (Path(candidate) / "registry.terraform.io/hashicorp/aws").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(autouse=True)
def _terraform_present() -> None:
    if shutil.which("terraform") is None or provider_mirror() is None:
        pytest.fail(
            "needs terraform and an offline hashicorp/aws provider mirror (on this machine kind)",
            pytrace=False,
        )


def terraform(workdir: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "terraform",
            args[0],
            "-no-color",
            *(["-input=false"] if args[0] != "output" else []),
            *args[1:],
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.parametrize("in_vpc", [False, True], ids=["no-vpc", "vpc"])
def test_terraform_module_applies_and_destroys_on_moto(
    aws_project: AwsProject, tmp_path: Path, in_vpc: bool
) -> None:
    subnets, groups = network(aws_project.api()) if in_vpc else ([], [])
    if in_vpc:
        aws_project.raw["deploy"]["aws"]["vpc"] = {
            "subnet_ids": subnets,
            "security_group_ids": groups,
        }
        aws_project.write()
    exported = run_cli(aws_project.directory, "deploy", "--export", "iac")
    assert exported.returncode == 0, exported.stderr
    module = aws_project.directory / "iac/terraform"
    cli_config = tmp_path / "terraform.rc"
    cli_config.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path = "{provider_mirror()}"\n'
        '    include = ["registry.terraform.io/hashicorp/aws"]\n  }\n'
        '  direct {\n    exclude = ["registry.terraform.io/hashicorp/aws"]\n  }\n}\n'
    )
    endpoints = dict.fromkeys(SERVICES, aws_project.endpoint)
    provider = {
        "region": REGION,
        "access_key": KEY,
        "secret_key": SECRET,
        "skip_credentials_validation": True,
        "skip_requesting_account_id": True,
        "skip_metadata_api_check": "true",
        "s3_use_path_style": True,
        "endpoints": endpoints,
    }
    (module / "moto_override.tf.json").write_text(json.dumps({"provider": {"aws": provider}}))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "TF_CLI_CONFIG_FILE": str(cli_config),
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",
        "TF_DATA_DIR": str(tmp_path / "tf-data"),
    }

    init = terraform(module, "init", env=env)
    assert init.returncode == 0, init.stdout + init.stderr
    assert "hashicorp/aws" in init.stdout

    plan = terraform(module, "plan", "-out", "mpfn.tfplan", env=env)
    assert plan.returncode == 0, plan.stdout[-4000:] + plan.stderr
    assert "Plan: 14 to add, 0 to change, 0 to destroy." in plan.stdout
    apply = terraform(module, "apply", "mpfn.tfplan", env=env)
    assert apply.returncode == 0, apply.stdout[-4000:] + apply.stderr
    assert "Apply complete! Resources: 14 added" in apply.stdout
    api = aws_project.api()
    stem = aws_project.stem
    router = api.get_function(f"{stem}-router")
    assert router is not None and router["Configuration"]["MemorySize"] == 512
    warmer = api.get_function(f"{stem}-warmer")
    assert warmer is not None and warmer["Configuration"]["PackageType"] == "Image"
    image_config = warmer["Configuration"]["ImageConfigResponse"]["ImageConfig"]
    assert image_config["EntryPoint"] == ["python3", "-m", "awslambdaric"]
    assert image_config["Command"] == ["mpfn.functions.warmer.lambda_handler.handler"]
    assert api.get_schedule(f"{stem}-warmer-schedule") is not None
    for function in ("router", "warmer"):
        assert attached(api, f"{stem}-{function}") == (sorted(subnets), sorted(groups))
    assert api.bucket_region(aws_project.bucket) == REGION
    outputs = json.loads(terraform(module, "output", "-json", env=env).stdout)
    assert outputs["router_url"]["value"].startswith("https://")

    destroy = terraform(module, "destroy", "-auto-approve", env=env)
    assert destroy.returncode == 0, destroy.stdout[-4000:] + destroy.stderr
    assert "Resources: 14 destroyed" in destroy.stdout
    assert api.get_function(f"{stem}-router") is None
    assert api.get_role(f"{stem}-router-role") is None
    assert api.bucket_region(aws_project.bucket) is None
