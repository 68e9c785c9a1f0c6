"""A site's entries in the primary state, deployed like any other resource.

For each site, deploy keeps three kinds of documents in the primary (from where they
replicate to every site): the site itself in `replication/sites.json` (its replica and
how to reach it), one pool document per pool the site's target runs (with its site,
hardware, cost and capacity), and the site's router entry (`routers/<site>.json`, what
clients fail over between). `RegistryTarget` plans them with the same planner as cloud
resources, so a dry run shows them, a redeploy leaves them alone, and destroying the site
removes exactly what deploy registered (its record is `deploy/registry/<stage>@<site>`).
Adding a site syncs its replica from the primary. A cloud deployment without sites is one
site to this module: its pools and its router entry (`routers/default.json`) go to the
target's own state.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from mpfn.deploy.models import Action, Change, Resource, ResourceKey
from mpfn.deploy.placement import PoolPlacement, pool_document
from mpfn.deploy.planner import Planner, PlanOptions
from mpfn.deploy.record import RecordStore
from mpfn.deploy.spec import DeployConfig
from mpfn.documents import Pool, pool_key
from mpfn.entrypoints import (
    DEFAULT_SITE,
    RouterEntry,
    read_router,
    remove_router,
    write_router,
)
from mpfn.replication import SITES_KEY, Site, Sites, open_state, read_sites, sync_replica
from mpfn.state import Documents
from mpfn.store import KeyNotFound, Store, StoreError, StoreUnavailable, open_store

Echo = Callable[[str], None]


def canonical(doc: Any) -> str:
    return json.dumps(doc.model_dump(mode="json", exclude_none=True), sort_keys=True)


@dataclass(frozen=True)
class SiteReplica(Resource):
    kind: ClassVar[str] = "site"
    order: ClassVar[int] = 1
    state: str = ""
    options: str = "{}"  # JSON of the store options (endpoints, never secrets)


@dataclass(frozen=True)
class PoolRegistration(Resource):
    kind: ClassVar[str] = "pool registration"
    order: ClassVar[int] = 60
    document: str = ""


@dataclass(frozen=True)
class RouterRegistration(Resource):
    kind: ClassVar[str] = "router entry"
    order: ClassVar[int] = 70
    document: str = ""

    def outputs(self) -> dict[str, str]:
        return {"router_url": json.loads(self.document)["url"].rstrip("/")} if self.document else {}


def replica_options(config: DeployConfig) -> dict[str, Any]:
    """How to reach the site's replica: the store options its target uses, no secrets."""
    if config.target == "aws":
        s3 = {"region": config.aws.region, "endpoint_url": config.aws.endpoint_url}
        return {"s3": {k: v for k, v in s3.items() if v}}
    if config.target == "gcp":
        gcs = {"project": config.gcp.project, "endpoint": config.gcp.endpoints.storage}
        return {"gcs": {k: v for k, v in gcs.items() if v}}
    return {}


def store_options(config: DeployConfig, base: dict[str, Any]) -> dict[str, Any]:
    """Options to open the site's store from here: `base` (the mpfn.yaml sections) with
    the site's endpoint and region, and the deploy credentials of its target (used, never
    written anywhere)."""
    out = {key: dict(value) if isinstance(value, dict) else value for key, value in base.items()}
    for section, values in replica_options(config).items():
        out[section] = {**(out.get(section) or {}), **values}
    if config.target == "aws":
        aws = config.aws
        keys = {"profile": aws.profile, "access_key_id": aws.access_key_id,
                "secret_access_key": aws.secret_access_key}  # fmt: skip
        out["s3"] = {**out.get("s3", {}), **{k: v for k, v in keys.items() if v}}
    return out


def router_entry(config: DeployConfig, url: str | None) -> RouterEntry | None:
    """How clients reach the site's router, once it has a URL (k8s routers have none:
    they are reached through the cluster's own ingress)."""
    if not url:
        return None
    site = config.site or DEFAULT_SITE
    entry: dict[str, Any] = {"site": site, "url": url, "target": config.target}
    if config.target == "aws" and config.aws.auth == "AWS_IAM":
        entry |= {"auth": "sigv4", "region": config.aws.region}
    elif config.target == "gcp" and not config.gcp.public:
        entry["auth"] = "google-id-token"
    return RouterEntry.model_validate(entry)


