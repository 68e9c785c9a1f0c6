"""Per-model inference statistics of one router instance, in Triton's statistics shape.

The router counts every routed v2 inference (and KServe v1 `:predict`) of a registered
model by version: successes and failures with their total time in the router, and the
time spent waiting for a pool slot. `GET /v2/models[/{m}[/versions/{v}]]/stats` answers
them as Triton's statistics extension does; what only a server can measure (compute
phases, cache, batches, memory) is zero or empty. Counts live in memory and start at zero
with every instance.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["InferenceStats", "VersionStats"]

NS = 1_000_000_000
ZERO_PHASES = ("compute_input", "compute_infer", "compute_output", "cache_hit", "cache_miss")


@dataclass(slots=True)
class Duration:
    """A count and the total nanoseconds it took."""

    count: int = 0
    ns: int = 0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.ns += max(0, round(seconds * NS))

    def doc(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass(slots=True)
class VersionStats:
    """What one model version's requests did on this router."""

    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    last_inference_ms: int = 0


class InferenceStats:
    """Counts by (model, version); `clock` gives epoch seconds for `last_inference`."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._by_version: dict[tuple[str, str], VersionStats] = {}

    def record(self, model: str, version: str, ok: bool, seconds: float, queued_s: float) -> None:
        """Count one finished request of a registered model version."""
        stats = self._by_version.get((model, version))
        if stats is None:
            stats = self._by_version[(model, version)] = VersionStats()
        (stats.success if ok else stats.fail).add(seconds)
        if ok:
            stats.queue.add(queued_s)
        stats.last_inference_ms = int(self.clock() * 1000)

    def get(self, model: str, version: str) -> VersionStats:
        return self._by_version.get((model, version)) or VersionStats()

    def model_stats(self, model: str, version: str) -> dict[str, Any]:
        """One entry of Triton's `model_stats` list."""
        stats = self.get(model, version)
        inference: dict[str, Any] = {
            "success": stats.success.doc(),
            "fail": stats.fail.doc(),
            "queue": stats.queue.doc(),
        }
        inference.update({phase: Duration().doc() for phase in ZERO_PHASES})
        return {
            "name": model,
            "version": version,
            "last_inference": stats.last_inference_ms,
            "inference_count": stats.success.count,
            "execution_count": stats.success.count,
            "inference_stats": inference,
            "response_stats": {},
            "batch_stats": [],
            "memory_usage": [],
        }
