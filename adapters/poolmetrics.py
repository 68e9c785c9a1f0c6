"""Prometheus metrics every pool-protocol server exposes at `GET /metrics`.

mpfn's ORT worker and the adapter server answer the router the same way, so they report
the same series under the same names (`mpfn_worker_*`: requests by model and HTTP status,
inference latency, model loads and their duration, in-flight and queued inferences,
loaded model versions) and the `ort` adapter's `stats()` reads either. Each server keeps
them on a registry of its own (no module-global state), so several servers can share a
process; buckets and rendering are mpfn's shared conventions (`mpfn.telemetry.metrics`).
Label values are only names of models known to exist; requests for other names
are counted under `model=""`, so clients cannot grow the label set.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mpfn.telemetry.metrics import CONTENT_TYPE, LATENCY_BUCKETS, LOAD_BUCKETS, render

__all__ = ["CONTENT_TYPE", "PoolMetrics"]


class PoolMetrics:
    """The series shared by every pool-protocol server, on `self.registry`."""

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
            "Inference request latency in the server",
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
            buckets=LOAD_BUCKETS,
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
        # (model, status) -> its request counter and latency histogram (labels bounded above)
        self._series: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    def bind_admission(self, inflight: Callable[[], float], queued: Callable[[], float]) -> None:
        """Read the in-flight and queued gauges from the live admission at scrape time."""
        self.inflight.set_function(inflight)
        self.queued.set_function(queued)

    def observe_request(self, model: str, status: int, seconds: float) -> None:
        series = self._series.get((model, status))
        if series is None:  # `labels` costs microseconds: look each pair up once
            series = self._series[(model, status)] = (
                self.requests.labels(model, str(status)),
                self.latency.labels(model),
            )
        series[0].inc()
        series[1].observe(seconds)

    def observe_load(self, model: str, seconds: float | None) -> None:
        """A load of `model` that took `seconds`; None when it failed."""
        self.loads.labels(model, "error" if seconds is None else "ok").inc()
        if seconds is not None:
            self.load_seconds.observe(seconds)

    def render(self) -> bytes:
        return render(self.registry)
