"""The sites of a replicated state: `replication/sites.json` in the primary store.

Each site names its replica's state URL and the store options to reach it (an S3
endpoint, a region: never credentials, which come from the environment as for any
store). The document lives only in the primary, so a store that holds it is a primary,
and writers opening it fan out (`mpfn.replication.open_state`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from mpfn.documents import SITE_PATTERN
from mpfn.state import Documents
from mpfn.store import Store

SITES_KEY = "replication/sites.json"


class Site(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    state: str = Field(min_length=1, description="The site's replica: its state URL")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Store options (`s3:`/`gcs:` sections), no secrets"
    )


SiteName = Annotated[str, StringConstraints(pattern=SITE_PATTERN)]


class Sites(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sites: dict[SiteName, Site] = Field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self.sites)


def read_sites(primary: Store) -> Sites | None:
    """The primary's sites, or None when the store is not a replicated primary."""
    return Documents(primary).find(SITES_KEY, Sites)


def write_sites(primary: Store, sites: Sites) -> None:
    Documents(primary).upsert(SITES_KEY, sites)
