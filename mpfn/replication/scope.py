"""Which keys replicate from the primary to the sites. Pure.

Everything routers, workers and adapter servers read replicates (models, pools,
policies, keys, stats, config, the OCI layout). What only the primary's writers use stays
there: usage (it flows the other way: each site's routers write it to their replica and
sync gathers it into the primary), its rollups, forecast fits and reports, warm plans,
deploy records, the replication documents themselves, and the runtime files `mpfn up`
keeps beside a local state (logs, caches, certificates, up.json).
"""

from __future__ import annotations

from mpfn.usage import USAGE_PREFIX

REPLICATION_PREFIX = "replication/"
LOCAL_PREFIXES = (
    USAGE_PREFIX,
    REPLICATION_PREFIX,
    "rollups/",
    "forecast/",
    "reports/",
    "plans/",
    "deploy/",
    # a local state directory's machine-local files (`mpfn up`, the local target)
    "logs/",
    "cache/",
    "tls/",
    "up.json",
    "deploy-local.json",
)
#: Keys named by their content's digest: equal names are equal bytes.
CONTENT_ADDRESSED = ("oci/blobs/",)


def replicated(key: str) -> bool:
    return not key.startswith(LOCAL_PREFIXES)


def content_addressed(key: str) -> bool:
    return key.startswith(CONTENT_ADDRESSED)


def is_usage(key: str) -> bool:
    return key.startswith(USAGE_PREFIX)
