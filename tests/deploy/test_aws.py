"""`mpfn deploy --target aws` against a moto server: create, no-op, one update, destroy."""

from __future__ import annotations

import json

from mpfn.deploy import Action, deploy, destroy, plan_deploy
from mpfn.deploy.packaging import HANDLER, RouterPackage
from mpfn.deploy.record import RecordStore
from mpfn.store.s3 import S3Store
from tests.deploy.conftest import KEY, REGION, SECRET, WARMER_IMAGE, AwsProject, aws_target

KINDS = {
    "aws.s3.bucket": 1,
    "aws.iam.role": 3,
    "aws.logs.group": 2,
    "aws.lambda.zip": 1,
    "aws.lambda.image": 1,
    "aws.lambda.url": 1,
    "aws.scheduler.schedule": 1,
}


def state_store(project: AwsProject) -> S3Store:
    return S3Store(
        project.bucket,
        "mpfn",
        endpoint_url=project.endpoint,
        region=REGION,
        access_key_id=KEY,
        secret_access_key=SECRET,
    )


def test_deploy_from_scratch_redeploy_update_destroy(
    aws_project: AwsProject, router_package: RouterPackage
) -> None:
    lines: list[str] = []
    api = aws_project.api()
    stem = aws_project.stem

    first = deploy(aws_target(aws_project, router_package), lines.append)
    assert first.applied
    created = [c for c in first.plan if c.action is Action.CREATE]
    assert len(created) == sum(KINDS.values()) == len(first.plan.changes)
    assert {k: sum(1 for c in created if c.kind == k) for k in KINDS} == KINDS

    # Everything exists with the configured settings.
    assert api.bucket_region(aws_project.bucket) == REGION
    router = api.get_function(f"{stem}-router")
    assert router is not None
    config = router["Configuration"]
    assert config["Handler"] == HANDLER and config["MemorySize"] == 512
    assert config["CodeSha256"] == router_package.code_sha256
    assert config["Environment"]["Variables"]["MPFN_STATE"] == f"s3://{aws_project.bucket}/mpfn"
    assert config["Role"].endswith(f":role/{stem}-router-role")
    warmer = api.get_function(f"{stem}-warmer")
    assert warmer is not None and warmer["Code"]["ImageUri"] == WARMER_IMAGE
    assert warmer["Configuration"]["ImageConfigResponse"]["ImageConfig"] == {
        "EntryPoint": ["python3", "-m", "awslambdaric"],
        "Command": ["mpfn.functions.warmer.lambda_handler.handler"],
    }
    url = api.get_function_url(f"{stem}-router")
    assert url is not None and url["AuthType"] == "AWS_IAM"
    schedule = api.get_schedule(f"{stem}-warmer-schedule")
    assert schedule is not None and schedule["ScheduleExpression"] == "rate(5 minutes)"
    assert schedule["Target"]["Arn"].endswith(f":function:{stem}-warmer")
    for fn in ("router", "warmer"):
        group = api.get_log_group(f"/aws/lambda/{stem}-{fn}")
        assert group is not None and group["retentionInDays"] == 14

    # Least privilege: exact bucket, prefix-scoped keys, usage-only writes for the router.
    policy = api.get_role_policy(f"{stem}-router-role", "mpfn")
    assert policy is not None
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["ReadState"]["Action"] == "s3:GetObject"
    assert by_sid["ReadState"]["Resource"] == f"arn:aws:s3:::{aws_project.bucket}/mpfn/*"
    assert by_sid["WriteUsage"]["Resource"] == f"arn:aws:s3:::{aws_project.bucket}/mpfn/usage/*"
    assert by_sid["ListStatePrefix"]["Condition"] == {"StringLike": {"s3:prefix": ["mpfn/*"]}}
    assert all("*" not in json.dumps(s["Action"]) for s in policy["Statement"])
    scheduler = api.get_role_policy(f"{stem}-scheduler-role", "mpfn")
    assert scheduler is not None
    assert scheduler["Statement"][0]["Resource"] == api.function_arn(f"{stem}-warmer")

    # The deployment is recorded in the state store.
    records = RecordStore(lambda: state_store(aws_project), "aws", "dev")
    record = records.read()
    assert record is not None and record.complete
    assert len(record.resources) == len(created)
    assert record.outputs["router_url"] == url["FunctionUrl"]
    etag = state_store(aws_project).get(records.key)
    assert etag is not None

    # Redeploy with no change: the plan is all `keep`, and nothing is written.
    again = deploy(aws_target(aws_project, router_package), lines.append)
    assert again.plan.is_noop and not again.applied
    assert again.plan.count(Action.KEEP) == len(created)
    assert state_store(aws_project).get(records.key) == etag

    # One setting changed by flag: exactly one update, of exactly that field.
    bigger = aws_target(aws_project, router_package, assignments=("router.memory_mb=1024",))
    plan, _ = plan_deploy(bigger)
    changed = [c for c in plan if c.action is not Action.KEEP]
    assert len(changed) == 1
    assert changed[0].action is Action.UPDATE and changed[0].name == f"{stem}-router"
    assert [(f.field, f.old, f.new) for f in changed[0].fields] == [("memory_mb", 512, 1024)]
    deploy(bigger, lines.append)
    router = api.get_function(f"{stem}-router")
    assert router is not None and router["Configuration"]["MemorySize"] == 1024
    assert plan_deploy(bigger)[0].is_noop

    # Destroy removes everything, the (otherwise empty) state bucket included.
    gone = destroy(aws_target(aws_project, router_package), lines.append)
    assert gone.applied and gone.plan.count(Action.DELETE) == len(created)
    assert api.bucket_region(aws_project.bucket) is None
    for fn in ("router", "warmer"):
        assert api.get_function(f"{stem}-{fn}") is None
        assert api.get_log_group(f"/aws/lambda/{stem}-{fn}") is None
    for role in ("router-role", "warmer-role", "scheduler-role"):
        assert api.get_role(f"{stem}-{role}") is None
    assert api.get_schedule(f"{stem}-warmer-schedule") is None
    assert plan_deploy(aws_target(aws_project, router_package))[0].count(Action.CREATE) == len(
        created
    )
