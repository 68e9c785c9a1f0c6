"""CloudWatch embedded metric format (EMF): a Prometheus registry as JSON log lines.

For hosts nothing scrapes (AWS Lambda): `EmfExporter.flush` turns what changed in a
`CollectorRegistry` since its previous flush into EMF documents, one JSON line per label
set (EMF carries dimension values as top-level members, so one document holds one set of
them). CloudWatch Logs extracts the metrics when the lines are written to stdout.

- counters (`*_total`) become the increase since the last flush, unit `Count`; series
  that did not change are left out;
- histograms become up to 100 representative values (each bucket's midpoint, repeated in
  proportion to how many observations fell into it), so CloudWatch percentiles follow
  the distribution; the exact count is the matching counter's;
- gauges are written with their current value.

Metric names are the Prometheus sample names, dimensions the Prometheus labels plus a
fixed set (`service`). Nothing here writes anywhere: the caller prints the lines.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

MAX_VALUES = 100  # EMF: at most 100 values per metric
MAX_METRICS = 100  # EMF: at most 100 metrics per directive
COMPACT: dict[str, Any] = {"separators": (",", ":")}

LabelSet = tuple[tuple[str, str], ...]
Value = float | list[float]
Groups = dict[LabelSet, list[tuple[str, str, Value]]]


def histogram_values(
    bounds: Sequence[float], counts: Sequence[float], limit: int = MAX_VALUES
) -> list[float]:
    """Representative values of a histogram's per-bucket counts (not cumulative).

    Bucket i covers (bounds[i-1], bounds[i]] (the first starts at 0); its midpoint stands
    for its observations, the `+Inf` bucket's lower bound for its own. With more than
    `limit` observations each value stands for several, allotted by largest remainder so
    exactly min(total, limit) values come back.
    """
    total = sum(counts)
    if total <= 0:
        return []
    points: list[float] = []
    lower = 0.0
    for upper in bounds:
        points.append(lower if math.isinf(upper) else (lower + upper) / 2)
        if not math.isinf(upper):
            lower = upper
    k = int(min(total, limit))
    shares = [c * k / total for c in counts]
    whole = [int(s) for s in shares]
    left = k - sum(whole)
    order = sorted(range(len(shares)), key=lambda i: whole[i] - shares[i])
    for i in order[:left]:
        whole[i] += 1
    return [round(points[i], 6) for i, n in enumerate(whole) for _ in range(n)]


def unit_of(name: str, kind: str) -> str:
    if kind == "counter":
        return "Count"
    if name.endswith("_seconds"):
        return "Seconds"
    return "None"


def document(
    namespace: str,
    timestamp_ms: int,
    fixed: Mapping[str, str],
    labels: LabelSet,
    metrics: Sequence[tuple[str, str, Value]],
) -> dict[str, Any]:
    """One EMF document: `metrics` is (name, unit, value) with the dimensions `fixed` +
    `labels`."""
    dims = [*fixed, *(k for k, _ in labels)]
    directives = [
        {
            "Namespace": namespace,
            "Dimensions": [dims],
            "Metrics": [{"Name": n, "Unit": u} for n, u, _ in metrics[i : i + MAX_METRICS]],
        }
        for i in range(0, len(metrics), MAX_METRICS)
    ]
    doc: dict[str, Any] = {"_aws": {"Timestamp": timestamp_ms, "CloudWatchMetrics": directives}}
    doc.update(fixed)
    doc.update(labels)
    for name, _, value in metrics:
        doc[name] = value
    return doc


class EmfExporter:
    """Remembers what it last wrote so every flush reports increases only."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        namespace: str = "mpfn",
        fixed: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.namespace = namespace
        self.fixed = dict(fixed or {})
        self.clock = clock
        self._last: dict[tuple[str, LabelSet], float] = {}
        self._last_buckets: dict[tuple[str, LabelSet], list[float]] = {}

    def collect(self) -> Groups:
        """What changed since the last call, grouped by label set (advances the state)."""
        groups: Groups = {}
        for family in self.registry.collect():
            if family.type == "counter":
                for s in family.samples:
                    if not s.name.endswith("_total"):
                        continue
                    labels = tuple(sorted(s.labels.items()))
                    key = (s.name, labels)
                    delta = s.value - self._last.get(key, 0.0)
                    self._last[key] = s.value
                    if delta > 0:
                        groups.setdefault(labels, []).append((s.name, "Count", delta))
            elif family.type == "gauge":
                for s in family.samples:
                    labels = tuple(sorted(s.labels.items()))
                    unit = unit_of(s.name, "gauge")
                    groups.setdefault(labels, []).append((s.name, unit, s.value))
            elif family.type == "histogram":
                self._histogram(family.name, family.samples, groups)
        return groups

    def _histogram(self, name: str, samples: Sequence[Any], groups: Groups) -> None:
        series: dict[LabelSet, list[tuple[float, float]]] = {}
        for s in samples:
            if not s.name.endswith("_bucket"):
                continue
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            series.setdefault(labels, []).append((float(s.labels["le"]), s.value))
        unit = unit_of(name, "histogram")
        for labels, buckets in series.items():
            buckets.sort()
            bounds = [b for b, _ in buckets]
            cumulative = [c for _, c in buckets]
            key = (name, labels)
            previous = self._last_buckets.get(key, [0.0] * len(cumulative))
            self._last_buckets[key] = cumulative
            delta = [c - p for c, p in zip(cumulative, previous, strict=True)]
            counts = [delta[0]] + [delta[i] - delta[i - 1] for i in range(1, len(delta))]
            values = histogram_values(bounds, counts)
            if values:
                groups.setdefault(labels, []).append((name, unit, values))

    def flush(self) -> list[str]:
        """The EMF lines for everything that changed since the last flush."""
        stamp = int(self.clock() * 1000)
        groups = sorted(self.collect().items())
        return [
            json.dumps(document(self.namespace, stamp, self.fixed, labels, metrics), **COMPACT)
            for labels, metrics in groups
        ]
