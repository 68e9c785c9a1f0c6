"""Catch a site's replica up with the primary, and gather its usage into the primary.

`sync_replica` makes every replicated key of the replica what it is in the primary
(content-addressed blobs first, so a model document never arrives before its artifact;
deletions last), moves the usage documents the site's routers wrote into the primary
(create-only there, then removed from the replica: each is written once, so nothing is
counted twice), and clears the site's behind mark. It is idempotent: run it again after a
failure and it continues. `mpfn state sync` and the warmer run it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from mpfn.replication.copykey import sync_key
from mpfn.replication.fanout import ReplicatedStore, behind_key
from mpfn.replication.scope import content_addressed, is_usage, replicated
from mpfn.replication.sites import Sites
from mpfn.store import KeyNotFound, PreconditionFailed, Store, StoreError, open_store


@dataclass
class SyncReport:
    site: str
    copied: int = 0
    deleted: int = 0
    same: int = 0
    usage_gathered: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _order(key: str) -> tuple[int, str]:
    return (0 if content_addressed(key) else 1, key)


def copy_order(primary_keys: Iterable[str], replica_keys: Iterable[str]) -> list[str]:
    """Keys to sync: the primary's (blobs first), then those only the replica has (to be
    deleted). Pure."""
    mine = sorted({k for k in primary_keys if replicated(k)}, key=_order)
    gone = sorted({k for k in replica_keys if replicated(k)} - set(mine))
    return [*mine, *gone]


def gather_usage(primary: Store, replica: Store) -> int:
    """Move the replica's usage documents into the primary; how many moved."""
    moved = 0
    for key in replica.list("usage/"):
        if not is_usage(key):
            continue
        try:
            blob = replica.get(key)
        except KeyNotFound:
            continue
        if blob is None:
            continue
        # PreconditionFailed: gathered before (the delete below did not happen)
        with contextlib.suppress(PreconditionFailed):
            primary.put(key, blob.body, if_absent=True)
        replica.delete(key)
        moved += 1
    return moved


def sync_replica(primary: Store, replica: Store, site: str) -> SyncReport:
    report = SyncReport(site)
    started = time.perf_counter()
    try:
        for key in copy_order(primary.list(), replica.list()):
            outcome = sync_key(primary, replica, key)
            setattr(report, outcome, getattr(report, outcome) + 1)
        report.usage_gathered = gather_usage(primary, replica)
        with contextlib.suppress(KeyNotFound):
            primary.delete(behind_key(site))
    except StoreError as exc:
        report.error = f"{type(exc).__name__}: {exc}"
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def sync_sites(
    primary: Store,
    sites: Sites,
    options: dict[str, Any] | None = None,
    only: Iterable[str] | None = None,
) -> list[SyncReport]:
    """`sync_replica` for every site (or those in `only`) whose replica is not the primary;
    a site that fails gets its error in its report, and the others still sync."""
    wanted = set(only) if only is not None else set(sites.sites)
    unknown = sorted(wanted - set(sites.sites))
    if unknown:
        raise ValueError(f"unknown site(s) {', '.join(unknown)}; sites: {', '.join(sites.names())}")
    reports = []
    for name in sorted(wanted):
        site = sites.sites[name]
        replica = open_store(site.state, {**(options or {}), **site.options})
        if replica.url == primary.url:
            continue
        reports.append(sync_replica(primary, replica, name))
    return reports


def catch_up(store: ReplicatedStore) -> list[str]:
    """What a warmer run does first on a replicated primary: gather every site's usage,
    and fully sync the sites marked behind. One line per site that failed."""
    errors: list[str] = []
    for site, replica in sorted(store.replicas.items()):
        try:
            if site in store.behind:
                report = sync_replica(store.primary, replica, site)
                if report.error is not None:
                    raise StoreError(report.error)
                store.behind.discard(site)
            else:
                gather_usage(store.primary, replica)
        except StoreError as exc:
            errors.append(f"site {site}: {exc}"[:300])
    return errors
