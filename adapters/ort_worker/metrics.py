"""Prometheus metrics of one worker, on a registry of its own (no module-global state).

Label values are only names of models that exist in the store or are loaded; requests for
unknown models are counted under `model=""`, so clients cannot grow the label set.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class WorkerMetrics:
    """Counters, histograms and gauges the worker updates and `/metrics` exposes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "mpfn_worker_requests",
            "Inference requests by model and HTTP status",
            ["model", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mpfn_worker_request_seconds",
            "Inference request latency in the worker",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.loads = Counter(
            "mpfn_worker_model_loads",
            "Model loads by model and outcome",
            ["model", "outcome"],
            registry=self.registry,
        )
        self.load_seconds = Histogram(
            "mpfn_worker_model_load_seconds",
            "Time to fetch and load a model",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=self.registry,
        )
        self.evictions = Counter(
            "mpfn_worker_model_evictions",
            "Models unloaded to make room under the memory budget",
            ["model"],
            registry=self.registry,
        )
        self.inflight = Gauge(
            "mpfn_worker_inflight", "Inferences running now", registry=self.registry
        )
        self.queued = Gauge(
            "mpfn_worker_queued", "Inferences waiting for a slot", registry=self.registry
        )
        self.loaded_models = Gauge(
            "mpfn_worker_loaded_models", "Model versions loaded", registry=self.registry
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
        self.inflight.set_function(inflight)
        self.queued.set_function(queued)
        self.loaded_models.set_function(loaded)
        self.memory_mb.set_function(memory_mb)

    def observe_request(self, model: str, status: int, seconds: float) -> None:
        self.requests.labels(model, str(status)).inc()
        self.latency.labels(model).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
