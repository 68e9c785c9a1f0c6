"""Typed state documents (pydantic v2): model versions, pools and routing policies.

These are the only shapes mpfn writes to the store. They validate on read and write so an
invalid document is rejected with an error naming the field. Keys are derived here too,
so every component agrees on where a document lives.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    field_validator,
    model_validator,
)

from mpfn.poolauth.refs import parse_ref

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
#: A site name: an AWS or GCP region, a cluster, a machine (`aws-use1`, `onprem-a`).
SITE_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"
_NAME_RE = re.compile(NAME_PATTERN)

Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BF16",
    "BYTES",
]
Hardware = Literal["cpu", "nvidia", "amd", "intel", "tpu", "inferentia", "apple"]
Cloud = Literal["aws", "gcp", "azure", "onprem", "local"]
ModelFormat = Literal["onnx", "torchscript", "pytorch", "tensorflow", "gguf", "openai", "other"]


def _cpu_only() -> list[Hardware]:
    return ["cpu"]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Doc):
    """One named input or output tensor; -1 in `shape` means any size."""

    name: str = Field(min_length=1, max_length=256)
    datatype: Datatype
    shape: list[int]

    @field_validator("shape")
    @classmethod
    def _dims(cls, shape: list[int]) -> list[int]:
        if any(d < -1 for d in shape):
            raise ValueError("dimensions must be >= 0, or -1 for 'any size'")
        return shape


class ArtifactRef(_Doc):
    """Where a model's bytes live, pinned by content digest.

    `reference` is `oci-layout:<dir>` for the embedded local layout, or `HOST/REPO` of a
    registry; `digest` is the manifest digest and `blob_digest` the model file's layer.
    """

    reference: str = Field(min_length=1)
    tag: str
    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    blob_digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    size: int = Field(ge=0)
    media_type: str
    filename: str


class Batching(_Doc):
    """Adaptive batching of one model in mpfn's ONNX Runtime worker.

    Fields left unset take the worker's defaults (`--max-batch-size`,
    `--max-queue-delay-us`); `max_batch_size` 0 or 1 turns batching off for this model.
    """

    max_batch_size: int | None = Field(
        default=None, ge=0, le=4096, description="Rows run at once; 0/1 = off"
    )
    max_queue_delay_us: int | None = Field(
        default=None, ge=0, le=1_000_000, description="Longest a request waits for batch-mates"
    )
    preferred_batch_sizes: list[int] = Field(
        default_factory=list, description="Sizes sent as soon as they are reached"
    )

    @field_validator("preferred_batch_sizes")
    @classmethod
    def _sizes(cls, sizes: list[int]) -> list[int]:
        if any(size < 1 for size in sizes):
            raise ValueError("preferred batch sizes must be at least 1")
        return sorted(set(sizes))

    @model_validator(mode="after")
    def _within_max(self) -> Batching:
        top = self.max_batch_size
        if top is not None and top > 1 and any(s > top for s in self.preferred_batch_sizes):
            raise ValueError("preferred batch sizes cannot exceed max_batch_size")
        return self


class ModelVersion(_Doc):
    """One version of a model: what it is, where its artifact is, what it needs."""

    name: str = Field(pattern=NAME_PATTERN)
    version: str = Field(pattern=NAME_PATTERN)
    format: ModelFormat = "onnx"
    artifact: ArtifactRef | None = None
    inputs: list[TensorSpec] = Field(default_factory=list)
    outputs: list[TensorSpec] = Field(default_factory=list)
    hardware: list[Hardware] = Field(default_factory=_cpu_only, min_length=1)
    memory_mb: float = Field(default=0.0, ge=0)
    load_time_ms: float | None = Field(default=None, ge=0)
    labels: dict[str, str] = Field(default_factory=dict)
    # Left out of the serialized document when unset, so readers without it still parse it.
    batching: Batching | None = Field(default=None, exclude_if=lambda value: value is None)

    @property
    def key(self) -> str:
        return model_key(self.name, self.version)


def _ref(text: str | None) -> str | None:
    if text is not None:
        parse_ref(text)  # BadReference (a ValueError) says what a reference looks like
    return text


SecretRefText = Annotated[str, AfterValidator(_ref)]
_HEADER_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")
AuthType = Literal["bearer", "header", "sigv4", "google-id-token", "mtls"]


class PoolAuth(_Doc):
    """How the router and the warmer authenticate to a pool; secrets only by reference
    (`env:`, `file:`, `aws-sm:`, `gcp-sm:`, `k8s:`; see `mpfn.poolauth.refs`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    type: AuthType
    token: SecretRefText | None = Field(
        default=None, description="bearer / header: the credential, by reference"
    )
    header: str | None = Field(default=None, description="header: its name (e.g. x-api-key)")
    admin_token: SecretRefText | None = Field(
        default=None,
        description="The management API's token (warmer only), when not `token`",
    )
    region: str | None = Field(default=None, description="sigv4: the signing region")
    service: str = Field(default="execute-api", description="sigv4: the signing service")
    audience: str | None = Field(
        default=None, description="google-id-token: the audience (default: the endpoint)"
    )

    @model_validator(mode="after")
    def _complete(self) -> PoolAuth:
        if self.type in ("bearer", "header") and self.token is None:
            raise ValueError(f"auth type {self.type} needs a token reference")
        if self.type == "header" and (self.header is None or not _HEADER_RE.match(self.header)):
            raise ValueError("auth type header needs a header name (e.g. x-api-key)")
        if self.type == "sigv4" and not self.region:
            raise ValueError("auth type sigv4 needs a region")
        return self


class PoolTLS(_Doc):
    """TLS to a pool's https endpoint: a private CA, a client certificate (mTLS), the
    name to verify. PEM, by reference."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    ca: SecretRefText | None = Field(default=None, description="CA bundle (PEM) to trust")
    cert: SecretRefText | None = Field(default=None, description="client certificate (PEM)")
    key: SecretRefText | None = Field(default=None, description="client key (PEM)")
    server_name: str | None = Field(
        default=None, max_length=253, description="name to verify instead of the host"
    )

    @model_validator(mode="after")
    def _pair(self) -> PoolTLS:
        if (self.cert is None) != (self.key is None):
            raise ValueError("tls: a client certificate needs its key, and a key its certificate")
        return self


ScalerKind = Literal["ecs", "cloudrun", "k8s", "local"]


class PoolScaling(_Doc):
    """How a pool's size is changed (`mpfn.scaling`): the API that sets its replica count,
    the bounds the warmer keeps it in, and whether a router may wake it from zero."""

    kind: ScalerKind
    min_replicas: int = Field(default=0, ge=0, le=1000, description="0: may scale to zero")
    max_replicas: int = Field(default=1, ge=1, le=1000)
    wake: bool = Field(
        default=True, description="A router holding a request for it may ask for one replica"
    )
    region: str | None = Field(default=None, description="ecs: the service's region")
    cluster: str | None = Field(default=None, description="ecs: the cluster")
    service: str | None = Field(
        default=None,
        description="ecs: the service name; cloudrun: projects/P/locations/L/services/S",
    )
    namespace: str | None = Field(default=None, description="k8s: the Deployment's namespace")
    deployment: str | None = Field(default=None, description="k8s: the Deployment")
    api_url: str | None = Field(
        default=None,
        description="The API endpoint (ecs, cloudrun: an emulator; k8s: default in-cluster)",
    )

    @model_validator(mode="after")
    def _where(self) -> PoolScaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        needs = {
            "ecs": ("region", "cluster", "service"),
            "cloudrun": ("service",),
            "k8s": ("namespace", "deployment"),
            "local": (),
        }[self.kind]
        missing = [name for name in needs if not getattr(self, name)]
        if missing:
            raise ValueError(f"scaling kind {self.kind} needs {', '.join(missing)}")
        return self


class Pool(_Doc):
    """A place backends run: one adapter endpoint in one cloud/region/on-prem site."""

    # a secret pasted where a reference belongs must not come back in an error
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    id: str = Field(pattern=NAME_PATTERN)
    cloud: Cloud
    region: str = Field(default="local", min_length=1, max_length=64)
    site: str | None = Field(
        default=None,
        pattern=SITE_PATTERN,
        description="The deployment site the pool belongs to (routers prefer their own)",
    )
    adapter: str = Field(default="ort", pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    endpoint: HttpUrl
    hardware: list[Hardware] = Field(default_factory=_cpu_only, min_length=1)
    cost_per_hour: float = Field(default=0.0, ge=0)
    capacity: int = Field(default=1, ge=0, description="Concurrent requests it can serve")
    memory_mb: float = Field(default=0.0, ge=0, description="Model memory budget; 0 = unknown")
    models: list[str] = Field(
        default_factory=list,
        description="Models this pool serves; empty means any model whose artifact it can load",
    )
    adapter_server: bool = Field(
        default=False,
        description="The endpoint is an mpfn adapter server in front of the backend "
        "(python -m mpfn.adapters.<adapter>): it speaks the pool protocol (v2 + repository), "
        "so the router and the warmer talk to it like to any v2 pool",
    )

    auth: PoolAuth | None = Field(default=None, description="Credentials, by reference")
    tls: PoolTLS | None = Field(default=None, description="TLS settings of an https endpoint")
    management_url: HttpUrl | None = Field(
        default=None, description="The backend's management API, when not the endpoint"
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Adapter options (see the adapter's docs)"
    )
    scaling: PoolScaling | None = Field(
        default=None, description="How its replica count is set (`mpfn pools scale`)"
    )

    @model_validator(mode="after")
    def _secure_fields(self) -> Pool:
        if self.tls is not None and self.endpoint.scheme != "https":
            raise ValueError("tls applies to https endpoints only")
        mtls = self.auth is not None and self.auth.type == "mtls"
        if mtls and (self.tls is None or self.tls.cert is None):
            raise ValueError("auth type mtls needs tls.cert and tls.key")
        return self

    @property
    def key(self) -> str:
        return pool_key(self.id)


class Policy(_Doc):
    """How to route one model (or `default`): targets, limits, fallbacks and splits."""

    name: str = Field(pattern=NAME_PATTERN)
    latency_slo_ms: float | None = Field(default=None, gt=0)
    max_cost_per_1k: float | None = Field(default=None, ge=0, description="USD per 1k requests")
    objective: Literal["slo-then-cost", "fastest", "cheapest"] = "slo-then-cost"
    allowed_clouds: list[Cloud] = Field(default_factory=list, description="Empty = all")
    allowed_regions: list[str] = Field(default_factory=list, description="Empty = all")
    fallbacks: list[str] = Field(default_factory=list, description="Models to try next")
    version_weights: dict[str, float] = Field(default_factory=dict)
    timeout_ms: float = Field(default=30_000, gt=0)

    @field_validator("version_weights")
    @classmethod
    def _weights(cls, weights: dict[str, float]) -> dict[str, float]:
        for version, weight in weights.items():
            if not _NAME_RE.match(version):
                raise ValueError(f"invalid version name {version!r}")
            if weight < 0:
                raise ValueError(f"weight of version {version!r} must be >= 0")
        if weights and sum(weights.values()) <= 0:
            raise ValueError("at least one version weight must be > 0")
        return weights

    @model_validator(mode="after")
    def _no_self_fallback(self) -> Policy:
        if self.name in self.fallbacks:
            raise ValueError(f"policy {self.name!r} lists itself as a fallback")
        return self

    @property
    def key(self) -> str:
        return policy_key(self.name)


def model_key(name: str, version: str) -> str:
    return f"models/{name}/{version}.json"


def pool_key(pool_id: str) -> str:
    return f"pools/{pool_id}.json"


def policy_key(name: str) -> str:
    return f"policies/{name}.json"


SCHEMAS: dict[str, type[BaseModel]] = {
    "model-version": ModelVersion,
    "pool": Pool,
    "policy": Policy,
}
