"""The router package for another platform: arm64 functions, and builds whose binary code
comes from the target's manylinux wheels (as on macOS or Windows) instead of this
installation; the wheels come from the cache `scripts/install dev` fills, pip is never run.
Deploying with `router.architecture` sets the function's
architecture; changing it is one update of code and architecture."""

from __future__ import annotations

import subprocess
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from mpfn.deploy import Action, deploy, plan_deploy
from mpfn.deploy.aws import AwsTarget
from mpfn.deploy.aws_api import AwsApi, AwsSettings
from mpfn.deploy.packaging import PackagingError, RouterPackage, build
from mpfn.deploy.wheels import platforms
from tests.deploy.conftest import AwsProject, no_pip, with_wheel_cache

ELF_MACHINE = {"x86_64": 62, "arm64": 183}


def binary_machines(package: RouterPackage) -> dict[str, int]:
    """Extension module -> ELF e_machine, for every `.so` in the package."""
    out = {}
    with zipfile.ZipFile(package.path) as zf:
        for name in zf.namelist():
            if name.endswith(".so"):
                head = zf.read(name)[:20]
                assert head[:4] == b"\x7fELF", name
                out[name] = int.from_bytes(head[18:20], "little")
    return out


class RecordingApi(AwsApi):
    """The real AWS client, noting each operation it sends."""

    def __init__(self, settings: AwsSettings) -> None:
        super().__init__(settings)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def call(self, service: str, operation: str, /, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((operation, kwargs))
        return super().call(service, operation, **kwargs)


def test_arm64_package_bundles_aarch64_wheels_and_rebuilds_from_the_cache(
    tmp_path: Path, router_package: RouterPackage
) -> None:
    arm = build(with_wheel_cache(tmp_path), "arm64", run=no_pip)
    assert arm.architecture == "arm64" and arm.runtime == router_package.runtime
    machines = binary_machines(arm)
    assert len(machines) >= 3  # pydantic-core, orjson, PyYAML
    assert set(machines.values()) == {ELF_MACHINE["arm64"]}, machines
    # Everything but the extension modules is what the native package holds.
    with zipfile.ZipFile(arm.path) as a, zipfile.ZipFile(router_package.path) as n:
        assert {x for x in a.namelist() if not x.endswith(".so")} == {
            x for x in n.namelist() if not x.endswith(".so")
        }
    assert arm.distributions == router_package.distributions
    # A rebuild takes the cached wheels (pip is never run) and gives the same bytes.
    again = build(tmp_path, "arm64", run=no_pip)
    assert again.code_sha256 == arm.code_sha256
    assert set(binary_machines(router_package).values()) == {ELF_MACHINE["x86_64"]}


def test_x86_64_package_from_wheels_has_x86_64_binaries(
    wheel_router_package: RouterPackage,
) -> None:
    assert set(binary_machines(wheel_router_package).values()) == {ELF_MACHINE["x86_64"]}


def test_a_wheel_pip_cannot_find_is_a_clear_error(tmp_path: Path) -> None:
    def failing(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        err = "ERROR: No matching distribution found for orjson==3.13.0\n"
        return subprocess.CompletedProcess(list(argv), 1, "", err)

    with pytest.raises(PackagingError, match=r"no arm64 wheel of .*No matching distribution"):
        build(tmp_path, "arm64", run=failing)
    with pytest.raises(PackagingError, match="unknown architecture 'sparc'"):
        build(tmp_path, "sparc")


def test_platform_tags_follow_the_lambda_runtime_glibc() -> None:
    assert platforms("arm64", (3, 11))[0] == "manylinux_2_26_aarch64"  # Amazon Linux 2
    assert platforms("arm64", (3, 12))[0] == "manylinux_2_34_aarch64"  # Amazon Linux 2023
    assert "manylinux2014_x86_64" in platforms("x86_64", (3, 11))
    assert all(t.endswith("aarch64") for t in platforms("arm64", (3, 13)))


def test_deploy_arm64_then_switch_back_is_one_update(
    aws_project: AwsProject, router_package: RouterPackage
) -> None:
    api = aws_project.api()
    name = f"{aws_project.stem}-router"
    config, project = aws_project.config(assignments=("router.architecture=arm64",))
    build_dir = with_wheel_cache(Path(aws_project.raw["deploy"]["build_dir"]))
    arm_target = AwsTarget(  # builds the arm64 package itself, from the cached wheels
        config, project, build=lambda _d: build(build_dir, "arm64", run=no_pip)
    )
    assert deploy(arm_target, lambda _line: None).applied
    assert arm_target.package is not None and arm_target.package.architecture == "arm64"
    deployed = api.get_function(name)
    assert deployed is not None
    assert deployed["Configuration"]["Architectures"] == ["arm64"]
    assert deployed["Configuration"]["CodeSha256"] == arm_target.package.code_sha256
    assert plan_deploy(AwsTarget(config, project))[0].is_noop

    x86_config, _ = aws_project.config()
    calls = RecordingApi(api.settings)
    x86 = AwsTarget(x86_config, project, api=calls, build=lambda _d: router_package)
    plan, _ = plan_deploy(x86)
    changed = [c for c in plan if c.action is not Action.KEEP]
    assert [(c.name, c.action) for c in changed] == [(name, Action.UPDATE)]
    assert {f.field for f in changed[0].fields} == {"architecture", "code_sha256"}
    deploy(x86, lambda _line: None)
    after = api.get_function(name)
    assert after is not None
    assert after["Configuration"]["CodeSha256"] == router_package.code_sha256
    # moto keeps the architecture a function was created with (AWS's UpdateFunctionCode
    # takes `Architectures`); the call botocore validated and sent says what was asked.
    updates = [kw for op, kw in calls.calls if op == "update_function_code"]
    # (So a plan against moto would still see arm64 here.)
    assert [u["Architectures"] for u in updates] == [["x86_64"]]
