"""Pools on AWS: `deploy.pools` as ECS services, their resource types and policies. Pure.

    ECS cluster <prefix>
      CPU pools (hardware [cpu])       -> Fargate tasks (awsvpc)
      GPU pools (hardware nvidia, gpus) -> EC2 tasks on a capacity provider:
          IAM role + instance profile -> launch template (ECS GPU AMI) -> Auto Scaling
          group (min 0) -> capacity provider attached to the cluster
    per pool: a task definition <prefix>-<pool> (the worker, the backend, or the backend
    behind an adapter server, as on Kubernetes) and a service <pool> with desiredCount =
    replicas, in `deploy.aws.vpc`'s subnets and security groups, registered in Cloud Map
    service <pool> of the private DNS namespace <prefix>.mpfn.internal
    -> the pool is reached at http://<pool>.<prefix>.mpfn.internal:<port>

Task definitions are compared through a projection of what deploy sets (`task_spec`), so
the defaults ECS fills in never look like drift; a service records the digest of the
task definition it runs, so a changed image is one update of each. Policies name exact
ARNs: the pools' log group, the ECR repositories of the images, the state prefix (read
only), the cluster and its container instances. The only grants on `*` are
`ecr:GetAuthorizationToken` and `ecs:DiscoverPollEndpoint`, which IAM offers on no
narrower resource.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Literal

from mpfn.deploy.aws_resources import Scope, Statement, canonical
from mpfn.deploy.k8s_manifests import CACHE_DIR, pool_layout
from mpfn.deploy.models import Resource, observed_only
from mpfn.deploy.placement import PoolPlacement
from mpfn.deploy.spec import DeployConfig, DeployConfigError, PoolConfig, require

NAMESPACE_DOMAIN = "mpfn.internal"
#: Where mpfn's servers cache artifacts when nothing is shared: their image's default.
TMP_CACHE = "/tmp/mpfn-cache"
DNS_TTL_S = 10
Launch = Literal["FARGATE", "EC2"]

#: Fargate task sizes: cpu units -> the memory (MiB) each takes.
FARGATE_SIZES: Mapping[int, range] = {
    256: range(512, 2048 + 1, 512),
    512: range(1024, 4096 + 1, 1024),
    1024: range(2048, 8192 + 1, 1024),
    2048: range(4096, 16384 + 1, 1024),
    4096: range(8192, 30720 + 1, 1024),
    8192: range(16384, 61440 + 1, 4096),
    16384: range(32768, 122880 + 1, 8192),
}
_MEMORY_UNITS = {
    "": Decimal(1),
    "k": Decimal(1000),
    "M": Decimal(1000**2),
    "G": Decimal(1000**3),
    "T": Decimal(1000**4),
    "Ki": Decimal(1024),
    "Mi": Decimal(1024**2),
    "Gi": Decimal(1024**3),
    "Ti": Decimal(1024**4),
}
_ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?"
    r"/(?P<repo>[^:@]+)"
)


# -- resources ----------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceProfile(Resource):
    kind: ClassVar[str] = "aws.iam.instance-profile"
    order: ClassVar[int] = 15
    role: str = ""


@dataclass(frozen=True)
class EcsCluster(Resource):
    kind: ClassVar[str] = "aws.ecs.cluster"
    order: ClassVar[int] = 60


@dataclass(frozen=True)
class DnsNamespace(Resource):
    """A Cloud Map private DNS namespace (a Route 53 private hosted zone in the VPC)."""

    kind: ClassVar[str] = "aws.servicediscovery.namespace"
    order: ClassVar[int] = 60
    immutable: ClassVar[frozenset[str]] = frozenset({"vpc_id"})
    vpc_id: str = ""  # tagged `mpfn:vpc` on the namespace


@dataclass(frozen=True)
class LaunchTemplate(Resource):
    kind: ClassVar[str] = "aws.ec2.launch-template"
    order: ClassVar[int] = 62
    image_id: str = ""
    instance_type: str = ""
    instance_profile: str = ""
    security_group_ids: tuple[str, ...] = ()
    user_data: str = ""  # plain text (sent base64-encoded)


@dataclass(frozen=True)
class AutoScalingGroup(Resource):
    kind: ClassVar[str] = "aws.autoscaling.group"
    order: ClassVar[int] = 64
    launch_template: str = ""
    max_size: int = 1
    subnet_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class CapacityProvider(Resource):
    kind: ClassVar[str] = "aws.ecs.capacity-provider"
    order: ClassVar[int] = 66
    immutable: ClassVar[frozenset[str]] = frozenset({"auto_scaling_group"})
    auto_scaling_group: str = ""
    cluster: str = ""  # the cluster it is attached to ("" when detached)


@dataclass(frozen=True)
class DiscoveryService(Resource):
    """A Cloud Map service `<pool>` in the namespace; named by its DNS name."""

    kind: ClassVar[str] = "aws.servicediscovery.service"
    order: ClassVar[int] = 70
    ttl_s: int = DNS_TTL_S

    @property
    def parts(self) -> tuple[str, str]:
        """(service name, namespace name)."""
        service, _, namespace = self.name.partition(".")
        return service, namespace


@dataclass(frozen=True)
class TaskDefinition(Resource):
    """The latest active revision of the family `name`."""

    kind: ClassVar[str] = "aws.ecs.task-definition"
    order: ClassVar[int] = 70
    compatibility: str = "FARGATE"
    cpu: str = ""
    memory: str = ""
    execution_role: str = ""
    task_role: str = ""
    images: tuple[tuple[str, str], ...] = ()  # (container, image), by container name
    spec: str = ""  # canonical JSON of the containers (images aside) and volumes
    revision: int = observed_only(0)
    request: str = observed_only("")  # the RegisterTaskDefinition request (JSON), to apply

    def digest(self) -> str:
        """What a service running this task definition records of it."""
        text = canonical(self.settings())
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class EcsService(Resource):
    """The service `<pool>` of cluster `<cluster>`, named `<cluster>/<pool>`."""

    kind: ClassVar[str] = "aws.ecs.service"
    order: ClassVar[int] = 80
    immutable: ClassVar[frozenset[str]] = frozenset({"launch", "registry"})
    task_definition: str = ""  # the family
    task_digest: str = ""  # `TaskDefinition.digest()` of the revision it runs
    desired_count: int = 1  # scaled pools: the first size only (then the warmer's)
    launch: str = "FARGATE"  # FARGATE, or EC2 (the cluster's GPU capacity provider)
    scaled: bool = False  # the pool has max_replicas: its size is not deploy's to keep
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    registry: str = ""  # the Cloud Map service's DNS name


# -- names --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EcsNames:
    """The name of every pool resource of one deployment."""

    prefix: str

    @property
    def cluster(self) -> str:
        return self.prefix

    @property
    def namespace(self) -> str:
        return f"{self.prefix}.{NAMESPACE_DOMAIN}"

    @property
    def log_group(self) -> str:
        return f"/ecs/{self.prefix}-pools"

    @property
    def execution_role(self) -> str:
        return f"{self.prefix}-pool-exec"

    @property
    def task_role(self) -> str:
        return f"{self.prefix}-pool-task"

    @property
    def host_role(self) -> str:
        """The GPU instances' role and instance profile."""
        return f"{self.prefix}-gpu-host"

    @property
    def gpu(self) -> str:
        """The GPU launch template, Auto Scaling group and capacity provider."""
        return f"{self.prefix}-gpu"

    def family(self, pool: PoolConfig) -> str:
        return f"{self.prefix}-{pool.id}"

    def host(self, pool: PoolConfig) -> str:
        return f"{pool.id}.{self.namespace}"

    def endpoint(self, pool: PoolConfig) -> str:
        return f"http://{self.host(pool)}:{pool.port}"


