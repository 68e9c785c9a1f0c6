"""Servers and project scaffolding for the deploy tests (all on loopback).

The session's moto server (`moto_server`, tests/conftest.py) stands in for AWS (S3, IAM,
Lambda, Scheduler, Logs, STS); fake-gcs-server and the GCP stand-in for Google Cloud.
`aws_project` writes an mpfn.yaml whose state bucket and resource names are unique per
test, so tests sharing the server never see each other's resources.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mpfn.config import load_config
from mpfn.deploy import DeployConfig, Project, load_deploy_config
from mpfn.deploy.aws import AwsTarget
from mpfn.deploy.aws_api import AwsApi, AwsSettings
from mpfn.deploy.packaging import RouterPackage, build
from tests.servers.process import Proc

REGION = "us-east-1"
WARMER_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mpfn-warmer:1"
KEY, SECRET = "mpfn-deploy-key", "mpfn-deploy-secret"


@pytest.fixture(scope="session")
def deploy_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deploy-logs")


@dataclass
class AwsProject:
    """A project directory with an mpfn.yaml deploying to the moto server."""

    directory: Path
    endpoint: str
    bucket: str
    name: str
    raw: dict[str, Any]

    def write(self) -> None:
        (self.directory / "mpfn.yaml").write_text(yaml.safe_dump(self.raw, sort_keys=False))

    def config(self, **kwargs: Any) -> tuple[DeployConfig, Project]:
        loaded = load_config(cwd=self.directory)
        project = Project(self.directory, loaded.state, dict(loaded.options))
        return load_deploy_config(loaded.options, **kwargs), project

    def api(self) -> AwsApi:
        return AwsApi(
            AwsSettings(
                region=REGION,
                endpoint_url=self.endpoint,
                access_key_id=KEY,
                secret_access_key=SECRET,
            )
        )

    @property
    def stem(self) -> str:
        return f"{self.name}-dev"


@pytest.fixture
def aws_project(tmp_path: Path, moto_server: Proc) -> AwsProject:
    tag = uuid.uuid4().hex[:8]
    bucket = f"mpfn-state-{tag}"
    raw: dict[str, Any] = {
        "state": f"s3://{bucket}/mpfn",
        "s3": {
            "endpoint_url": moto_server.url,
            "region": REGION,
            "access_key_id": KEY,
            "secret_access_key": SECRET,
        },
        "deploy": {
            "target": "aws",
            "name": f"t{tag}",
            "build_dir": str(tmp_path.parent / "mpfn-build"),
            "aws": {
                "region": REGION,
                "endpoint_url": moto_server.url,
                "access_key_id": KEY,
                "secret_access_key": SECRET,
                "log_retention_days": 14,
            },
            "warmer": {"image": WARMER_IMAGE, "every_minutes": 5},
            "stages": {"prod": {"router": {"memory_mb": 2048}}},
        },
    }
    project = AwsProject(tmp_path, moto_server.url, bucket, f"t{tag}", raw)
    project.write()
    return project


@pytest.fixture(scope="session")
def router_package(tmp_path_factory: pytest.TempPathFactory) -> RouterPackage:
    """The router zip, built once per session from this installation."""
    return build(tmp_path_factory.mktemp("router-build"))


#: Where `scripts/install dev` puts the target wheels the router-package tests bundle.
WHEEL_CACHE = Path(sys.prefix) / "router-build" / "wheels"


def no_pip(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    raise AssertionError(f"pip was run (the wheel cache lacks a wheel): {argv}")


def with_wheel_cache(build_dir: Path) -> Path:
    """`build_dir` holding a copy of the installed wheel cache (`<build_dir>/wheels`), so a
    package built there for another platform takes its wheels without running pip."""
    if not any(WHEEL_CACHE.glob("*.whl")):
        pytest.fail(
            f"no target wheels in {WHEEL_CACHE}: run scripts/install dev (it downloads the "
            "manylinux wheels the router-package tests bundle)",
            pytrace=False,
        )
    shutil.copytree(WHEEL_CACHE, build_dir / "wheels", dirs_exist_ok=True)
    return build_dir


@pytest.fixture(scope="session")
def wheel_router_package(tmp_path_factory: pytest.TempPathFactory) -> RouterPackage:
    """The router zip with its binary code from the x86_64 manylinux wheels (as a build on
    another platform has it) instead of this installation; the wheels come from the cache."""
    out = with_wheel_cache(tmp_path_factory.mktemp("router-wheels"))
    return build(out, "x86_64", wheels_only=True, run=no_pip)


def aws_target(project: AwsProject, package: RouterPackage, **kwargs: Any) -> AwsTarget:
    config, proj = project.config(**kwargs)
    return AwsTarget(config, proj, build=lambda _dir: package)


def run_cli(directory: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`mpfn ARGS` as a user runs it, in `directory`."""
    return subprocess.run(
        [sys.executable, "-m", "mpfn", *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
