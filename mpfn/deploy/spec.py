"""The `deploy:` section of mpfn.yaml, layered and validated before anything is touched.

Layering, lowest to highest: the `deploy:` section, then `deploy.stages.<stage>` merged
over it (mappings merge key by key, everything else replaces), then CLI flags
(`--target`, `--region`, `--set PATH=VALUE`). The result is validated into a frozen
`DeployConfig`; each target then checks what it needs (`require`, `require_cloud_settings`:
an AWS region, a GCP project, images for Kubernetes pools), so a bad config fails with one
line, naming everything missing at once, before any resource is created. This module
performs no I/O beyond what the caller passes in (and looking for the cloud SDKs).
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mpfn.deploy.errors import DeployFailure
from mpfn.state import describe_validation_error

DNS_NAME = r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$"
SITE_NAME = r"^[a-z][a-z0-9-]{0,15}$"
RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827)
Hardware = Literal["cpu", "nvidia", "amd", "intel", "tpu", "inferentia", "apple"]


class DeployConfigError(DeployFailure, ValueError):
    """The deploy configuration is invalid; the message names the offending setting."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RouterConfig(_Section):
    memory_mb: int = Field(default=512, ge=128, le=10240)
    architecture: Literal["x86_64", "arm64"] = Field(
        default="x86_64", description="Lambda architecture of the router function (aws)"
    )
    timeout_s: int = Field(default=30, ge=1, le=900)
    image: str | None = Field(default=None, description="Router container image (k8s, gcp)")
    min_instances: int = Field(default=1, ge=0, le=1000)
    max_instances: int = Field(default=10, ge=1, le=1000)
    env: dict[str, str] = Field(default_factory=dict)
    grpc_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="k8s: also serve the v2 gRPC API on this container port (Service port "
        "`grpc`); Lambda Function URLs cannot serve gRPC",
    )

    @model_validator(mode="after")
    def _bounds(self) -> RouterConfig:
        if self.min_instances > self.max_instances:
            raise ValueError("min_instances must not exceed max_instances")
        return self


class WarmerConfig(_Section):
    image: str | None = Field(
        default=None, description="Warmer container image (ECR on aws, Artifact Registry on gcp)"
    )
    every_minutes: int = Field(default=5, ge=1, le=1440)
    memory_mb: int = Field(default=1024, ge=128, le=10240)
    timeout_s: int = Field(default=300, ge=1, le=900)


def _cpu_only() -> list[Hardware]:
    return ["cpu"]


#: The port each backend that must be fronted by an adapter server listens on by default
#: (its own REST API); the adapter server in the same pod forwards to it.
BACKEND_PORTS: dict[str, int] = {"tfserving": 8501, "torchserve": 8080}


