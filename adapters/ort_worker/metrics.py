"""Prometheus metrics of one worker: the pool-protocol series (`mpfn.adapters.poolmetrics`)
plus the worker's own (evictions, model memory), on a registry of its own."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge

from mpfn.adapters.poolmetrics import CONTENT_TYPE, PoolMetrics

__all__ = ["CONTENT_TYPE", "WorkerMetrics"]


class WorkerMetrics(PoolMetrics):
    """Counters, histograms and gauges the worker updates and `/metrics` exposes."""

    def __init__(self) -> None:
        super().__init__()
        self.evictions = Counter(
            "mpfn_worker_model_evictions",
            "Models unloaded to make room under the memory budget",
            ["model"],
            registry=self.registry,
        )
        self.memory_mb = Gauge(
            "mpfn_worker_model_memory_mb",
            "Memory reserved by loaded models (MB)",
            registry=self.registry,
        )

    def bind_gauges(
        self,
        inflight: Callable[[], float],
        queued: Callable[[], float],
        loaded: Callable[[], float],
        memory_mb: Callable[[], float],
    ) -> None:
        """Read gauges from the live objects at scrape time instead of updating them."""
        self.bind_admission(inflight, queued)
        self.loaded_models.set_function(loaded)
        self.memory_mb.set_function(memory_mb)
