"""Where clients reach a deployment: one `routers/<site>.json` per site.

Deploy (and `mpfn up --sites`) records each site's router URL and how to sign requests
to it (`auth`: none, an API key, SigV4 for an `AWS_IAM` Function URL, a Google ID token
for a private Cloud Run service). The documents replicate to every site like the rest of
the registry, so a client that can read any one replica finds every router and can fail
over between them (`mpfn.client`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from mpfn.documents import SITE_PATTERN
from mpfn.state import Documents
from mpfn.store import KeyNotFound, Store

ROUTERS_PREFIX = "routers/"
DEFAULT_SITE = "default"  # the entry of a deployment without sites
RouterAuth = Literal["none", "api-key", "sigv4", "google-id-token"]


class RouterEntry(BaseModel):
    """One site's router, as a client reaches it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site: str = Field(pattern=SITE_PATTERN)
    url: HttpUrl
    auth: RouterAuth = "none"
    region: str | None = Field(default=None, description="sigv4: the signing region")
    target: str = Field(default="local", description="What deployed it: local, aws, gcp, k8s")


def router_key(site: str) -> str:
    return f"{ROUTERS_PREFIX}{site}.json"


def write_router(store: Store, entry: RouterEntry) -> None:
    Documents(store).upsert(router_key(entry.site), entry)


def read_router(store: Store, site: str) -> RouterEntry | None:
    return Documents(store).find(router_key(site), RouterEntry)


def remove_router(store: Store, site: str) -> None:
    try:
        Documents(store).delete(router_key(site))
    except KeyNotFound:
        return


def read_routers(store: Store) -> list[RouterEntry]:
    """Every recorded router, by site name."""
    return sorted(Documents(store).list(ROUTERS_PREFIX, RouterEntry), key=lambda e: e.site)
