"""Where a deployed pool is reached, and the pool document that registers it. Pure.

A target that runs pools (`k8s` Deployments, `aws` ECS services, `gcp` Cloud Run
services) says, for each pool of its config, where the router and the warmer reach it:
a `PoolPlacement`. Deploy turns placements into pool documents (`pool_document`) and
registers them in the state with the pool's site, hardware, cost and capacity, so a
deployed pool is routable without a hand-typed `mpfn pools add`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mpfn.deploy.spec import BACKEND_PORTS, PoolConfig
from mpfn.documents import Pool


@dataclass(frozen=True)
class PoolPlacement:
    """How one deployed pool is reached. `endpoint` is None until the target has created
    what gives it an address (a Cloud Run URL is known only once the service exists)."""

    pool: PoolConfig
    cloud: str  # a `mpfn.documents.Cloud`: aws, gcp, onprem, local
    region: str
    endpoint: str | None
    auth: dict[str, Any] | None = None  # a `PoolAuth` as a mapping (references only)
    tls: dict[str, Any] | None = None  # a `PoolTLS` as a mapping (references only)
    options: dict[str, Any] = field(default_factory=dict)
    # where its size is set (`PoolScaling` without bounds: those come from the config)
    scaler: dict[str, Any] | None = None


def pool_document(placement: PoolPlacement, site: str | None) -> Pool | None:
    """The pool document registering `placement` (None while it has no endpoint)."""
    if placement.endpoint is None:
        return None
    pool = placement.pool
    doc: dict[str, Any] = {
        "id": pool.id,
        "cloud": placement.cloud,
        "region": placement.region,
        "adapter": pool.adapter,
        "endpoint": placement.endpoint,
        "hardware": list(pool.hardware),
        "cost_per_hour": pool.cost_per_hour,
        "capacity": pool.capacity,
        "adapter_server": pool.adapter in BACKEND_PORTS,
    }
    if site is not None:
        doc["site"] = site
    if placement.auth is not None:
        doc["auth"] = placement.auth
    if placement.tls is not None:
        doc["tls"] = placement.tls
    if placement.options:
        doc["options"] = placement.options
    if pool.max_replicas is not None and placement.scaler is not None:
        doc["scaling"] = {
            **placement.scaler,
            "min_replicas": pool.min_replicas,
            "max_replicas": pool.max_replicas,
        }
    return Pool.model_validate(doc)
