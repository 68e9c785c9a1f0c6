"""Replicated state: one primary store, a replica per site, kept in step.

Writers (the CLI, the warmer) write the primary; every write is then copied to each
site's replica (`ReplicatedStore`). Routers and workers read only their own site's
replica. `sync_replica` catches up a replica that was away and gathers the usage its
routers wrote into the primary. The guarantees are in docs/state.md, *Replication*.
"""

from mpfn.replication.catchup import SyncReport, sync_replica, sync_sites
from mpfn.replication.fanout import ReplicatedStore
from mpfn.replication.open import open_state
from mpfn.replication.sites import SITES_KEY, Site, Sites, read_sites, write_sites

__all__ = [
    "SITES_KEY",
    "ReplicatedStore",
    "Site",
    "Sites",
    "SyncReport",
    "open_state",
    "read_sites",
    "sync_replica",
    "sync_sites",
    "write_sites",
]