class PoolConfig(_Section):
    """An adapter pool that deploy runs as long-lived containers (k8s).

    `image` is what the pool runs: for `ort` pools the worker (default: `images.worker`),
    for every other kind the backend. `tfserving` and `torchserve` backends listen on
    `backend_port` (default: their REST port) behind an adapter server on `port`.
    """

    id: str = Field(pattern=DNS_NAME)
    adapter: str = Field(default="ort", pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    image: str | None = None
    port: int = Field(default=8000, ge=1, le=65535)
    backend_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port of the backend behind the adapter server (tfserving: 8501, "
        "torchserve: 8080)",
    )
    replicas: int = Field(default=1, ge=0, le=1000)
    min_replicas: int = Field(
        default=0, ge=0, le=1000, description="With max_replicas: the warmer's lower bound"
    )
    max_replicas: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="Makes the pool scalable: the warmer sizes it in [min_replicas, this] and "
        "routers wake it from zero; `replicas` is then only its first size",
    )
    hardware: list[Hardware] = Field(default_factory=_cpu_only, min_length=1)
    cost_per_hour: float = Field(default=0.0, ge=0)
    capacity: int = Field(default=4, ge=1)
    cpu: str = "1"
    memory: str = "2Gi"
    gpus: int = Field(default=0, ge=0)
    args: list[str] = Field(default_factory=list, description="Extra arguments of the image")
    adapter_args: list[str] = Field(
        default_factory=list,
        description="Extra arguments of the adapter server (tfserving, torchserve pools)",
    )
    tls_secret: str | None = Field(
        default=None,
        pattern=DNS_NAME,
        description="k8s: a kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt): the pool "
        "serves HTTPS with it; the router and warmer trust its ca.crt",
    )
    client_certs: bool = Field(
        default=False,
        description="k8s: require client certificates signed by tls_secret's ca.crt (mTLS); "
        "the router and warmer present k8s.client_tls_secret",
    )
    token_secret: str | None = Field(
        default=None,
        pattern=DNS_NAME,
        description="k8s: a Secret with `tokens` (the inference tokens the pool accepts, one "
        "per line), `token` (the one the router and warmer present) and `admin-token` (the "
        "management API's, the warmer's only)",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_backend_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("backend_port") is None:
            port = BACKEND_PORTS.get(str(data.get("adapter", "ort")))
            if port is not None:
                return {**data, "backend_port": port}
        return data

    @model_validator(mode="after")
    def _bounds(self) -> PoolConfig:
        if self.max_replicas is not None and not (
            self.min_replicas <= self.replicas <= self.max_replicas
        ):
            raise ValueError(
                f"replicas {self.replicas} must lie in [min_replicas {self.min_replicas}, "
                f"max_replicas {self.max_replicas}]"
            )
        return self

    @model_validator(mode="after")
    def _sidecar_settings(self) -> PoolConfig:
        fronted = self.adapter in BACKEND_PORTS
        if not fronted and (self.backend_port is not None or self.adapter_args):
            raise ValueError(
                "backend_port and adapter_args apply only to pools with an adapter server "
                f"in front of the backend ({', '.join(sorted(BACKEND_PORTS))}), "
                f"not to {self.adapter} pools"
            )
        secured = self.tls_secret or self.token_secret or self.client_certs
        if secured and not (fronted or self.adapter == "ort"):
            raise ValueError(
                "tls_secret, client_certs and token_secret apply to pools mpfn serves (ort, "
                f"{', '.join(sorted(BACKEND_PORTS))}); a {self.adapter} backend serves its own "
                "TLS and credentials: give the registered pool `auth` and `tls` references"
            )
        if self.client_certs and not self.tls_secret:
            raise ValueError("client_certs needs tls_secret (its ca.crt signs client certificates)")
        if fronted and self.backend_port == self.port:
            raise ValueError(
                f"backend_port {self.port} is the adapter server's port: the backend and "
                "the adapter server share the pod, give them different ports"
            )
        return self


class ImagesConfig(_Section):
    """Images of mpfn's pool servers (`mpfn build`); the router and warmer have their own."""

    worker: str | None = Field(
        default=None, description="ORT worker image (mpfn-worker) for ort pools without one"
    )
    adapters: dict[str, str] = Field(
        default_factory=dict,
        description="Adapter server image by backend kind (mpfn-adapter-tfserving, ...)",
    )

    @model_validator(mode="after")
    def _known_kinds(self) -> ImagesConfig:
        unknown = sorted(set(self.adapters) - set(BACKEND_PORTS))
        if unknown:
            raise ValueError(
                f"adapters: no adapter server image applies to {', '.join(unknown)} "
                f"(only {', '.join(sorted(BACKEND_PORTS))} pools have one)"
            )
        return self


SUBNET_ID = r"^subnet-[0-9a-f]{8,17}$"
SECURITY_GROUP_ID = r"^sg-[0-9a-f]{8,17}$"


def _distinct(values: list[str], what: str) -> None:
    dupes = sorted({v for v in values if values.count(v) > 1})
    if dupes:
        raise ValueError(f"{what} lists {', '.join(dupes)} more than once")


class AwsVpcConfig(_Section):
    """Subnets and security groups the router and warmer Lambdas attach to (VpcConfig)."""

    subnet_ids: list[str] = Field(default_factory=list, max_length=16)
    security_group_ids: list[str] = Field(default_factory=list, max_length=5)
    vpc_id: str | None = Field(
        default=None,
        pattern=r"^vpc-[0-9a-f]{8,17}$",
        description="The subnets' VPC (pools' DNS namespace); default: looked up from the "
        "first subnet",
    )

    @model_validator(mode="after")
    def _complete(self) -> AwsVpcConfig:
        if not self.subnet_ids:
            raise ValueError(
                "subnet_ids is empty: a Lambda attaches to at least one subnet "
                "(remove the vpc section to run outside a VPC)"
            )
        if not self.security_group_ids:
            raise ValueError(
                "subnet_ids needs security_group_ids: a Lambda in a VPC needs at least "
                "one security group allowing egress to the pools"
            )
        for subnet in self.subnet_ids:
            if not re.match(SUBNET_ID, subnet):
                raise ValueError(f"subnet_ids: {subnet!r} is not a subnet id (subnet-...)")
        for group in self.security_group_ids:
            if not re.match(SECURITY_GROUP_ID, group):
                raise ValueError(
                    f"security_group_ids: {group!r} is not a security group id (sg-...)"
                )
        _distinct(self.subnet_ids, "subnet_ids")
        _distinct(self.security_group_ids, "security_group_ids")
        return self


class AwsEcsConfig(_Section):
    """How the aws target runs `deploy.pools`: ECS services, on Fargate (CPU pools) or on
    an EC2 GPU capacity provider (nvidia pools)."""

    gpu_instance_type: str = Field(
        default="g5.xlarge",
        pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$",
        description="EC2 instance type of the GPU capacity (GPU pools)",
    )
    gpu_ami: str | None = Field(
        default=None,
        pattern=r"^ami-[0-9a-f]{8,17}$",
        description="An ECS-optimized GPU AMI id (required with GPU pools)",
    )
    gpu_max_instances: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="Upper bound of the GPU Auto Scaling group (default: the GPU pools' "
        "replicas, at least 1)",
    )


