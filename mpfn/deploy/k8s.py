"""The `k8s` target: Kubernetes manifests rendered into a directory, planned file by file.

The remote side is the output directory (`deploy.k8s.out`, relative to the project): each
manifest file is a resource whose content hash is compared, so re-rendering an unchanged
config is a no-op and a removed pool deletes its files. Apply the directory to a cluster
with `kubectl apply -k DIR` (it holds a kustomization). The deployment record lives in
the project's state store, next to everything else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from mpfn.deploy.k8s_manifests import (
    Images,
    pool_endpoint,
    pool_layout,
    pool_references,
    render,
)
from mpfn.deploy.models import Action, Change, Resource, ResourceKey, observed_only
from mpfn.deploy.placement import PoolPlacement
from mpfn.deploy.planner import Planner, PlanOptions
from mpfn.deploy.record import RecordStore
from mpfn.deploy.spec import DeployConfig, DeployConfigError, PoolConfig, require
from mpfn.deploy.targets import Project
from mpfn.store import Store


@dataclass(frozen=True)
class ManifestFile(Resource):
    kind: ClassVar[str] = "k8s.manifest"
    order: ClassVar[int] = 10
    sha256: str = ""
    content: str = observed_only("")


def pod_state(config: DeployConfig, project: Project) -> str:
    """The state URL the pods use: it must be reachable from inside the cluster."""
    state = config.k8s.state or project.state
    if not state.startswith(("s3://", "gs://")):
        raise DeployConfigError(
            f"--target k8s needs an s3:// or gs:// state the pods can reach (got {state}); "
            "set deploy.k8s.state"
        )
    return state


def images_for(config: DeployConfig) -> Images:
    """Every image the manifests name, or a one-line error naming the missing setting."""
    router = require(config.router.image, "router.image", "k8s", "the mpfn-router image")
    pools: dict[str, str] = {}
    adapters: dict[str, str] = {}
    worker = config.images.worker
    for pool in config.pools:
        layout = pool_layout(pool.adapter)
        if layout == "worker":
            what = f"the mpfn-worker image ort pool {pool.id} runs without its own image"
            pools[pool.id] = pool.image or require(worker, "images.worker", "k8s", what)
            continue
        what = f"the {pool.adapter} backend's image"
        pools[pool.id] = require(pool.image, f"pools.{pool.id}.image", "k8s", what)
        if layout == "fronted":
            setting, what = f"images.adapters.{pool.adapter}", f"mpfn-adapter-{pool.adapter}"
            found = config.images.adapters.get(pool.adapter)
            adapters[pool.adapter] = require(found, setting, "k8s", f"the {what} image")
    images = Images(router=router, warmer=config.warmer.image, pools=pools, adapters=adapters)
    return replace(images, worker=worker) if worker else images


def register_command(config: DeployConfig, pool: PoolConfig) -> str:
    """The `mpfn pools add` command registering a pool's in-cluster endpoint with its
    hardware, cost and capacity, as an adapter server when its pod fronts the backend
    with one, and with references to the credentials the router and warmer mount."""
    options = {
        "endpoint": pool_endpoint(config, pool),
        "adapter": pool.adapter,
        "hardware": ",".join(pool.hardware),
        "cost-per-hour": f"{pool.cost_per_hour:g}",
        "capacity": str(pool.capacity),
        **pool_references(pool),
    }
    fronted = " --adapter-server" if pool_layout(pool.adapter) == "fronted" else ""
    flags = " ".join(f"--{key} {value}" for key, value in options.items())
    return f"mpfn pools add {pool.id} {flags}{fronted}"


class K8sTarget:
    name = "k8s"

    def __init__(self, config: DeployConfig, project: Project) -> None:
        self.config = config
        self.project = project
        self.state = pod_state(config, project)
        self.images = images_for(config)
        self.directory = project.directory / config.k8s.out
        self.files = render(config, self.state, self.images)

    def resource_keys(self) -> list[ResourceKey]:
        return [(ManifestFile.kind, name) for name in sorted(self.files)]

    def desired(self) -> Sequence[Resource]:
        return [
            ManifestFile(name, sha256=hashlib.sha256(text.encode()).hexdigest(), content=text)
            for name, text in sorted(self.files.items())
        ]

    def observe(self, keys: Sequence[ResourceKey]) -> dict[ResourceKey, Resource | None]:
        found: dict[ResourceKey, Resource | None] = {}
        for kind, name in keys:
            path = self.directory / name
            if kind != ManifestFile.kind:
                continue
            if not path.is_file():
                found[(kind, name)] = None
                continue
            data = path.read_bytes()
            found[(kind, name)] = ManifestFile(name, sha256=hashlib.sha256(data).hexdigest())
        return found

    def apply(self, change: Change) -> dict[str, str]:
        path = self.directory / change.name
        if change.action is Action.DELETE:
            path.unlink(missing_ok=True)
            return {}
        manifest = change.desired
        assert isinstance(manifest, ManifestFile)
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(manifest.content)
        tmp.replace(path)
        return {"manifests": str(self.directory)}

    def records(self) -> RecordStore:
        return project_records(self.project, self.name, self.config.record_stage())

    def planner(self, options: PlanOptions) -> Planner:
        return Planner(options)

    def placements(self) -> list[PoolPlacement]:
        """Each pool's in-cluster Service, with references to what the router and warmer
        mount for it (registered by a deploy with sites)."""
        out = []
        for pool in self.config.pools:
            refs = pool_references(pool)
            auth: dict[str, Any] | None = None
            if refs.get("auth") == "bearer":
                auth = {
                    "type": "bearer",
                    "token": refs["token"],
                    "admin_token": refs["admin-token"],
                }
            elif refs.get("auth") == "mtls":
                auth = {"type": "mtls"}
            tls = {k: refs[f"tls-{k}"] for k in ("ca", "cert", "key") if f"tls-{k}" in refs}
            out.append(
                PoolPlacement(
                    pool,
                    "onprem",
                    self.config.site or self.config.k8s.namespace,
                    pool_endpoint(self.config, pool),
                    auth=auth,
                    tls=tls or None,
                    scaler={
                        "kind": "k8s",
                        "namespace": self.config.k8s.namespace,
                        "deployment": f"mpfn-pool-{pool.id}",
                    },
                )
            )
        return out

    def notes(self) -> list[str]:
        notes = [f"manifests: {self.directory} (apply with: kubectl apply -k {self.directory})"]
        for pool in self.config.pools:
            notes.append(f"register pool {pool.id}: {register_command(self.config, pool)}")
        return notes

    def status(self) -> dict[str, Any]:
        return {"directory": str(self.directory), "state": self.state}

    def logs(self, lines: int) -> list[str]:
        ns = self.config.k8s.namespace
        return [f"kubectl -n {ns} logs deploy/mpfn-router --tail {lines}"] + [
            f"kubectl -n {ns} logs deploy/mpfn-pool-{p.id} --tail {lines}"
            for p in self.config.pools
        ]


def project_records(project: Project, target: str, stage: str) -> RecordStore:
    """The record store in the project's own state (a local one is created on first write)."""
    from mpfn.store import open_store

    def opener() -> Store:
        return open_store(project.state, project.options)

    if project.state.startswith("file://"):
        root = Path(project.state[len("file://") :])
        return RecordStore(opener, target, stage, exists=root.is_dir)
    return RecordStore(opener, target, stage)
