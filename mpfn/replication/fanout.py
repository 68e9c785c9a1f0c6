"""`ReplicatedStore`: the primary store, with every write copied on to the sites.

Reads and listings are the primary's. A write (or delete) is the primary's first, with
its preconditions, and that is what the caller gets: once it returns, the write is
durable and ordered. Then each site's replica is brought to the primary's version of that
key (`sync_key`), concurrently. A replica that cannot be written is marked behind
(`replication/behind/<site>.json` in the primary, holding when and why) and skipped by
later writes until `mpfn state sync` catches it up: a site that is down costs one failed
attempt, not a timeout on every write. Keys that do not replicate (usage, plans, ...)
are written to the primary only.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import orjson

from mpfn.replication.copykey import sync_key
from mpfn.replication.scope import REPLICATION_PREFIX, replicated
from mpfn.store import PreconditionFailed, Store, StoreError
from mpfn.store.base import Blob

log = logging.getLogger("mpfn.replication")
BEHIND_PREFIX = f"{REPLICATION_PREFIX}behind/"


def behind_key(site: str) -> str:
    return f"{BEHIND_PREFIX}{site}.json"


def behind_sites(primary: Store) -> set[str]:
    """Sites marked behind in the primary."""
    return {k[len(BEHIND_PREFIX) : -len(".json")] for k in primary.list(BEHIND_PREFIX)}


def mark_behind(primary: Store, site: str, key: str, error: str) -> None:
    """Record that `site` missed a write (the first miss is kept: it says since when)."""
    body = orjson.dumps({"since": time.time(), "missed": key, "error": error[:300]})
    with contextlib.suppress(PreconditionFailed):  # behind since an earlier miss
        primary.put(behind_key(site), body, if_absent=True)


class ReplicatedStore:
    """A `Store`: the primary, fanning each write out to `replicas` (site -> store)."""

    def __init__(self, primary: Store, replicas: Mapping[str, Store]) -> None:
        self.primary = primary
        self.replicas = dict(replicas)
        self.behind = behind_sites(primary) if self.replicas else set()
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.replicas)))

    @property
    def url(self) -> str:
        return self.primary.url

    def get(self, key: str, *, if_none_match: str | None = None) -> Blob | None:
        return self.primary.get(key, if_none_match=if_none_match)

    def list(self, prefix: str = "") -> list[str]:
        return self.primary.list(prefix)

    def put(
        self, key: str, body: bytes, *, if_match: str | None = None, if_absent: bool = False
    ) -> str:
        etag = self.primary.put(key, body, if_match=if_match, if_absent=if_absent)
        self._fan_out(key)
        return etag

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        self.primary.delete(key, if_match=if_match)
        self._fan_out(key)

    def _fan_out(self, key: str) -> None:
        if not replicated(key):
            return
        targets = {s: r for s, r in self.replicas.items() if s not in self.behind}
        results = self._pool.map(lambda item: self._copy(item[0], item[1], key), targets.items())
        for site, error in zip(targets, results, strict=True):
            if error is not None:
                log.warning("site %s missed %s (marked behind): %s", site, key, error)
                self.behind.add(site)
                mark_behind(self.primary, site, key, error)

    def _copy(self, site: str, replica: Store, key: str) -> str | None:
        try:
            sync_key(self.primary, replica, key)
        except StoreError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None