class AwsConfig(_Section):
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    state: str | None = Field(default=None, description="s3://BUCKET/PREFIX (default: state)")
    auth: Literal["AWS_IAM", "NONE"] = "AWS_IAM"
    log_retention_days: int = 14
    endpoint_url: str | None = None
    profile: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    vpc: AwsVpcConfig | None = Field(
        default=None, description="Run the router and warmer Lambdas in these subnets"
    )
    ecs: AwsEcsConfig = Field(
        default_factory=AwsEcsConfig, description="How deploy.pools run (ECS)"
    )

    @model_validator(mode="after")
    def _retention(self) -> AwsConfig:
        if self.log_retention_days not in RETENTION_DAYS:
            raise ValueError(
                f"log_retention_days must be one of {', '.join(map(str, RETENTION_DAYS))}"
            )
        return self


class GcpEndpoints(_Section):
    run: str | None = None
    scheduler: str | None = None
    storage: str | None = None
    iam: str | None = None
    resourcemanager: str | None = None


class GcpVpcConfig(_Section):
    """How the router service and warmer job reach private networks: Direct VPC egress
    (`network`, optionally `subnetwork`) or a Serverless VPC Access `connector`."""

    network: str | None = Field(default=None, description="VPC network (name or path)")
    subnetwork: str | None = Field(default=None, description="Subnetwork of `network`")
    connector: str | None = Field(
        default=None, description="Serverless VPC Access connector (name or full path)"
    )
    egress: Literal["private-ranges-only", "all-traffic"] = "private-ranges-only"

    @model_validator(mode="after")
    def _one_way(self) -> GcpVpcConfig:
        if self.subnetwork and not self.network:
            raise ValueError("subnetwork applies to Direct VPC egress: set network too")
        if bool(self.network) == bool(self.connector):
            raise ValueError(
                "set exactly one of network (Direct VPC egress) and connector "
                "(Serverless VPC Access)"
            )
        return self


class GcpConfig(_Section):
    project: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
    region: str | None = Field(default=None, pattern=r"^[a-z]+-[a-z]+\d$")
    state: str | None = Field(default=None, description="gs://BUCKET/PREFIX (default: state)")
    public: bool = False
    vpc: GcpVpcConfig | None = Field(
        default=None, description="Egress of the router and warmer into a VPC network"
    )
    gpu_type: str = Field(
        default="nvidia-l4",
        pattern=r"^[a-z][a-z0-9-]{0,62}$",
        description="Cloud Run accelerator of GPU pools (hardware nvidia, gpus 1)",
    )
    endpoints: GcpEndpoints = Field(default_factory=GcpEndpoints)