# -- validation ---------------------------------------------------------------------------


def launch_of(pool: PoolConfig) -> Launch:
    """Fargate for CPU pools, EC2 GPU capacity for nvidia pools; anything else is a
    one-line error naming the pool."""
    where = f"deploy.pools.{pool.id}"
    others = sorted(set(pool.hardware) - {"cpu", "nvidia"})
    if others:
        raise DeployConfigError(
            f"{where}: ECS cannot give hardware {', '.join(others)} (the aws target runs "
            "cpu pools on Fargate and nvidia pools on EC2 GPU instances)"
        )
    if "nvidia" in pool.hardware:
        if pool.gpus < 1:
            raise DeployConfigError(f"{where}: hardware nvidia needs gpus >= 1 on ECS")
        return "EC2"
    if pool.gpus:
        raise DeployConfigError(f"{where}: gpus {pool.gpus} needs hardware [nvidia]")
    return "FARGATE"


def cpu_units(pool: PoolConfig) -> int:
    """`cpu` (a Kubernetes quantity: 1, 0.5, 500m) in ECS units (1024 per vCPU)."""
    text = pool.cpu.strip()
    try:
        cores = Decimal(text[:-1]) / 1000 if text.endswith("m") else Decimal(text)
    except InvalidOperation:
        raise DeployConfigError(
            f"deploy.pools.{pool.id}.cpu: {pool.cpu!r} is not a CPU quantity (1, 0.5, 500m)"
        ) from None
    units = cores * 1024
    if units <= 0 or units != units.to_integral_value():
        raise DeployConfigError(
            f"deploy.pools.{pool.id}.cpu: {pool.cpu!r} is not a whole number of ECS cpu "
            "units (1024 per vCPU)"
        )
    return int(units)


