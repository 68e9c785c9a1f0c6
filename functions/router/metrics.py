"""The router's Prometheus metrics, on a registry of its own (no module-global state).

Updated once per request on the hot path (`observe`: a dictionary lookup, a bisection and
two additions into plain per-series accumulators, which `RequestSeries` turns into the
request counter and latency histogram when collected); per-pool gauges (circuit state,
in-flight attempts) and the state's age are read from the live router at collection
time, so they cost nothing per request. Label values are bounded: `model` is a name the
registry knows or `_unknown`, `pool` a registered pool id or `none`, `status` an HTTP
status class, and `reason` one of `REJECTIONS`. Names and meanings: docs/observability.md.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from mpfn.telemetry.metrics import LATENCY_BUCKETS, LOAD_BUCKETS, render, status_class

log = logging.getLogger("mpfn.router")

BREAKER_VALUES = {"closed": 0.0, "half-open": 1.0, "open": 2.0}
REJECTIONS = (
    "unauthenticated",
    "forbidden",
    "rate_limited",
    "too_large",
    "too_many_elements",
    "at_capacity",
)
QUEUE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class LiveState(Collector):
    """Gauges read from the router when scraped: circuit state, in-flight attempts and
    admission limit per registered pool, requests waiting for a slot, and the age of the
    state snapshot."""

    def __init__(
        self,
        pools: Callable[[], Iterable[str]],
        breaker: Callable[[str], str],
        inflight: Callable[[str], int],
        state_age_s: Callable[[], float],
        limit: Callable[[str], float | None] = lambda pool: None,
        waiting: Callable[[], int] = lambda: 0,
    ) -> None:
        self.pools = pools
        self.breaker = breaker
        self.inflight = inflight
        self.state_age_s = state_age_s
        self.limit = limit
        self.waiting = waiting

    def collect(self) -> Iterator[GaugeMetricFamily]:
        circuit = GaugeMetricFamily(
            "mpfn_router_circuit_state",
            "Circuit breaker per pool: 0 closed, 1 half-open, 2 open",
            labels=["pool"],
        )
        inflight = GaugeMetricFamily(
            "mpfn_router_pool_inflight",
            "Attempts this router has sent to the pool and not yet seen answered",
            labels=["pool"],
        )
        limits = GaugeMetricFamily(
            "mpfn_router_admission_limit",
            "Requests this router lets a pool have in flight (adaptive; absent: admission off)",
            labels=["pool"],
        )
        for pool in self.pools():
            circuit.add_metric([pool], BREAKER_VALUES.get(self.breaker(pool), 0.0))
            inflight.add_metric([pool], float(self.inflight(pool)))
            limit = self.limit(pool)
            if limit is not None:
                limits.add_metric([pool], limit)
        yield circuit
        yield inflight
        yield limits
        yield GaugeMetricFamily(
            "mpfn_router_admission_waiting",
            "Requests waiting for a pool slot now",
            value=float(self.waiting()),
        )
        yield GaugeMetricFamily(
            "mpfn_router_state_age_seconds",
            "Seconds since the registry snapshot was last read successfully",
            value=self.state_age_s(),
        )


class Series:
    """One (model, pool, status) series: per-bucket counts (not cumulative) and the sum."""

    __slots__ = ("buckets", "total")

    def __init__(self, size: int) -> None:
        self.buckets = [0] * size
        self.total = 0.0


class RequestSeries(Collector):
    """`mpfn_router_requests_total` and `mpfn_router_request_seconds`, from accumulators
    updated without locks on the event loop (the count is the sum of the buckets, so a
    collection from another thread always sees a consistent histogram)."""

    LABELS = ("model", "pool", "status")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = (*bounds, math.inf)
        self.les = [floatToGoString(b) for b in self.bounds]
        self.series: dict[tuple[str, str, str], Series] = {}

    def observe(self, key: tuple[str, str, str], seconds: float) -> None:
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = Series(len(self.bounds))
        series.buckets[bisect_left(self.bounds, seconds)] += 1
        series.total += seconds

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        requests = CounterMetricFamily(
            "mpfn_router_requests", "Requests on routed paths", labels=self.LABELS
        )
        latency = HistogramMetricFamily(
            "mpfn_router_request_seconds",
            "Time from request to the end of the answer, in the router",
            labels=self.LABELS,
        )
        for key, series in list(self.series.items()):
            counts = list(series.buckets)
            cumulative, running = [], 0
            for le, n in zip(self.les, counts, strict=True):
                running += n
                cumulative.append((le, float(running)))
            requests.add_metric(key, float(running))
            latency.add_metric(key, cumulative, series.total)
        yield requests
        yield latency


class RouterMetrics:
    """Counters and histograms the router updates, and the registry `/metrics` renders."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = RequestSeries(LATENCY_BUCKETS)
        r.register(self.requests)
        self.failovers = Counter(
            "mpfn_router_failovers",
            "Attempts that failed (connection error, timeout, retryable 5xx) and were left",
            ["model", "pool"],
            registry=r,
        )
        self.cold_starts = Counter(
            "mpfn_router_cold_starts",
            "Answers that paid for a model load (carried x-mpfn-load-ms)",
            ["model", "pool"],
            registry=r,
        )
        self.load_seconds = Histogram(
            "mpfn_router_cold_start_load_seconds",
            "Model load time adapters reported in x-mpfn-load-ms",
            ["pool"],
            buckets=LOAD_BUCKETS,
            registry=r,
        )
        self.rejections = Counter(
            "mpfn_router_rejections",
            "Requests refused at the edge, by reason",
            ["reason"],
            registry=r,
        )
        self.held_refusals = Counter(
            "mpfn_router_held_refusals",
            "Refusals held until the Retry-After of the connection's previous refusal passed "
            "(it sent again before)",
            registry=r,
        )
        self.queue_seconds = Histogram(
            "mpfn_router_admission_queue_seconds",
            "Time requests waited for a pool slot (admitted or shed after waiting)",
            buckets=QUEUE_BUCKETS,
            registry=r,
        )
        self.refreshes = Counter(
            "mpfn_router_state_refreshes",
            "Reads of the registry snapshot from the store, by outcome",
            ["outcome"],
            registry=r,
        )
        self.inflight = 0
        Gauge(
            "mpfn_router_inflight", "Requests this router is serving now", registry=r
        ).set_function(lambda: self.inflight)
        # children looked up once: a flood of refusals counts each at the cost of an add
        self._rejected = {reason: self.rejections.labels(reason) for reason in REJECTIONS}
        for outcome in ("ok", "error"):
            self.refreshes.labels(outcome)

    def watch(self, live: LiveState) -> None:
        """Add the gauges read from the live router."""
        self.registry.register(live)

    def observe(
        self,
        model: str,
        pool: str,
        status: int,
        seconds: float,
        failed: Sequence[str] = (),
        load_ms: str | None = None,
    ) -> None:
        """Count one finished request (labels must already be bounded)."""
        self.requests.observe((model, pool, status_class(status)), seconds)
        for failed_pool in failed:
            self.failovers.labels(model, failed_pool).inc()
        if load_ms is not None:
            self.cold_starts.labels(model, pool).inc()
            try:
                self.load_seconds.labels(pool).observe(max(0.0, float(load_ms)) / 1000.0)
            except ValueError:
                log.debug("pool %s sent an unreadable x-mpfn-load-ms", pool)

    def reject(self, reason: str) -> None:
        child = self._rejected.get(reason)
        if child is None:
            child = self._rejected[reason] = self.rejections.labels(reason)
        child.inc()

    def render(self) -> bytes:
        return render(self.registry)
