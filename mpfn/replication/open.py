"""Open the state for writing: the primary, fanning out when it lists sites."""

from __future__ import annotations

from typing import Any

from mpfn.replication.fanout import ReplicatedStore
from mpfn.replication.sites import Sites, read_sites
from mpfn.store import Store, StoreError, open_store


def site_stores(primary: Store, sites: Sites, options: dict[str, Any] | None) -> dict[str, Store]:
    """Each site's replica store, but for a site whose replica is the primary itself."""
    out: dict[str, Store] = {}
    for name, site in sites.sites.items():
        replica = open_store(site.state, {**(options or {}), **site.options})
        if replica.url != primary.url:
            out[name] = replica
    return out


def open_state(url: str, options: dict[str, Any] | None = None) -> Store:
    """The store at `url`; a `ReplicatedStore` when it is a primary with sites. A store
    that cannot be read now is returned as it is: its first use says why."""
    primary = open_store(url, options)
    try:
        sites = read_sites(primary)
    except StoreError:
        return primary
    if sites is None or not sites.sites:
        return primary
    return ReplicatedStore(primary, site_stores(primary, sites, options))
