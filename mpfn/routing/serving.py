"""Which pools can serve a model over a protocol, and where on a pool a request goes.

The serving index of a snapshot is built from these pure functions; the format table
they use is the routing core's (`mpfn.routing.compat`), so the index and the routing
filter always agree. The routing decision itself (filter -> score -> pick) is
`mpfn.routing.decide`; nothing here does I/O or keeps state.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mpfn.documents import NAME_PATTERN, Pool
from mpfn.routing.compat import DEFAULT_FORMATS, FormatTable, Protocol, adapter_serves, speaks

if TYPE_CHECKING:
    from mpfn.routing.snapshot import Snapshot

__all__ = [
    "Protocol",
    "Resolution",
    "backend_url",
    "candidates",
    "infer_path",
    "pool_serves",
    "serving_pools",
    "valid_name",
]

_NAME_RE = re.compile(NAME_PATTERN)


def valid_name(name: str) -> bool:
    """True when `name` could be a model or version name at all."""
    return bool(_NAME_RE.match(name))


def pool_serves(
    pool: Pool,
    model: str,
    model_format: str | None,
    protocol: Protocol,
    table: FormatTable = DEFAULT_FORMATS,
) -> bool:
    """Can `pool` serve `model` over `protocol`? `model_format` is None for a name only
    known from pools' `models` lists (such a pool must list it)."""
    if not speaks(pool.adapter, protocol):
        return False
    listed = model in pool.models
    if pool.models and not listed:
        return False
    if model_format is None:
        return listed
    return adapter_serves(pool.adapter, model_format, listed=listed, table=table)


def serving_pools(
    pools: Sequence[Pool],
    model: str,
    fmt: str | None,
    protocol: Protocol,
    table: FormatTable = DEFAULT_FORMATS,
) -> tuple[Pool, ...]:
    return tuple(p for p in pools if pool_serves(p, model, fmt, protocol, table))


@dataclass(frozen=True, slots=True)
class Resolution:
    """Pools that may serve a model (before policy, health and load), or why none."""

    pools: tuple[Pool, ...] = ()
    status: int = 200
    error: str = ""

    @property
    def known(self) -> bool:
        """True when the model is known, whether or not a pool can serve it now."""
        return self.status != 404


def candidates(
    snapshot: Snapshot, model: str, version: str | None = None, protocol: Protocol = "v2"
) -> Resolution:
    """Pools that can serve `model` (and `version`, if given) over `protocol`.

    404 for unknown models or versions; 503 when the model is known but no pool serves it.
    """
    versions = snapshot.versions_for(model, protocol)
    if versions is None:
        return Resolution(status=404, error=f"unknown model {model!r}")
    if version is not None and version not in versions:
        return Resolution(status=404, error=f"model {model!r} has no version {version!r}")
    pools = snapshot.pools_for(model, protocol)
    if not pools:
        return Resolution(
            status=503, error=f"no pool serves model {model!r} over the {protocol} protocol"
        )
    return Resolution(pools=pools)


def infer_path(model: str, version: str | None) -> str:
    """The v2 infer path of `model` (version-less when `version` is None)."""
    if version is None:
        return f"/v2/models/{model}/infer"
    return f"/v2/models/{model}/versions/{version}/infer"


def backend_url(pool: Pool, path: str) -> str:
    """The URL of `path` on `pool`; `path` is always one the router built itself."""
    return str(pool.endpoint).rstrip("/") + path
