"""`deploy.sites`: one mpfn.yaml describing several sites, each a config of its own. Pure.

    state: s3://mpfn-primary/mpfn            # the primary state
    deploy:
      name: mpfn
      router: {image: ...}                   # shared by every site unless a site says else
      sites:
        east: {target: aws, aws: {region: us-east-1, state: s3://mpfn-east/mpfn}, pools: [...]}
        eu:   {target: gcp, gcp: {project: p, region: europe-west1, state: gs://mpfn-eu/mpfn}}
        lab:  {target: local, local: {state: ./.mpfn-lab, port: 8091}}

Each site's config is the `deploy:` section (after its stage and `--set`) with the site's
mapping merged over it, its `site` set, and its router told its site
(`MPFN_ROUTER_SITE`). A site's state is its replica; the top-level `state:` is the
primary. Pools belong to one site (pool ids are global, so they are unique across sites).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mpfn.deploy.spec import SITE_NAME, DeployConfig, DeployConfigError, layer, merge
from mpfn.state import describe_validation_error

#: Where each target keeps its state setting (the site's replica).
STATE_SETTING = {"aws": "aws", "gcp": "gcp", "k8s": "k8s", "local": "local"}


def has_sites(file_options: dict[str, Any]) -> bool:
    section = file_options.get("deploy")
    return isinstance(section, dict) and bool(section.get("sites"))


def _site_mapping(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    sites = data.pop("sites", None)
    if not isinstance(sites, dict) or not sites:
        raise DeployConfigError("mpfn.yaml: 'deploy.sites' must map site names to settings")
    out: dict[str, dict[str, Any]] = {}
    for name, overlay in sites.items():
        if not isinstance(name, str) or not re.match(SITE_NAME, name):
            raise DeployConfigError(
                f"deploy.sites: {name!r} is not a site name (lowercase letters, digits and "
                "'-', starting with a letter, at most 16 characters)"
            )
        if overlay is not None and not isinstance(overlay, dict):
            raise DeployConfigError(f"deploy.sites.{name} must be a mapping of settings")
        out[name] = overlay or {}
    return out


def local_state_url(state: str, directory: Path) -> str:
    """A `local.state` path as a file:// URL, relative paths from the project directory."""
    if "://" in state:
        return state
    path = Path(state).expanduser()
    return f"file://{(path if path.is_absolute() else directory / path).resolve()}"


def _site_config(name: str, base: dict[str, Any], overlay: dict[str, Any]) -> DeployConfig:
    if "site" in overlay or "sites" in overlay:
        raise DeployConfigError(f"deploy.sites.{name}: a site cannot set 'site' or 'sites'")
    data = merge(base, overlay)
    if not data.get("target"):
        raise DeployConfigError(
            f"deploy.sites.{name}: no target (set target: aws, gcp, k8s or local)"
        )
    data["site"] = name
    router = data.get("router") or {}
    if not isinstance(router, dict):
        raise DeployConfigError(f"deploy.sites.{name}.router must be a mapping")
    env = {**(router.get("env") or {}), "MPFN_ROUTER_SITE": name}
    data["router"] = {**router, "env": env}
    try:
        return DeployConfig.model_validate(data)
    except ValidationError as exc:
        raise DeployConfigError(describe_validation_error(f"deploy.sites.{name}", exc)) from None


def load_site_configs(
    file_options: dict[str, Any],
    directory: Path,
    *,
    stage: str | None = None,
    assignments: tuple[str, ...] = (),
    only: str | None = None,
) -> list[DeployConfig]:
    """Every site's config (or only the site `only`), validated, in file order."""
    data = layer(file_options.get("deploy"), stage=stage, assignments=assignments)
    sites = _site_mapping(data)
    if data.get("pools"):
        raise DeployConfigError(
            "deploy.pools: with sites, list each pool under its site (deploy.sites.NAME.pools)"
        )
    if only is not None and only not in sites:
        raise DeployConfigError(f"--site {only}: no such site (sites: {', '.join(sites)})")
    configs = [_site_config(name, data, overlay) for name, overlay in sites.items()]
    _check_across(configs)
    chosen = [c for c in configs if only is None or c.site == only]
    return [_resolve_local(c, directory) for c in chosen]


def _resolve_local(config: DeployConfig, directory: Path) -> DeployConfig:
    if config.target != "local" or not config.local.state:
        return config
    local = config.local.model_copy(
        update={"state": local_state_url(config.local.state, directory)}
    )
    return config.model_copy(update={"local": local})


def site_state(config: DeployConfig, primary: str) -> str:
    """The site's replica: its target's `state` setting, else the primary itself."""
    section = STATE_SETTING.get(config.target or "")
    state = getattr(getattr(config, section), "state", None) if section else None
    return str(state or primary)


def _check_across(configs: list[DeployConfig]) -> None:
    owners: dict[str, str] = {}
    for config in configs:
        for pool in config.pools:
            if pool.id in owners:
                raise DeployConfigError(
                    f"pool {pool.id} is in sites {owners[pool.id]} and {config.site}: "
                    "pool ids are global, give each site's pools their own ids"
                )
            owners[pool.id] = str(config.site)
