"""Deploy and destroy every site of a multi-site mpfn.yaml (or one, with `--site`).

For each site, in file order: the site's own target is planned and applied (its bucket,
router, warmer, pools), then its entries in the primary (`registration`): the site and
its replica (added sites are synced from the primary), its pools' documents, its router
entry. Destroy goes the other way round: first the site's entries, so routers elsewhere
stop sending it traffic and writers stop replicating to it, then its resources. A site
that fails stops the run with its name in the error; sites done before it stay done, and
running the command again resumes (every step is a plan against what exists).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mpfn.deploy.deployer import Outcome, deploy, destroy
from mpfn.deploy.errors import DeployFailure
from mpfn.deploy.placement import PoolPlacement
from mpfn.deploy.planner import PlanOptions
from mpfn.deploy.registration import RegistryTarget, store_options
from mpfn.deploy.siteconfig import site_state
from mpfn.deploy.spec import DeployConfig, DeployConfigError
from mpfn.deploy.targets import Project, Target, open_target

Echo = Callable[[str], None]
Opener = Callable[[DeployConfig, Project], Target]


class SiteFailure(DeployFailure, RuntimeError):
    """One site could not be deployed or destroyed; the message names it."""


@dataclass(frozen=True)
class SiteOutcome:
    site: str
    target: str
    resources: Outcome
    registry: Outcome

    def as_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "target": self.target,
            "plan": self.resources.plan.as_dict(),
            "registry": self.registry.plan.as_dict(),
            "applied": self.resources.applied or self.registry.applied,
            "outputs": {**self.resources.record.outputs, **self.registry.record.outputs},
        }


def check_replicas(configs: Sequence[DeployConfig], primary: str) -> None:
    """Each site has its own replica; at most one site's state is the primary itself."""
    seen: dict[str, str] = {}
    for config in configs:
        state = site_state(config, primary).rstrip("/")
        if state in seen:
            shared = "the primary" if state == primary.rstrip("/") else state
            raise DeployConfigError(
                f"sites {seen[state]} and {config.site} both use {shared} as their state: "
                f"give each site its own replica (deploy.sites.{config.site}."
                f"{config.target}.state)"
            )
        seen[state] = str(config.site)


def placements_of(target: Target) -> list[PoolPlacement]:
    """The target's pools and where they are reached (targets without pools have none)."""
    found: Callable[[], list[PoolPlacement]] | None = getattr(target, "placements", None)
    return found() if found is not None else []


def _registry(
    config: DeployConfig, project: Project, target: Target, router_url: str | None, echo: Echo
) -> RegistryTarget:
    return RegistryTarget(
        config,
        project.state,
        project.options,
        replica=site_state(config, project.state),
        placements=placements_of(target),
        router_url=router_url,
        echo=echo,
    )


def _registry_of_one(target: Target, router_url: str | None, echo: Echo) -> RegistryTarget | None:
    """A cloud deployment without sites registers its pools and router in its own state."""
    state: str | None = getattr(target, "state_url", None)
    if target.name not in ("aws", "gcp") or state is None:
        return None
    project: Project = target.project  # type: ignore[attr-defined]
    options = store_options(target.config, project.options)
    return RegistryTarget(
        target.config,
        state,
        options,
        replica=state,
        placements=placements_of(target),
        router_url=router_url,
        echo=echo,
    )


def deploy_one(
    target: Target, echo: Echo, *, dry_run: bool = False
) -> tuple[Outcome, Outcome | None]:
    """`mpfn deploy --target T`: the target's plan, then (aws, gcp) its registrations."""
    resources = deploy(target, echo, dry_run=dry_run)
    registry = _registry_of_one(target, resources.record.outputs.get("router_url"), echo)
    return resources, (deploy(registry, echo, dry_run=dry_run) if registry else None)


def destroy_one(
    target: Target, echo: Echo, *, dry_run: bool = False, options: PlanOptions | None = None
) -> tuple[Outcome, Outcome | None]:
    """`mpfn destroy --target T`: the registrations first, then the target's resources."""
    registry = _registry_of_one(target, None, echo)
    entries = destroy(registry, echo, dry_run=dry_run) if registry else None
    return destroy(target, echo, dry_run=dry_run, options=options), entries


def _site(config: DeployConfig, what: str, run: Callable[[], SiteOutcome]) -> SiteOutcome:
    try:
        return run()
    except DeployFailure as exc:
        raise SiteFailure(f"site {config.site} ({config.target}): {what} failed: {exc}") from exc


def deploy_sites(
    configs: Sequence[DeployConfig],
    project: Project,
    echo: Echo,
    *,
    dry_run: bool = False,
    opener: Opener = open_target,
) -> list[SiteOutcome]:
    check_replicas(configs, project.state)
    targets = [opener(config, project) for config in configs]  # config errors first
    out: list[SiteOutcome] = []
    for config, target in zip(configs, targets, strict=True):

        def run(config: DeployConfig = config, target: Target = target) -> SiteOutcome:
            echo(f"== site {config.site} ({config.target}) ==")
            resources = deploy(target, echo, dry_run=dry_run)
            url = resources.record.outputs.get("router_url")
            registry = deploy(_registry(config, project, target, url, echo), echo, dry_run=dry_run)
            return SiteOutcome(str(config.site), str(config.target), resources, registry)

        out.append(_site(config, "deploy", run))
    return out


def destroy_sites(
    configs: Sequence[DeployConfig],
    project: Project,
    echo: Echo,
    *,
    dry_run: bool = False,
    options: PlanOptions | None = None,
    opener: Opener = open_target,
) -> list[SiteOutcome]:
    targets = [opener(config, project) for config in configs]
    out: list[SiteOutcome] = []
    for config, target in zip(configs, targets, strict=True):

        def run(config: DeployConfig = config, target: Target = target) -> SiteOutcome:
            echo(f"== site {config.site} ({config.target}) ==")
            registry = destroy(
                _registry(config, project, target, None, echo), echo, dry_run=dry_run
            )
            resources = destroy(target, echo, dry_run=dry_run, options=options)
            return SiteOutcome(str(config.site), str(config.target), resources, registry)

        out.append(_site(config, "destroy", run))
    return out
