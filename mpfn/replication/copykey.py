"""Make one key of a replica what it is in the primary, never moving the replica back.

The copy reads the replica's version first, then the primary, then writes the replica
only if it still holds the version read first (or is still absent). Whatever the replica
held was copied from the primary earlier, and the primary's history of a key is linear
(its writes are conditional), so what is read from the primary afterwards is as new or
newer: concurrent copies of the same key in any order leave the replica at the newest
version they saw, never an older one. A copy that loses the race reads again.
"""

from __future__ import annotations

from typing import Literal

from mpfn.replication.scope import content_addressed
from mpfn.store import Blob, KeyNotFound, PreconditionFailed, Store

Outcome = Literal["copied", "deleted", "same"]
ATTEMPTS = 8


def _read(store: Store, key: str) -> Blob | None:
    try:
        return store.get(key)
    except KeyNotFound:
        return None


def sync_key(primary: Store, replica: Store, key: str) -> Outcome:
    """Copy `key` from `primary` to `replica` (or delete it there when the primary has
    none). StoreError when either store fails; PreconditionFailed after ATTEMPTS races."""
    for _ in range(ATTEMPTS):
        held = _read(replica, key)
        if held is not None and content_addressed(key):
            return "same"
        source = _read(primary, key)
        try:
            if source is None:
                if held is None:
                    return "same"
                replica.delete(key, if_match=held.etag)
                return "deleted"
            if held is not None and held.body == source.body:
                return "same"
            if held is None:
                replica.put(key, source.body, if_absent=True)
            else:
                replica.put(key, source.body, if_match=held.etag)
            return "copied"
        except (PreconditionFailed, KeyNotFound):
            continue  # someone else changed the replica in between: read again
    raise PreconditionFailed(f"{key}: the replica kept changing; sync it again")