class K8sConfig(_Section):
    namespace: str = Field(default="mpfn", pattern=DNS_NAME)
    out: str = "k8s"
    state: str | None = Field(default=None, description="State URL the pods use")
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    cpu_target_percent: int = Field(default=70, ge=1, le=100)
    credentials_secret: str | None = Field(default=None, pattern=DNS_NAME)
    client_tls_secret: str | None = Field(
        default=None,
        pattern=DNS_NAME,
        description="A kubernetes.io/tls Secret: the client certificate the router and warmer "
        "present to pools with client_certs",
    )


class LocalConfig(_Section):
    port: int = Field(default=8080, ge=0, le=65535)
    keep_alive_s: float = Field(default=600.0, gt=0)
    runtime: Literal["processes", "containers"] = "processes"
    state: str | None = None


class DeployConfig(_Section):
    target: str | None = None
    name: str = Field(default="mpfn", pattern=r"^[a-z][a-z0-9-]{0,19}$")
    stage: str = Field(default="dev", pattern=r"^[a-z][a-z0-9-]{0,11}$")
    site: str | None = Field(
        default=None,
        pattern=SITE_NAME,
        description="The site this config deploys (one entry of deploy.sites); set by the "
        "sites loader, never in the file",
    )
    build_dir: str = Field(
        default_factory=lambda: default_build_dir(),
        description="Where the aws router package and its wheels are built (a relative path "
        "is under the project; default: mpfn's cache directory, outside the checkout)",
    )
    router: RouterConfig = Field(default_factory=RouterConfig)
    warmer: WarmerConfig = Field(default_factory=WarmerConfig)
    images: ImagesConfig = Field(default_factory=ImagesConfig)
    pools: list[PoolConfig] = Field(default_factory=list)
    aws: AwsConfig = Field(default_factory=AwsConfig)
    gcp: GcpConfig = Field(default_factory=GcpConfig)
    k8s: K8sConfig = Field(default_factory=K8sConfig)
    local: LocalConfig = Field(default_factory=LocalConfig)

    @model_validator(mode="after")
    def _unique_pools(self) -> DeployConfig:
        ids = [p.id for p in self.pools]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate pool id(s): {', '.join(dupes)}")
        mtls = [p.id for p in self.pools if p.client_certs]
        if mtls and not self.k8s.client_tls_secret:
            raise ValueError(
                f"pool(s) {', '.join(mtls)} require client certificates: set "
                "k8s.client_tls_secret (the certificate the router and warmer present)"
            )
        return self

    def prefix(self) -> str:
        """`<name>-<stage>[-<site>]`: the stem of every resource name."""
        stem = f"{self.name}-{self.stage}"
        return f"{stem}-{self.site}" if self.site else stem

    def warmer_environment(self, state: str) -> tuple[tuple[str, str], ...]:
        """The warmer's variables: its state, and (for a site) the site whose pools it warms."""
        env = {"MPFN_STATE": state, **({"MPFN_WARM_SITE": self.site} if self.site else {})}
        return tuple(sorted(env.items()))

    def record_stage(self) -> str:
        """The deployment record's name: the stage, and the site when there is one."""
        return f"{self.stage}@{self.site}" if self.site else self.stage


def default_build_dir() -> str:
    """`$XDG_CACHE_HOME/mpfn/router-build` (default `~/.cache/...`): kept between runs,
    so fetched wheels are reused, and never inside the project."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return str(Path(base) / "mpfn" / "router-build")


def merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; any other value in `overlay` replaces the base one."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def set_path(data: dict[str, Any], assignment: str) -> dict[str, Any]:
    """Apply one `--set a.b.c=VALUE` (VALUE parsed as YAML) to a copy of `data`."""
    path, sep, raw = assignment.partition("=")
    parts = [p for p in path.strip().split(".") if p]
    if not sep or not parts:
        raise DeployConfigError(
            f"--set {assignment!r}: expected PATH=VALUE, e.g. aws.region=eu-west-1"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    overlay: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        overlay = {part: overlay}
    return merge(data, overlay)


def layer(
    section: Any,
    *,
    stage: str | None = None,
    target: str | None = None,
    region: str | None = None,
    assignments: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The merged raw settings: file section < stage < CLI flags."""
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise DeployConfigError("mpfn.yaml: 'deploy' must be a mapping")
    data = {k: v for k, v in section.items() if k != "stages"}
    stages = section.get("stages") or {}
    if not isinstance(stages, dict):
        raise DeployConfigError("mpfn.yaml: 'deploy.stages' must be a mapping of stage names")
    stage = stage or str(data.get("stage") or "dev")
    if stage in stages:
        overlay = stages[stage] or {}
        if not isinstance(overlay, dict):
            raise DeployConfigError(f"mpfn.yaml: 'deploy.stages.{stage}' must be a mapping")
        data = merge(data, overlay)
    data["stage"] = stage
    if target:
        data["target"] = target
    for assignment in assignments:
        data = set_path(data, assignment)
    if region:
        chosen = data.get("target")
        if chosen not in ("aws", "gcp"):
            raise DeployConfigError(f"--region applies to the aws and gcp targets, not {chosen}")
        data = merge(data, {chosen: {"region": region}})
    return data