class RegistryTarget:
    """One site's documents in the primary: the site, its pools, its router entry."""

    name = "registry"

    def __init__(
        self,
        config: DeployConfig,
        primary: str,
        primary_options: dict[str, Any],
        *,
        replica: str,
        placements: Sequence[PoolPlacement] = (),
        router_url: str | None = None,
        echo: Echo = print,
    ) -> None:
        self.config = config
        self.site: str = config.site or DEFAULT_SITE  # a deployment without sites: one
        self.primary = primary
        self.options = primary_options
        self.replica = replica
        self.placements = list(placements)
        self.router_url = router_url
        self.echo = echo
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.primary, self.options)
        return self._store

    # -- desired ----------------------------------------------------------------------

    def resource_keys(self) -> list[ResourceKey]:
        """What destroying the site removes: the site, its router entry, and every pool of
        the site (also those its stack registered itself, like a local site's)."""
        keys = [(RouterRegistration.kind, self.site)]
        if self.config.site is not None:
            keys.insert(0, (SiteReplica.kind, self.site))
        pools = {p.id for p in self.config.pools}
        # the primary may be unreadable: the configured pools are listed anyway
        with contextlib.suppress(StoreError):
            listed = Documents(self.store).list("pools/", Pool)
            pools |= {p.id for p in listed if p.site is not None and p.site == self.config.site}
        return keys + [(PoolRegistration.kind, pool) for pool in sorted(pools)]

    def desired(self) -> Sequence[Resource]:
        out: list[Resource] = []
        if self.config.site is not None and self.replica != self.primary:
            options = json.dumps(replica_options(self.config), sort_keys=True)
            out.append(SiteReplica(self.site, state=self.replica, options=options))
        for placement in self.placements:
            doc = pool_document(placement, self.config.site)
            if doc is not None:
                out.append(PoolRegistration(doc.id, document=canonical(doc)))
        entry = router_entry(self.config, self.router_url)
        if entry is not None:
            out.append(RouterRegistration(self.site, document=canonical(entry)))
        return out

    # -- observe ----------------------------------------------------------------------

    def _readable(self) -> bool:
        """Whether the primary exists yet (before the first deploy of the site holding it,
        a dry run sees nothing registered)."""
        try:
            self.store.list(SITES_KEY)
        except StoreUnavailable:
            return False
        return True

    def observe(self, keys: Sequence[ResourceKey]) -> dict[ResourceKey, Resource | None]:
        if not self._readable():
            return dict.fromkeys(keys)
        return {key: self._observe(*key) for key in keys}

    def _observe(self, kind: str, name: str) -> Resource | None:
        docs = Documents(self.store)
        if kind == SiteReplica.kind:
            sites = read_sites(self.store)
            site = sites.sites.get(name) if sites else None
            if site is None:
                return None
            return SiteReplica(name, site.state, json.dumps(site.options, sort_keys=True))
        if kind == PoolRegistration.kind:
            pool = docs.find(pool_key(name), Pool)
            return PoolRegistration(name, document=canonical(pool)) if pool else None
        if kind == RouterRegistration.kind:
            entry = read_router(self.store, name)
            return RouterRegistration(name, document=canonical(entry)) if entry else None
        return None

    # -- apply ------------------------------------------------------------------------

    def apply(self, change: Change) -> dict[str, str]:
        resource = change.desired or change.current
        assert resource is not None
        if isinstance(resource, SiteReplica):
            self._apply_site(change)
            return {}
        writer = open_state(self.primary, self.options)  # fans out to every site
        delete = change.action is Action.DELETE
        if isinstance(resource, PoolRegistration):
            docs = Documents(writer)
            if delete:
                with contextlib.suppress(KeyNotFound):
                    docs.delete(pool_key(resource.name))
            else:
                docs.upsert(pool_key(resource.name), Pool.model_validate_json(resource.document))
            return {}
        if isinstance(resource, RouterRegistration):
            if delete:
                remove_router(writer, resource.name)
            else:
                write_router(writer, RouterEntry.model_validate_json(resource.document))
            return resource.outputs() if not delete else {}
        raise AssertionError(f"unknown registry resource {resource.kind}")

    def _apply_site(self, change: Change) -> None:
        def edit(current: Sites | None) -> Sites:
            sites = dict((current or Sites()).sites)
            if change.action is Action.DELETE:
                sites.pop(self.site, None)
            else:
                desired = change.desired
                assert isinstance(desired, SiteReplica)
                sites[self.site] = Site(state=desired.state, options=json.loads(desired.options))
            return Sites(sites=sites)

        Documents(self.store).update(SITES_KEY, Sites, edit, create=True)
        if change.action is Action.DELETE:
            return
        replica = open_store(self.replica, store_options(self.config, self.options))
        report = sync_replica(self.store, replica, self.site)
        if report.ok:
            self.echo(f"site {self.site}: replica {self.replica} in sync ({report.copied} copied)")
        else:
            self.echo(
                f"site {self.site}: replica not synced yet ({report.error}); "
                f"`mpfn state sync --site {self.site}` or the next warmer run catches it up"
            )

    # -- the rest of the target protocol ----------------------------------------------

    def records(self) -> RecordStore:
        return RecordStore(
            lambda: self.store, self.name, self.config.record_stage(), exists=self._readable
        )

    def planner(self, options: PlanOptions) -> Planner:
        return Planner(options)

    def notes(self) -> list[str]:
        pending = [p.pool.id for p in self.placements if p.endpoint is None]
        if not pending:
            return []
        return [f"pool(s) {', '.join(pending)} are registered once they have an address"]

    def status(self) -> dict[str, Any]:
        return {}

    def logs(self, lines: int) -> list[str]:
        return []
