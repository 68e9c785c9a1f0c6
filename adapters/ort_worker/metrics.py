"""Prometheus metrics of one worker: the pool-protocol series (`mpfn.adapters.poolmetrics`)
plus the worker's own (evictions, model memory, batch sizes and queue delay, runs on the
event loop), on a registry of its own."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

from mpfn.adapters.poolmetrics import CONTENT_TYPE, PoolMetrics

__all__ = ["CONTENT_TYPE", "WorkerMetrics"]

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
QUEUE_DELAY_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)


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
        self.batch_size = Histogram(
            "mpfn_worker_batch_size",
            "Rows per onnxruntime run of batched models",
            ["model"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.batch_queue_seconds = Histogram(
            "mpfn_worker_batch_queue_seconds",
            "Time a request of a batched model waited before its batch was sent",
            ["model"],
            buckets=QUEUE_DELAY_BUCKETS,
            registry=self.registry,
        )
        self.inline_runs = Counter(
            "mpfn_worker_inline_runs",
            "Inferences run on the event loop instead of an inference thread (short models)",
            ["model"],
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