def load_deploy_config(
    file_options: dict[str, Any],
    *,
    stage: str | None = None,
    target: str | None = None,
    region: str | None = None,
    assignments: tuple[str, ...] = (),
) -> DeployConfig:
    """Validate the layered `deploy:` settings of a parsed mpfn.yaml."""
    data = layer(
        file_options.get("deploy"),
        stage=stage,
        target=target,
        region=region,
        assignments=assignments,
    )
    if data.get("sites"):
        raise DeployConfigError(
            f"mpfn.yaml deploys sites ({', '.join(map(str, data['sites']))}): run `mpfn deploy` "
            "without --target or --region (every site), or with --site NAME"
        )
    data.pop("sites", None)
    try:
        return DeployConfig.model_validate(data)
    except ValidationError as exc:
        raise DeployConfigError(describe_validation_error("deploy config", exc)) from None


#: Settings a flag of `mpfn deploy` sets, named first in what a missing one says.
FLAGS = {"aws.region": "--region REGION", "gcp.region": "--region REGION"}

#: The client library each cloud target needs, by import name, and the extra that has it.
SDKS = {"aws": (("boto3", "boto3"),), "gcp": (("google.cloud.run_v2", "google-cloud-run"),)}


def missing(setting: str, target: str, what: str = "") -> str:
    """What a missing setting says: where to set it (and, given `what`, what it is for)."""
    purpose = f"{what}; " if what else ""
    flag = f"with {FLAGS[setting]}, " if setting in FLAGS else ""
    return (
        f"deploy.{setting} is required for --target {target} ({purpose}set it {flag}in "
        f"mpfn.yaml, under deploy.stages.<stage>, or with --set {setting}=...)"
    )


def require(value: str | None, setting: str, target: str, what: str = "") -> str:
    """A setting the target cannot do without, or a one-line error saying where to set it
    (and, given `what`, what it is for)."""
    if value:
        return value
    raise DeployConfigError(missing(setting, target, what))


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


def cloud_problems(config: DeployConfig, state: str, target: str) -> list[str]:
    """Every setting (and client library) the aws or gcp target lacks, each one line."""
    from mpfn.extras import install_hint

    problems: list[str] = []
    if target == "aws":
        if not config.aws.region:
            problems.append(missing("aws.region", target))
        url = config.aws.state or state
        if not url.startswith("s3://"):
            problems.append(
                f"--target aws needs an s3:// state (got {url}); set deploy.aws.state or state"
            )
    elif target == "gcp":
        gcp = config.gcp
        needed = (
            ("gcp.project", gcp.project),
            ("gcp.region", gcp.region),
            ("router.image", config.router.image),
        )
        problems += [missing(setting, target) for setting, value in needed if not value]
        url = gcp.state or state
        if not url.startswith("gs://"):
            problems.append(
                f"--target gcp needs a gs:// state (got {url}); set deploy.gcp.state or state"
            )
    for module, package in SDKS.get(target, ()):
        if not _installed(module):
            problems.append(f"{package} is not installed: {install_hint(target)}")
    return problems


def require_cloud_settings(config: DeployConfig, state: str, target: str) -> None:
    """Report everything the aws or gcp target lacks in one error, not one per run."""
    problems = cloud_problems(config, state, target)
    if len(problems) == 1:
        raise DeployConfigError(problems[0])
    if problems:
        numbered = "; ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))
        raise DeployConfigError(f"--target {target} is missing {len(problems)} things: {numbered}")