def memory_mib(pool: PoolConfig) -> int:
    """`memory` (a Kubernetes quantity: 2Gi, 512Mi, 4G) in MiB."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kMGT]i?|)\s*", pool.memory)
    if not found or found.group(2) == "ki":
        raise DeployConfigError(
            f"deploy.pools.{pool.id}.memory: {pool.memory!r} is not a memory quantity (2Gi, 512Mi)"
        )
    size = Decimal(found.group(1)) * _MEMORY_UNITS[found.group(2)] / (1024**2)
    if size <= 0 or size != size.to_integral_value():
        raise DeployConfigError(
            f"deploy.pools.{pool.id}.memory: {pool.memory!r} is not a whole number of MiB"
        )
    return int(size)


def _cores(units: int) -> str:
    return f"{Decimal(units) / 1024:g}"


def _mib(size: int) -> str:
    return f"{size // 1024}Gi" if size % 1024 == 0 else f"{size}Mi"


def task_size(pool: PoolConfig, launch: Launch) -> tuple[int, int]:
    """(cpu units, memory MiB) of the pool's task; on Fargate one of its sizes."""
    cpu, memory = cpu_units(pool), memory_mib(pool)
    if launch != "FARGATE":
        return cpu, memory
    where = f"deploy.pools.{pool.id}"
    allowed = FARGATE_SIZES.get(cpu)
    if allowed is None:
        sizes = ", ".join(_cores(u) for u in FARGATE_SIZES)
        raise DeployConfigError(
            f"{where}.cpu: Fargate runs cpu {sizes}, not {pool.cpu} ({cpu} units)"
        )
    if memory not in allowed:
        raise DeployConfigError(
            f"{where}.memory: Fargate runs cpu {_cores(cpu)} with memory {_mib(allowed[0])}"
            f"-{_mib(allowed[-1])} in {_mib(allowed.step)} steps, not {pool.memory}"
        )
    return cpu, memory


@dataclass(frozen=True)
class PoolImages:
    """The serving image of a pool, and its adapter server's for fronted pools."""

    image: str
    adapter: str | None = None


def pool_images(config: DeployConfig) -> dict[str, PoolImages]:
    """Every pool's images, or a one-line error naming the missing setting."""
    found: dict[str, PoolImages] = {}
    for pool in config.pools:
        layout = pool_layout(pool.adapter)
        if layout == "worker":
            what = f"the mpfn-worker image ort pool {pool.id} runs without its own image"
            worker = pool.image or require(config.images.worker, "images.worker", "aws", what)
            found[pool.id] = PoolImages(worker)
            continue
        what = f"the {pool.adapter} backend's image"
        image = require(pool.image, f"pools.{pool.id}.image", "aws", what)
        adapter = None
        if layout == "fronted":
            setting = f"images.adapters.{pool.adapter}"
            what = f"the mpfn-adapter-{pool.adapter} image"
            adapter = require(config.images.adapters.get(pool.adapter), setting, "aws", what)
        found[pool.id] = PoolImages(image, adapter)
    return found


def check_pools(config: DeployConfig) -> dict[str, PoolImages]:
    """Everything the aws target needs to run `deploy.pools`, checked before any I/O:
    one line naming the setting when something is missing or ECS cannot run it."""
    if not config.pools:
        return {}
    ids = ", ".join(p.id for p in config.pools)
    if config.aws.vpc is None:
        raise DeployConfigError(
            f"deploy.aws.vpc is required for --target aws with pools ({ids}): their tasks "
            "get private addresses in its subnets (set subnet_ids and security_group_ids)"
        )
    secured = [p.id for p in config.pools if p.tls_secret or p.token_secret or p.client_certs]
    if secured:
        raise DeployConfigError(
            f"deploy.pools: {', '.join(secured)} name Kubernetes Secrets (tls_secret, "
            "client_certs, token_secret), which the aws target cannot mount; its pools "
            "serve plain HTTP inside the VPC"
        )
    if re.match(r"^(aws|ecs|fargate)", config.prefix()):
        raise DeployConfigError(
            f"deploy.name: ECS capacity provider names cannot start with aws, ecs or fargate "
            f"({config.prefix()}-gpu); pick another name"
        )
    gpu = []
    for pool in config.pools:
        launch = launch_of(pool)
        task_size(pool, launch)
        if launch == "EC2":
            gpu.append(pool.id)
    if gpu:
        require(
            config.aws.ecs.gpu_ami,
            "aws.ecs.gpu_ami",
            "aws",
            f"an ECS-optimized GPU AMI id for GPU pools {', '.join(gpu)}",
        )
    return pool_images(config)


