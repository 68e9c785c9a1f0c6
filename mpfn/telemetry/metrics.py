"""Shared Prometheus conventions of mpfn processes: buckets, bounded label values, rendering.

Label values that come from requests must never grow without bound: a name the registry
does not know is recorded as `UNKNOWN`, an answer no pool gave as `NO_POOL`, and HTTP
statuses as their class (`2xx`, `4xx`, ...). Every process keeps its metrics on a
`CollectorRegistry` of its own; nothing here holds module-level state.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

UNKNOWN = "_unknown"
NO_POOL = "none"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Request latency (s): sub-millisecond hops up to slow cold starts.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
# Model load time (s) reported by adapters.
LOAD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

_CLASSES = {n: f"{n}xx" for n in range(1, 6)}


def status_class(status: int) -> str:
    """`2xx`, `4xx`, ... for an HTTP status (anything out of range is `5xx`)."""
    return _CLASSES.get(status // 100, "5xx")


def render(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text exposition format."""
    return generate_latest(registry)
