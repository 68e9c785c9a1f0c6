"""The GCP shape of an mpfn deployment: resource types and prefix-scoped IAM conditions. Pure.

GCS bucket (state)   <- router account: read the prefix (and list only it), create usage/
                     <- warmer account: read/write under the prefix
Cloud Run service (router; IAM-only or public)
Cloud Run job (warmer; only the warmer account may run it) <- Cloud Scheduler job
all with optional VPC egress (Direct VPC: network/subnetwork; or a VPC Access connector)
Cloud Run service per pool (internal ingress; only the router and warmer accounts invoke
it; runs as the pools' account, which may read the prefix)

VPC access is kept as sorted (setting, value) pairs (see `gcp_vpc`), compared like any
other setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mpfn.deploy.models import Resource, observed_only

VpcAccess = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class GcsBucket(Resource):
    kind: ClassVar[str] = "gcp.storage.bucket"
    order: ClassVar[int] = 0
    holds_state: ClassVar[bool] = True
    immutable: ClassVar[frozenset[str]] = frozenset({"location"})
    location: str = ""
    foreign_objects: int = observed_only(0)


@dataclass(frozen=True)
class ServiceAccount(Resource):
    kind: ClassVar[str] = "gcp.iam.service-account"
    order: ClassVar[int] = 10
    display_name: str = ""


@dataclass(frozen=True)
class RoleGrant(Resource):
    """`member` holds `role` on the project under the condition titled `name`."""

    kind: ClassVar[str] = "gcp.iam.grant"
    order: ClassVar[int] = 20
    role: str = ""
    member: str = ""
    expression: str = ""


@dataclass(frozen=True)
class RunService(Resource):
    kind: ClassVar[str] = "gcp.run.service"
    order: ClassVar[int] = 30
    image: str = ""
    service_account: str = ""
    memory_mb: int = 512
    timeout_s: int = 30
    min_instances: int = 0
    max_instances: int = 10
    environment: tuple[tuple[str, str], ...] = ()
    vpc: VpcAccess = ()
    public: bool = False
    url: str = observed_only("")

    def outputs(self) -> dict[str, str]:
        return {"router_url": self.url} if self.url else {}


@dataclass(frozen=True)
class RunJob(Resource):
    kind: ClassVar[str] = "gcp.run.job"
    order: ClassVar[int] = 30
    image: str = ""
    service_account: str = ""
    memory_mb: int = 1024
    timeout_s: int = 300
    environment: tuple[tuple[str, str], ...] = ()
    vpc: VpcAccess = ()
    invoker: str = ""


@dataclass(frozen=True)
class RunPoolService(Resource):
    """A pool as a Cloud Run service. `image` runs the pool: the ORT worker, or the
    backend. With `adapter_image` the adapter server is the ingress container on `port`
    and the backend a sidecar on `backend_port`; otherwise `image` takes requests on
    `port`. `cpu`, `memory` and `gpus` are the limits of the container running `image`."""

    kind: ClassVar[str] = "gcp.run.pool"
    order: ClassVar[int] = 40
    image: str = ""
    args: tuple[str, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()
    adapter_image: str = ""
    adapter_args: tuple[str, ...] = ()
    adapter_environment: tuple[tuple[str, str], ...] = ()
    port: int = 8000
    backend_port: int = 0
    cpu: str = "1"
    memory: str = "2Gi"
    gpus: int = 0
    accelerator: str = ""
    gpu_zonal_redundancy: bool = False
    min_instances: int = 0
    max_instances: int = 1
    service_account: str = ""
    ingress: str = "internal"
    vpc: VpcAccess = ()
    invokers: tuple[str, ...] = ()
    url: str = observed_only("")


@dataclass(frozen=True)
class SchedulerJob(Resource):
    kind: ClassVar[str] = "gcp.scheduler.job"
    order: ClassVar[int] = 50
    schedule: str = ""
    job: str = ""
    service_account: str = ""


def state_conditions(bucket: str, prefix: str) -> tuple[str, str]:
    """(read/list condition, usage-write condition) confined to the state prefix."""
    objects = f"projects/_/buckets/{bucket}/objects/{prefix + '/' if prefix else ''}"
    listing = (
        f'(resource.name == "projects/_/buckets/{bucket}" && '
        f'api.getAttribute("storage.googleapis.com/objectListPrefix", "")'
        f'.startsWith("{prefix}"))'
    )
    return f'resource.name.startsWith("{objects}") || {listing}', (
        f'resource.name.startsWith("{objects}usage/")'
    )