# -- task definitions ---------------------------------------------------------------------


def _env(values: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in sorted(values.items())]


def _mpfn_args(pool: PoolConfig, state: str, cache_dir: str, *extra: str) -> list[str]:
    return [
        *("--host", "0.0.0.0", "--port", str(pool.port)),
        *extra,
        *("--state", state, "--cache-dir", cache_dir),
    ]


def container_definitions(
    pool: PoolConfig, images: PoolImages, *, state: str, log_group: str, region: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(containerDefinitions, volumes) of the pool's task: the same containers as its
    Kubernetes pod, the one serving `pool.port` first. A GPU pool's serving backend (or
    worker) requests its GPUs."""
    logs = {
        "logDriver": "awslogs",
        "options": {
            "awslogs-group": log_group,
            "awslogs-region": region,
            "awslogs-stream-prefix": pool.id,
        },
    }
    port = [{"containerPort": pool.port, "protocol": "tcp"}]
    gpus = [{"type": "GPU", "value": str(pool.gpus)}] if pool.gpus else []
    mpfn_env = {"MPFN_STATE": state, "MPFN_POOL_ID": pool.id, "PORT": str(pool.port)}
    layout = pool_layout(pool.adapter)
    if layout == "worker":
        worker = {
            "name": "worker",
            "image": images.image,
            "essential": True,
            "command": _mpfn_args(pool, state, TMP_CACHE) + list(pool.args),
            "environment": _env(mpfn_env),
            "portMappings": port,
            "resourceRequirements": gpus,
            "logConfiguration": logs,
        }
        return [worker], []
    backend_port = pool.port if layout == "direct" else pool.backend_port
    backend: dict[str, Any] = {
        "name": "backend",
        "image": images.image,
        "essential": True,
        "command": list(pool.args),
        "environment": _env({"MPFN_POOL_ID": pool.id, "PORT": str(backend_port)}),
        "portMappings": port if layout == "direct" else [],
        "resourceRequirements": gpus,
        "logConfiguration": logs,
    }
    if layout == "direct":
        return [backend], []
    assert images.adapter is not None, "a fronted pool has an adapter server image"
    shared = [{"sourceVolume": "cache", "containerPath": CACHE_DIR, "readOnly": False}]
    backend["mountPoints"] = shared
    backend_url = f"http://127.0.0.1:{backend_port}"
    adapter = {
        "name": "adapter",
        "image": images.adapter,
        "essential": True,
        "command": _mpfn_args(pool, state, CACHE_DIR, "--backend", backend_url)
        + list(pool.adapter_args),
        "environment": _env(mpfn_env),
        "portMappings": port,
        "mountPoints": shared,
        "logConfiguration": logs,
    }
    return [adapter, backend], [{"name": "cache"}]


def _pairs(items: Iterable[Mapping[str, Any]], *keys: str, **defaults: Any) -> list[list[Any]]:
    return sorted([item.get(k, defaults.get(k)) for k in keys] for item in items)


def project_container(container: Mapping[str, Any]) -> dict[str, Any]:
    """The settings deploy gives a container, as ECS returns them or as sent (the image
    aside): what a task definition is compared on."""
    log = container.get("logConfiguration") or {}
    return {
        "name": container["name"],
        "essential": bool(container.get("essential", True)),
        "command": list(container.get("command") or []),
        "environment": _pairs(container.get("environment") or [], "name", "value"),
        "portMappings": _pairs(
            container.get("portMappings") or [], "containerPort", "protocol", protocol="tcp"
        ),
        "resourceRequirements": _pairs(
            container.get("resourceRequirements") or [], "type", "value"
        ),
        "mountPoints": _pairs(
            container.get("mountPoints") or [],
            "sourceVolume",
            "containerPath",
            "readOnly",
            readOnly=False,
        ),
        "log": [log.get("logDriver"), dict(sorted((log.get("options") or {}).items()))],
    }


def task_spec(
    containers: Sequence[Mapping[str, Any]], volumes: Sequence[Mapping[str, Any]]
) -> tuple[tuple[tuple[str, str], ...], str]:
    """(images, spec) of a task definition, from what is sent or what ECS describes."""
    ordered = sorted(containers, key=lambda c: str(c["name"]))
    images = tuple((str(c["name"]), str(c.get("image", ""))) for c in ordered)
    spec = canonical(
        {
            "containers": [project_container(c) for c in ordered],
            "volumes": sorted(str(v["name"]) for v in volumes),
        }
    )
    return images, spec


# -- policies -----------------------------------------------------------------------------


def _policy(*statements: Statement) -> str:
    return canonical({"Version": "2012-10-17", "Statement": list(statements)})


def ecr_repositories(images: Iterable[str]) -> list[str]:
    """ARNs of the ECR repositories among `images` (others need no permission)."""
    arns = set()
    for image in images:
        found = _ECR_IMAGE.match(image)
        if found:
            partition = "aws-cn" if ".amazonaws.com.cn/" in image else "aws"
            arns.add(
                f"arn:{partition}:ecr:{found['region']}:{found['account']}:"
                f"repository/{found['repo']}"
            )
    return sorted(arns)


def execution_policy(scope: Scope, log_group: str, images: Iterable[str]) -> str:
    """What ECS does for the tasks: write their logs to the pools' group, pull their
    images from ECR."""
    group = f"arn:aws:logs:{scope.region}:{scope.account}:log-group:{log_group}"
    statements: list[Statement] = [
        {
            "Sid": "WritePoolLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": f"{group}:*",
        }
    ]
    repositories = ecr_repositories(images)
    if repositories:
        statements += [
            {
                "Sid": "EcrLogin",
                "Effect": "Allow",
                "Action": "ecr:GetAuthorizationToken",
                "Resource": "*",
            },
            {
                "Sid": "PullPoolImages",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                ],
                "Resource": repositories,
            },
        ]
    return _policy(*statements)


def task_policy(scope: Scope) -> str:
    """What the pools' containers may do: read the state (models and their artifacts)."""
    return _policy(
        scope.list_statement(),
        {
            "Sid": "ReadState",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": scope.objects(),
        },
    )


