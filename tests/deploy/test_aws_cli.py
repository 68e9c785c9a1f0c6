"""The CLI over the aws target: dry runs, one-line config errors, resuming a failed apply."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mpfn.deploy import Action, DeployError, deploy, destroy, plan_deploy
from mpfn.deploy.aws import AwsTarget
from mpfn.deploy.aws_api import AwsApi, AwsError
from mpfn.deploy.packaging import RouterPackage
from tests.deploy.conftest import AwsProject, aws_target, run_cli


def test_dry_run_prints_the_plan_and_creates_nothing(aws_project: AwsProject) -> None:
    result = run_cli(aws_project.directory, "deploy", "--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "router package router.zip:" in out and " MB, " in out
    assert "10 to create, 0 to update, 0 to delete" in out
    assert f"+ create aws.lambda.zip {aws_project.stem}-router" in out
    assert f"+ create aws.s3.bucket {aws_project.bucket}" in out
    assert "dry run: nothing was changed." in out
    api = aws_project.api()
    assert api.bucket_region(aws_project.bucket) is None
    assert api.get_function(f"{aws_project.stem}-router") is None
    assert api.get_role(f"{aws_project.stem}-router-role") is None

    as_json = run_cli(aws_project.directory, "deploy", "--dry-run", "--json")
    assert as_json.returncode == 0, as_json.stderr
    plan = json.loads(as_json.stdout)["plan"]
    assert plan["target"] == "aws" and len(plan["changes"]) == 10
    assert {c["action"] for c in plan["changes"]} == {"create"}


def _set(project: AwsProject, path: str, value: Any) -> None:
    node = project.raw
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    project.write()


@pytest.mark.parametrize(
    ("args", "edit", "message"),
    [
        (("--target", "azure"), None, "unknown target 'azure' (choose one of: local, k8s, aws"),
        ((), ("deploy.aws.region", None), "deploy.aws.region is required for --target aws"),
        ((), ("deploy.aws.region", "mars-1"), "aws.region: String should match pattern"),
        ((), ("deploy.pools", [{"id": "Bad_Pool"}]), "pools.0.id: String should match pattern"),
        ((), ("deploy.pools", [{"id": "a", "replicas": -1}]), "pools.0.replicas"),
        ((), ("deploy.pools", [{"id": "a"}, {"id": "a"}]), "duplicate pool id(s): a"),
        ((), ("deploy.router", {"memroy_mb": 1}), "router.memroy_mb: Extra inputs"),
        (("--set", "aws.log_retention_days=8"), None, "log_retention_days must be one of"),
        (("--set", "router.architecture=sparc"), None, "router.architecture: Input should be"),
        ((), ("state", "./local-state"), "--target aws needs an s3:// state"),
    ],
)
def test_bad_config_fails_in_one_line_before_anything_exists(
    aws_project: AwsProject, args: tuple[str, ...], edit: Any, message: str
) -> None:
    if edit is not None:
        _set(aws_project, *edit)
    result = run_cli(aws_project.directory, "deploy", *args)
    assert result.returncode == 1
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert message in err, err
    assert result.stdout == ""
    assert aws_project.api().bucket_region(aws_project.bucket) is None


def test_stage_overrides_file_and_flags_override_stage(
    aws_project: AwsProject, router_package: RouterPackage
) -> None:
    def router_memory(**kwargs: Any) -> int:
        target = aws_target(aws_project, router_package, **kwargs)
        by_key = {r.key: r for r in target.desired()}
        router = by_key[("aws.lambda.zip", f"{target.config.prefix()}-router")]
        return int(router.settings()["memory_mb"])

    assert router_memory() == 512
    assert router_memory(stage="prod") == 2048
    assert router_memory(stage="prod", assignments=("router.memory_mb=1024",)) == 1024
    prod = aws_target(aws_project, router_package, stage="prod")
    assert prod.router == f"{aws_project.name}-prod-router"


class WarmerFails(AwsApi):
    """The real API, except that creating the warmer function is refused."""

    def create_function(self, **kwargs: Any) -> dict[str, Any]:
        if kwargs["FunctionName"].endswith("-warmer"):
            raise AwsError("lambda.create_function: AccessDeniedException: not allowed (test)")
        return super().create_function(**kwargs)


def test_failed_apply_is_resumed_by_the_next_deploy(
    aws_project: AwsProject, router_package: RouterPackage
) -> None:
    config, project = aws_project.config()
    broken = AwsTarget(
        config,
        project,
        api=WarmerFails(aws_project.api().settings),
        build=lambda _d: router_package,
    )
    with pytest.raises(DeployError) as failed:
        deploy(broken, lambda _line: None)
    message = str(failed.value)
    assert "create aws.lambda.image" in message and "not allowed (test)" in message
    assert "changes applied; run the same command again to resume" in message

    # The record lists what exists so far; it is marked incomplete.
    records = aws_target(aws_project, router_package).records()
    assert records is not None
    record = records.read()
    assert record is not None and not record.complete
    assert (("aws.lambda.zip", f"{aws_project.stem}-router")) in record.keys
    assert ("aws.lambda.image", f"{aws_project.stem}-warmer") not in record.keys

    # The next deploy creates only what is missing, then everything is in place.
    plan, _ = plan_deploy(aws_target(aws_project, router_package))
    todo = {(c.action, c.kind) for c in plan if c.action is not Action.KEEP}
    assert todo == {
        (Action.CREATE, "aws.lambda.image"),
        (Action.CREATE, "aws.lambda.url"),
        (Action.CREATE, "aws.scheduler.schedule"),
    }
    done = deploy(aws_target(aws_project, router_package), lambda _line: None)
    assert done.record.complete
    assert plan_deploy(aws_target(aws_project, router_package))[0].is_noop
    destroy(aws_target(aws_project, router_package), lambda _line: None)
    assert aws_project.api().bucket_region(aws_project.bucket) is None


def test_destroy_after_a_failure_cleans_up(
    aws_project: AwsProject, router_package: RouterPackage
) -> None:
    config, project = aws_project.config()
    broken = AwsTarget(
        config,
        project,
        api=WarmerFails(aws_project.api().settings),
        build=lambda _d: router_package,
    )
    with pytest.raises(DeployError):
        deploy(broken, lambda _line: None)
    result = run_cli(aws_project.directory, "destroy")
    assert result.returncode == 0, result.stderr
    assert "to delete" in result.stdout
    api = aws_project.api()
    assert api.bucket_region(aws_project.bucket) is None
    assert api.get_function(f"{aws_project.stem}-router") is None
    assert api.get_role(f"{aws_project.stem}-warmer-role") is None


def test_destroy_keeps_a_state_bucket_holding_models_unless_asked(
    aws_project: AwsProject, router_package: RouterPackage
) -> None:
    deploy(aws_target(aws_project, router_package), lambda _line: None)
    from .test_aws import state_store

    state_store(aws_project).put("models/demo/1.json", b"{}")
    kept = destroy(aws_target(aws_project, router_package), lambda _line: None)
    [bucket] = [c for c in kept.plan if c.kind == "aws.s3.bucket"]
    assert bucket.action is Action.KEEP and "holds 1 state object(s)" in bucket.reason
    api = aws_project.api()
    assert api.bucket_region(aws_project.bucket) is not None
    assert api.get_function(f"{aws_project.stem}-router") is None
    assert state_store(aws_project).list("deploy/") == []

    result = run_cli(aws_project.directory, "destroy", "--delete-state")
    assert result.returncode == 0, result.stderr
    assert api.bucket_region(aws_project.bucket) is None


def test_public_url_gets_the_public_permission(
    aws_project: AwsProject, router_package: RouterPackage
) -> None:
    deploy(aws_target(aws_project, router_package), lambda _line: None)
    api = aws_project.api()
    name = f"{aws_project.stem}-router"
    assert not api.public_url_permission(name)
    public = aws_target(aws_project, router_package, assignments=("aws.auth=NONE",))
    changed = [c for c in plan_deploy(public)[0] if c.action is not Action.KEEP]
    assert [(c.kind, c.action) for c in changed] == [("aws.lambda.url", Action.UPDATE)]
    deploy(public, lambda _line: None)
    url = api.get_function_url(name)
    assert url is not None and url["AuthType"] == "NONE"
    assert api.public_url_permission(name)
    destroy(public, lambda _line: None)
