"""The stateless router: Open Inference Protocol v2 and OpenAI-compatible front door.

Reads the registry from the store into an in-memory snapshot, picks a pool per request,
forwards the raw request bytes, fails over, and counts per-minute usage.
"""

from __future__ import annotations

from mpfn.router.app import RouterApp, create_app
from mpfn.router.forward import BackendHealth, Forwarder, default_session
from mpfn.router.routing import (
    ADAPTER_FORMATS,
    Resolution,
    adapter_fits,
    attempt_order,
    candidates,
    default_version,
    pool_serves,
    should_fail_over,
)
from mpfn.router.runtime import RouterRuntime
from mpfn.router.settings import RouterSettings
from mpfn.router.snapshot import Snapshot, SnapshotLoader, build_snapshot
from mpfn.router.usage import UsageCounter, usage_key

__all__ = [
    "ADAPTER_FORMATS",
    "BackendHealth",
    "Forwarder",
    "Resolution",
    "RouterApp",
    "RouterRuntime",
    "RouterSettings",
    "Snapshot",
    "SnapshotLoader",
    "UsageCounter",
    "adapter_fits",
    "attempt_order",
    "build_snapshot",
    "candidates",
    "create_app",
    "default_session",
    "default_version",
    "pool_serves",
    "should_fail_over",
    "usage_key",
]