def host_policy(scope: Scope, cluster: str) -> str:
    """What the ECS agent on a GPU instance does: join the cluster, poll for and report on
    its tasks (the least-privilege form of AmazonEC2ContainerServiceforEC2Role)."""
    ecs = f"arn:aws:ecs:{scope.region}:{scope.account}"
    return _policy(
        {
            "Sid": "JoinCluster",
            "Effect": "Allow",
            "Action": [
                "ecs:DeregisterContainerInstance",
                "ecs:RegisterContainerInstance",
                "ecs:SubmitAttachmentStateChanges",
                "ecs:SubmitContainerStateChange",
                "ecs:SubmitTaskStateChange",
            ],
            "Resource": f"{ecs}:cluster/{cluster}",
        },
        {
            "Sid": "RunTasks",
            "Effect": "Allow",
            "Action": [
                "ecs:Poll",
                "ecs:StartTelemetrySession",
                "ecs:UpdateContainerInstancesState",
            ],
            "Resource": f"{ecs}:container-instance/{cluster}/*",
        },
        {
            "Sid": "FindEndpoint",
            "Effect": "Allow",
            "Action": "ecs:DiscoverPollEndpoint",
            "Resource": "*",
        },
    )


def user_data(cluster: str) -> str:
    """The GPU instances' boot script: join `cluster` with GPU support."""
    return (
        "#!/bin/bash\n"
        f"echo ECS_CLUSTER={cluster} >> /etc/ecs/ecs.config\n"
        "echo ECS_ENABLE_GPU_SUPPORT=true >> /etc/ecs/ecs.config\n"
    )


# -- placements ---------------------------------------------------------------------------


def placements(config: DeployConfig, region: str) -> list[PoolPlacement]:
    """Where each pool is reached (its Cloud Map name) and sized (its ECS service), known
    from the config alone."""
    names = EcsNames(config.prefix())
    scaler: dict[str, str] = {"kind": "ecs", "region": region, "cluster": names.cluster}
    if config.aws.endpoint_url:
        scaler["api_url"] = config.aws.endpoint_url
    return [
        PoolPlacement(p, "aws", region, names.endpoint(p), scaler={**scaler, "service": p.id})
        for p in config.pools
    ]
