"""Explanations of routing decisions: candidates, exclusions, scores and the choice.

`Explanation` is what `mpfn route explain` prints and what a debug endpoint returns;
`route_reason` is its one-line summary for the `x-mpfn-route-reason` response header
(ASCII, no newlines). Building either is optional and never on the decision path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mpfn.routing.filter import Exclusion
from mpfn.routing.score import Score

REASON_HEADER = "x-mpfn-route-reason"


@dataclass(frozen=True, slots=True)
class Explanation:
    """One decision in full. `candidates` are ranked best first; the first `near` of
    them shared the traffic with `weights`; `skipped` models of the fallback chain had
    no candidate; `site` is the router's (None: none, or locality off)."""

    model: str
    objective: str
    latency_slo_ms: float | None
    max_cost: float | None
    pinned: str | None
    candidates: tuple[Score, ...]
    exclusions: tuple[Exclusion, ...]
    near: int
    weights: tuple[float, ...]
    choice: str | None
    skipped: tuple[str, ...]
    route_reason: str
    site: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (pools by id, USD per 1k requests)."""
        return {
            "model": self.model,
            "objective": self.objective,
            "latency_slo_ms": self.latency_slo_ms,
            "max_cost": self.max_cost,
            "pinned": self.pinned,
            "choice": self.choice,
            "route_reason": self.route_reason,
            "site": self.site,
            "skipped_models": list(self.skipped),
            "candidates": [
                {
                    "pool": s.pool.id,
                    "site": s.pool.site,
                    "expected_ms": round(s.latency_ms, 3),
                    "base_ms": round(s.base_ms, 3),
                    "queue_ms": round(s.queue_ms, 3),
                    "load_ms": round(s.load_ms, 3),
                    "cost_per_1k": s.cost * 1000.0,
                    "meets_slo": s.meets_slo,
                    "error_rate": round(s.error_rate, 4),
                    "weight": self.weights[i] if i < self.near else 0.0,
                }
                for i, s in enumerate(self.candidates)
            ],
            "excluded": [{"pool": e.pool, "reason": e.reason} for e in self.exclusions],
        }


def route_reason(
    objective: str,
    chosen: Score | None,
    n_candidates: int,
    n_excluded: int,
    *,
    near: int = 1,
    pinned: bool = False,
    fallback_from: str | None = None,
    left_site: str = "",
) -> str:
    """A one-line summary of a decision, for example
    `slo-then-cost: 4.1ms $0.0021/1k meets-slo; 2 of 3 near; 1 excluded`, and
    `left_site`, the clause saying why the choice is in another site than the router's."""
    if chosen is None:
        return f"no candidate; {n_excluded} excluded"
    parts = [
        f"{objective}: {chosen.latency_ms:.1f}ms ${chosen.cost * 1000.0:.3g}/1k"
        + (" meets-slo" if chosen.meets_slo else " misses-slo"),
        f"{near} of {n_candidates} near",
        f"{n_excluded} excluded",
    ]
    if pinned:
        parts.append("pinned")
    if fallback_from is not None:
        parts.append(f"fallback from {fallback_from}")
    if left_site:
        parts.append(left_site)
    return "; ".join(parts)
