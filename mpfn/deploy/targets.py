"""Deploy targets: what each one must provide, and how a name finds its implementation.

A target turns a `DeployConfig` into desired resources, observes the remote side
read-only, applies single changes, and says where its deployment record lives. Built-in
targets are `local`, `k8s`, `aws` and `gcp`; packages add more through the
`mpfn.deploy_targets` entry-point group (`name = "pkg.module:factory"`), where the factory
has the `TargetFactory` signature.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from mpfn.deploy.models import Change, Resource, ResourceKey
from mpfn.deploy.planner import Planner, PlanOptions
from mpfn.deploy.record import RecordStore
from mpfn.deploy.spec import DeployConfig, DeployConfigError

ENTRY_POINT_GROUP = "mpfn.deploy_targets"
BUILTIN = {
    "local": "mpfn.deploy.local:LocalTarget",
    "k8s": "mpfn.deploy.k8s:K8sTarget",
    "aws": "mpfn.deploy.aws:AwsTarget",
    "gcp": "mpfn.deploy.gcp:GcpTarget",
}


@dataclass(frozen=True)
class Project:
    """What deploy knows about the project besides its `deploy:` section."""

    directory: Path
    state: str  # the resolved top-level state URL
    options: dict[str, Any] = field(default_factory=dict)  # the whole parsed mpfn.yaml


class Target(Protocol):
    name: str
    config: DeployConfig

    def resource_keys(self) -> list[ResourceKey]:
        """Every (kind, name) this config deploys, without building anything."""
        ...

    def desired(self) -> Sequence[Resource]:
        """The resources this config wants, with build outputs (zips, manifests) ready."""
        ...

    def observe(self, keys: Sequence[ResourceKey]) -> dict[ResourceKey, Resource | None]:
        """Read-only: the current state of each named resource (None when absent)."""
        ...

    def apply(self, change: Change) -> dict[str, str]:
        """Carry out one change; return outputs to record (URL, ARN)."""
        ...

    def records(self) -> RecordStore | None:
        """Where the deployment record lives, or None while that store does not exist."""
        ...

    def planner(self, options: PlanOptions) -> Planner: ...

    def notes(self) -> list[str]:
        """Lines worth showing before the plan (package sizes, caveats)."""
        ...

    def status(self) -> dict[str, Any]:
        """Live facts beyond the record (for `mpfn deploy status`)."""
        ...

    def logs(self, lines: int) -> list[str]:
        """Recent log lines, or where to find the logs."""
        ...


TargetFactory = Callable[[DeployConfig, Project], Target]


def _load(spec: str) -> TargetFactory:
    module, _, attr = spec.partition(":")
    factory: TargetFactory = getattr(importlib.import_module(module), attr)
    return factory


def available() -> dict[str, str]:
    """Target name -> `module:factory`, built-ins first, then plug-ins."""
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def target_names() -> Sequence[str]:
    return tuple(available())


def open_target(config: DeployConfig, project: Project) -> Target:
    """The target named by `config.target`, validated for its required settings."""
    names = available()
    if not config.target:
        raise DeployConfigError(
            f"no target: pass --target ({', '.join(names)}) or set deploy.target in mpfn.yaml"
        )
    if config.target not in names:
        raise DeployConfigError(
            f"unknown target {config.target!r} (choose one of: {', '.join(names)})"
        )
    return _load(names[config.target])(config, project)
