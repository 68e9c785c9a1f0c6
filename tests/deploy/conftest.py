"""Servers and project scaffolding for the deploy tests (all on loopback).

A session-scoped moto server stands in for AWS (S3, IAM, Lambda, Scheduler, Logs, STS).
`aws_project` writes an mpfn.yaml whose state bucket and resource names are unique per
test, so tests sharing the server never see each other's resources.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from procs import Proc, free_port, running
from procs import fake_gcs_server as start_fake_gcs

from mpfn.config import load_config
from mpfn.deploy import DeployConfig, Project, load_deploy_config
from mpfn.deploy.aws import AwsTarget
from mpfn.deploy.aws_api import AwsApi, AwsSettings
from mpfn.deploy.packaging import RouterPackage, build

REGION = "us-east-1"
WARMER_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mpfn-warmer:1"
KEY, SECRET = "mpfn-deploy-key", "mpfn-deploy-secret"


@pytest.fixture(scope="session")
def deploy_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deploy-logs")


@pytest.fixture(scope="session")
def moto_server(deploy_logs: Path) -> Iterator[Proc]:
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with running(argv, port=port, log_dir=deploy_logs, name="moto-deploy") as proc:
        yield proc


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


@pytest.fixture(scope="session")
def wheel_router_package(tmp_path_factory: pytest.TempPathFactory) -> RouterPackage:
    """The router zip with its binary code from the x86_64 manylinux wheels (fetched by pip,
    as a build on another platform does) instead of this installation."""
    return build(tmp_path_factory.mktemp("router-wheels"), "x86_64", wheels_only=True)


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


@pytest.fixture(scope="session")
def fake_gcs_server(deploy_logs: Path) -> Iterator[Proc]:
    with start_fake_gcs(deploy_logs, "fake-gcs-deploy") as proc:
        yield proc


@pytest.fixture(scope="session")
def gcp_standin(deploy_logs: Path) -> Iterator[Proc]:
    port = free_port()
    argv = [sys.executable, str(Path(__file__).parent / "gcp_standin.py"), str(port)]
    with running(
        argv,
        port=port,
        log_dir=deploy_logs,
        name="gcp-standin",
        ready_url=f"http://127.0.0.1:{port}/_dump",
    ) as proc:
        yield proc
