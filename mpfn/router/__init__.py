"""The stateless router: Open Inference Protocol v2 and OpenAI-compatible front door.

Reads the registry from the store into an in-memory snapshot, routes each request with
the routing core (filter -> score -> pick, with live feedback), forwards the raw request
bytes, fails over along the plan, and counts per-minute usage.
"""

from __future__ import annotations

from mpfn.router.app import RouterApp, create_app
from mpfn.router.decide import RouteRequest, decide, default_policy
from mpfn.router.forward import Forwarder, default_session
from mpfn.router.routing import Resolution, candidates, pool_serves
from mpfn.router.runtime import RouterRuntime
from mpfn.router.settings import RouterSettings
from mpfn.router.snapshot import Snapshot, SnapshotLoader, build_snapshot
from mpfn.router.usage import UsageCounter, usage_key

__all__ = [
    "Forwarder",
    "Resolution",
    "RouteRequest",
    "RouterApp",
    "RouterRuntime",
    "RouterSettings",
    "Snapshot",
    "SnapshotLoader",
    "UsageCounter",
    "build_snapshot",
    "candidates",
    "create_app",
    "decide",
    "default_policy",
    "default_session",
    "pool_serves",
    "usage_key",
]
