"""`deploy.pools` on the aws target against a moto server: ECS services on Fargate and on
an EC2 GPU capacity provider, Cloud Map names, a no-op redeploy, one update per changed
setting, a removed pool deleted, destroy removing everything; config errors in one line.

moto keeps no capacity provider strategy on ECS services (it reports launchType EC2 for
a service created with one), so the GPU service's strategy is checked on the request
sent."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from mpfn.deploy import Action, DeployConfigError, deploy, destroy, plan_deploy
from mpfn.deploy.aws import AwsTarget
from mpfn.deploy.aws_api import AwsApi, AwsSettings
from mpfn.deploy.packaging import RouterPackage
from mpfn.deploy.planner import PlanError
from tests.deploy.conftest import KEY, REGION, SECRET, AwsProject
from tests.deploy.test_aws_vpc import network

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
GPU_AMI = "ami-0123456789abcdef0"
POOLS: list[dict[str, Any]] = [
    {"id": "cpu-a", "adapter": "ort", "replicas": 2, "port": 8000, "cpu": "0.5", "memory": "1Gi"},
    {
        "id": "tf-a",
        "adapter": "tfserving",
        "image": "tensorflow/serving:2.14.1",
        "port": 8001,
        "cpu": "1",
        "memory": "2Gi",
    },
    {
        "id": "gpu-a",
        "adapter": "ort",
        "image": f"{ECR}/mpfn-worker-cuda:1",
        "hardware": ["nvidia"],
        "gpus": 1,
        "cpu": "2",
        "memory": "8Gi",
    },
]
KINDS = {
    "aws.s3.bucket": 1,
    "aws.iam.role": 6,  # router, warmer, scheduler + pool execution, pool task, GPU host
    "aws.iam.instance-profile": 1,
    "aws.logs.group": 3,
    "aws.lambda.zip": 1,
    "aws.lambda.image": 1,
    "aws.lambda.url": 1,
    "aws.scheduler.schedule": 1,
    "aws.ecs.cluster": 1,
    "aws.servicediscovery.namespace": 1,
    "aws.ec2.launch-template": 1,
    "aws.autoscaling.group": 1,
    "aws.ecs.capacity-provider": 1,
    "aws.servicediscovery.service": 3,
    "aws.ecs.task-definition": 3,
    "aws.ecs.service": 3,
}


class RecordingApi(AwsApi):
    """The real AWS client, noting each operation it sends."""

    def __init__(self, settings: AwsSettings) -> None:
        super().__init__(settings)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def call(self, service: str, operation: str, /, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((operation, kwargs))
        return super().call(service, operation, **kwargs)


def with_pools(project: AwsProject, pools: list[dict[str, Any]] | None = None) -> None:
    subnets, groups = network(project.api())
    deploy_section = project.raw["deploy"]
    deploy_section["aws"]["vpc"] = {"subnet_ids": subnets, "security_group_ids": groups[:1]}
    deploy_section["aws"]["ecs"] = {"gpu_ami": GPU_AMI}
    deploy_section["images"] = {
        "worker": f"{ECR}/mpfn-worker:1",
        "adapters": {"tfserving": f"{ECR}/mpfn-adapter-tfserving:1"},
    }
    deploy_section["pools"] = copy.deepcopy(POOLS if pools is None else pools)
    project.write()


def target(project: AwsProject, package: RouterPackage, api: AwsApi | None = None) -> AwsTarget:
    config, proj = project.config()
    settings = AwsSettings(
        region=REGION, endpoint_url=project.endpoint, access_key_id=KEY, secret_access_key=SECRET
    )
    return AwsTarget(config, proj, api=api or RecordingApi(settings), build=lambda _d: package)


def not_kept(t: AwsTarget) -> list[tuple[str, str, str, list[str]]]:
    plan, _ = plan_deploy(t)
    return sorted(
        (c.action.value, c.kind, c.name, [f.field for f in c.fields])
        for c in plan
        if c.action is not Action.KEEP
    )


def task_definition(api: AwsApi, family: str) -> dict[str, Any]:
    arns = api.task_definition_arns(family)
    assert len(arns) == 1, arns
    return api.describe_task_definition(arns[0])


def test_pools_deploy_update_remove_destroy(
    aws_project: AwsProject, router_package: RouterPackage
) -> None:
    with_pools(aws_project)
    api = aws_project.api()
    stem = aws_project.stem
    namespace = f"{stem}.mpfn.internal"
    lines: list[str] = []

    first_target = target(aws_project, router_package)
    assert [(p.pool.id, p.cloud, p.region, p.endpoint) for p in first_target.placements()] == [
        ("cpu-a", "aws", REGION, f"http://cpu-a.{namespace}:8000"),
        ("tf-a", "aws", REGION, f"http://tf-a.{namespace}:8001"),
        ("gpu-a", "aws", REGION, f"http://gpu-a.{namespace}:8000"),
    ]
    plan, _ = plan_deploy(first_target)
    assert {k: sum(1 for c in plan if c.kind == k) for k in KINDS} == KINDS
    assert all(c.action is Action.CREATE for c in plan)
    assert sorted(first_target.resource_keys()) == sorted(c.key for c in plan)

    first = deploy(first_target, lines.append)
    assert first.applied and len(first.plan.changes) == sum(KINDS.values())
    assert first.record.outputs["pool_endpoint.cpu-a"] == f"http://cpu-a.{namespace}:8000"

    # The cluster, with the GPU capacity provider attached to it.
    cluster = api.get_cluster(stem)
    assert cluster is not None and cluster["capacityProviders"] == [f"{stem}-gpu"]
    provider = api.get_capacity_provider(f"{stem}-gpu")
    assert provider is not None
    group = api.get_auto_scaling_group(f"{stem}-gpu")
    assert group is not None
    assert (
        provider["autoScalingGroupProvider"]["autoScalingGroupArn"] == group["AutoScalingGroupARN"]
    )
    assert (group["MinSize"], group["MaxSize"], group["LaunchTemplate"]["LaunchTemplateName"]) == (
        0,
        1,
        f"{stem}-gpu",
    )
    template = api.get_launch_template(f"{stem}-gpu")
    assert template is not None
    data = template["LaunchTemplateData"]
    assert (data["ImageId"], data["InstanceType"]) == (GPU_AMI, "g5.xlarge")
    assert data["IamInstanceProfile"] == {"Name": f"{stem}-gpu-host"}
    assert f"ECS_CLUSTER={stem} >>" in base64.b64decode(data["UserData"]).decode()
    profile = api.get_instance_profile(f"{stem}-gpu-host")
    assert profile is not None and [r["RoleName"] for r in profile["Roles"]] == [f"{stem}-gpu-host"]

    # Services: replicas, private networking, a Cloud Map name each.
    vpc = aws_project.raw["deploy"]["aws"]["vpc"]
    found_namespace = api.find_namespace(namespace)
    assert found_namespace is not None
    assert api.tags_of(found_namespace["Arn"]) == {"mpfn:vpc": api.subnet_vpc(vpc["subnet_ids"][0])}
    for pool, replicas in (("cpu-a", 2), ("tf-a", 1), ("gpu-a", 1)):
        service = api.get_ecs_service(stem, pool)
        assert service is not None and service["desiredCount"] == replicas
        network_config = service["networkConfiguration"]["awsvpcConfiguration"]
        assert sorted(network_config["subnets"]) == sorted(vpc["subnet_ids"])
        assert network_config["assignPublicIp"] == "DISABLED"
        discovery = api.find_discovery_service(found_namespace["Id"], pool)
        assert discovery is not None
        assert service["serviceRegistries"] == [{"registryArn": discovery["Arn"]}]
    cpu_service = api.get_ecs_service(stem, "cpu-a")
    assert cpu_service is not None and cpu_service["launchType"] == "FARGATE"
    assert isinstance(first_target.api, RecordingApi)
    sent = {
        k["serviceName"]: k
        for op, k in first_target.api.calls
        if op == "create_service" and "serviceName" in k  # ECS, not Cloud Map
    }
    assert sent["gpu-a"]["capacityProviderStrategy"] == [
        {"capacityProvider": f"{stem}-gpu", "weight": 1, "base": 0}
    ]
    assert "launchType" not in sent["gpu-a"] and sent["cpu-a"]["launchType"] == "FARGATE"

    # Task definitions: images, ports, sizes, GPUs, the adapter server beside its backend.
    cpu_task = task_definition(api, f"{stem}-cpu-a")
    assert (cpu_task["requiresCompatibilities"], cpu_task["cpu"], cpu_task["memory"]) == (
        ["FARGATE"],
        "512",
        "1024",
    )
    assert cpu_task["networkMode"] == "awsvpc"
    assert cpu_task["executionRoleArn"].endswith(f":role/{stem}-pool-exec")
    assert cpu_task["taskRoleArn"].endswith(f":role/{stem}-pool-task")
    [worker] = cpu_task["containerDefinitions"]
    assert worker["image"] == f"{ECR}/mpfn-worker:1"
    assert [p["containerPort"] for p in worker["portMappings"]] == [8000]
    assert worker["command"][:4] == ["--host", "0.0.0.0", "--port", "8000"]
    state = f"s3://{aws_project.bucket}/mpfn"
    assert {"name": "MPFN_STATE", "value": state} in worker["environment"]
    assert not worker.get("resourceRequirements")
    tf_task = task_definition(api, f"{stem}-tf-a")
    adapter, backend = sorted(tf_task["containerDefinitions"], key=lambda c: c["name"])
    assert (adapter["image"], backend["image"]) == (
        f"{ECR}/mpfn-adapter-tfserving:1",
        "tensorflow/serving:2.14.1",
    )
    assert [p["containerPort"] for p in adapter["portMappings"]] == [8001]
    assert "http://127.0.0.1:8501" in adapter["command"]
    assert {"name": "PORT", "value": "8501"} in backend["environment"]
    assert [m["sourceVolume"] for m in backend["mountPoints"]] == ["cache"]
    gpu_task = task_definition(api, f"{stem}-gpu-a")
    assert gpu_task["requiresCompatibilities"] == ["EC2"]
    assert gpu_task["containerDefinitions"][0]["resourceRequirements"] == [
        {"type": "GPU", "value": "1"}
    ]

    # Least privilege: read-only state, pulls only from the images' ECR repositories.
    task_policy = api.get_role_policy(f"{stem}-pool-task", "mpfn")
    assert task_policy is not None
    assert {s["Sid"]: s["Action"] for s in task_policy["Statement"]} == {
        "ListStatePrefix": "s3:ListBucket",
        "ReadState": "s3:GetObject",
    }
    exec_policy = api.get_role_policy(f"{stem}-pool-exec", "mpfn")
    assert exec_policy is not None
    pulls = {s["Sid"]: s for s in exec_policy["Statement"]}["PullPoolImages"]["Resource"]
    assert pulls == [
        f"arn:aws:ecr:us-east-1:123456789012:repository/{r}"
        for r in ("mpfn-adapter-tfserving", "mpfn-worker", "mpfn-worker-cuda")
    ]

    # An unchanged config is a no-op.
    again = deploy(target(aws_project, router_package), lines.append)
    assert again.plan.is_noop and not again.applied

    # Replicas: one update of one service.
    aws_project.raw["deploy"]["pools"][0]["replicas"] = 3
    aws_project.write()
    scaled = target(aws_project, router_package)
    assert not_kept(scaled) == [("update", "aws.ecs.service", f"{stem}/cpu-a", ["desired_count"])]
    deploy(scaled, lines.append)
    cpu_service = api.get_ecs_service(stem, "cpu-a")
    assert cpu_service is not None and cpu_service["desiredCount"] == 3
    assert plan_deploy(target(aws_project, router_package))[0].is_noop

    # An image: a new task definition revision, and the service moved onto it.
    aws_project.raw["deploy"]["images"]["worker"] = f"{ECR}/mpfn-worker:2"
    aws_project.write()
    retagged = target(aws_project, router_package)
    assert not_kept(retagged) == [
        ("update", "aws.ecs.service", f"{stem}/cpu-a", ["task_digest"]),
        ("update", "aws.ecs.task-definition", f"{stem}-cpu-a", ["images"]),
    ]
    deploy(retagged, lines.append)
    cpu_task = task_definition(api, f"{stem}-cpu-a")  # only the new revision is active
    assert cpu_task["revision"] == 2
    [older] = api.task_definition_arns(f"{stem}-cpu-a", "INACTIVE")
    assert older.endswith(f":task-definition/{stem}-cpu-a:1")
    assert cpu_task["containerDefinitions"][0]["image"] == f"{ECR}/mpfn-worker:2"
    cpu_service = api.get_ecs_service(stem, "cpu-a")
    assert (
        cpu_service is not None and cpu_service["taskDefinition"] == cpu_task["taskDefinitionArn"]
    )
    assert plan_deploy(target(aws_project, router_package))[0].is_noop

    # A removed pool: its service, task definition and Cloud Map service are deleted, and
    # the execution role may no longer pull its adapter server's image.
    del aws_project.raw["deploy"]["pools"][1]
    aws_project.write()
    fewer = target(aws_project, router_package)
    assert not_kept(fewer) == [
        ("delete", "aws.ecs.service", f"{stem}/tf-a", []),
        ("delete", "aws.ecs.task-definition", f"{stem}-tf-a", []),
        ("delete", "aws.servicediscovery.service", f"tf-a.{namespace}", []),
        ("update", "aws.iam.role", f"{stem}-pool-exec", ["policy"]),
    ]
    deploy(fewer, lines.append)
    assert api.get_ecs_service(stem, "tf-a") is None
    for status in ("ACTIVE", "INACTIVE"):
        assert api.task_definition_arns(f"{stem}-tf-a", status) == []
    assert api.find_discovery_service(found_namespace["Id"], "tf-a") is None
    assert plan_deploy(target(aws_project, router_package))[0].is_noop

    # Fargate <-> GPU capacity cannot change in place: a one-line plan error.
    gpu_pool = aws_project.raw["deploy"]["pools"][1]
    gpu_pool.update(hardware=["cpu"], gpus=0)
    aws_project.write()
    with pytest.raises(PlanError) as caught:
        plan_deploy(target(aws_project, router_package))
    assert str(caught.value).startswith(
        f"aws.ecs.service {stem}/gpu-a: launch cannot change in place ('EC2' -> 'FARGATE')"
    )
    assert "\n" not in str(caught.value)
    gpu_pool.update(hardware=["nvidia"], gpus=1)
    aws_project.write()

    # Destroy: services before the cluster, everything gone.
    destroyer = target(aws_project, router_package)
    gone = destroy(destroyer, lines.append)
    deletes = [c.key for c in gone.plan if c.action is Action.DELETE]
    assert len(deletes) == sum(KINDS.values()) - 3
    assert deletes.index(("aws.ecs.service", f"{stem}/cpu-a")) < deletes.index(
        ("aws.ecs.capacity-provider", f"{stem}-gpu")
    )
    assert deletes.index(("aws.ecs.capacity-provider", f"{stem}-gpu")) < deletes.index(
        ("aws.ecs.cluster", stem)
    )
    assert isinstance(destroyer.api, RecordingApi)
    scaled_down = [
        k for op, k in destroyer.api.calls if op == "update_service" and k["desiredCount"] == 0
    ]
    assert sorted(k["service"] for k in scaled_down) == ["cpu-a", "gpu-a"]
    assert api.get_cluster(stem) is None
    for pool in ("cpu-a", "gpu-a"):
        assert api.get_ecs_service(stem, pool) is None
        for status in ("ACTIVE", "INACTIVE"):
            assert api.task_definition_arns(f"{stem}-{pool}", status) == []
    assert api.find_namespace(namespace) is None
    assert api.get_capacity_provider(f"{stem}-gpu") is None
    assert api.get_auto_scaling_group(f"{stem}-gpu") is None
    assert api.get_launch_template(f"{stem}-gpu") is None
    assert api.get_instance_profile(f"{stem}-gpu-host") is None
    for role in ("pool-exec", "pool-task", "gpu-host"):
        assert api.get_role(f"{stem}-{role}") is None
    assert api.get_log_group(f"/ecs/{stem}-pools") is None
    assert all(
        c.action is Action.CREATE for c in plan_deploy(target(aws_project, router_package))[0]
    )


def test_cpu_pools_only_need_no_gpu_capacity(
    aws_project: AwsProject, router_package: RouterPackage
) -> None:
    with_pools(aws_project, POOLS[:1])
    del aws_project.raw["deploy"]["aws"]["ecs"]
    aws_project.write()
    plan, _ = plan_deploy(target(aws_project, router_package))
    kinds = {c.kind for c in plan}
    assert "aws.ecs.service" in kinds and "aws.ecs.cluster" in kinds
    assert not kinds & {
        "aws.ec2.launch-template",
        "aws.autoscaling.group",
        "aws.ecs.capacity-provider",
        "aws.iam.instance-profile",
    }


def config_error(project: AwsProject, **changes: Any) -> str:
    raw = copy.deepcopy(project.raw)
    section = raw["deploy"]
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = section
        for part in parents:
            node = node.setdefault(part, {}) if not part.isdigit() else node[int(part)]
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    project_copy = AwsProject(
        project.directory, project.endpoint, project.bucket, project.name, raw
    )
    project_copy.write()
    try:
        config, proj = project_copy.config()
        with pytest.raises(DeployConfigError) as caught:
            AwsTarget(config, proj)
    finally:
        project.write()
    message = str(caught.value)
    assert "\n" not in message, message
    return message


def test_config_errors_are_one_line(aws_project: AwsProject) -> None:
    with_pools(aws_project)
    assert "deploy.aws.vpc is required for --target aws with pools" in config_error(
        aws_project, aws__vpc=None
    )
    assert "deploy.aws.ecs.gpu_ami is required for --target aws" in config_error(
        aws_project, aws__ecs=None
    )
    message = config_error(aws_project, pools__2__hardware=["amd"], pools__2__gpus=0)
    assert message.startswith("deploy.pools.gpu-a: ECS cannot give hardware amd")
    assert "deploy.pools.gpu-a: ECS cannot give hardware tpu" in config_error(
        aws_project, pools__2__hardware=["tpu"]
    )
    assert "hardware nvidia needs gpus >= 1" in config_error(aws_project, pools__2__gpus=0)
    assert config_error(aws_project, pools__0__cpu="3") == (
        "deploy.pools.cpu-a.cpu: Fargate runs cpu 0.25, 0.5, 1, 2, 4, 8, 16, not 3 (3072 units)"
    )
    assert config_error(aws_project, pools__0__memory="5Gi") == (
        "deploy.pools.cpu-a.memory: Fargate runs cpu 0.5 with memory 1Gi-4Gi in 1Gi steps, not 5Gi"
    )
    assert "is not a memory quantity" in config_error(aws_project, pools__0__memory="lots")
    assert "deploy.images.worker is required for --target aws" in config_error(
        aws_project, images__worker=None
    )
    assert "deploy.images.adapters.tfserving is required" in config_error(
        aws_project, images__adapters={}
    )
    assert "cannot mount" in config_error(aws_project, pools__1__token_secret="tf-tokens")
