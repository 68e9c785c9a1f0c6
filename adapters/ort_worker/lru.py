"""Memory-budget decisions for loaded models: pure functions, no sessions, no clocks.

`choose_evictions` picks least-recently-used models to unload so a new one fits in the
budget, never touching a model with requests in flight. The repository applies the choice.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

#: Resident memory of an ONNX Runtime session relative to its model file, when the model
#: document does not say (weights plus arena and graph copies).
SIZE_FACTOR = 3.0
_MIB = 1024 * 1024
_DIGITS = re.compile(r"(\d+)")


@dataclass(frozen=True, slots=True)
class Resident:
    """What the eviction decision needs to know about one loaded model."""

    key: str
    memory_mb: float
    last_used: int
    inflight: int


def choose_evictions(
    loaded: Sequence[Resident], need_mb: float, budget_mb: float
) -> list[str] | None:
    """Keys to evict (oldest first) so `need_mb` more fits in `budget_mb`.

    Returns [] when it already fits and None when it cannot fit even after evicting every
    idle model. A budget of 0 means unlimited.
    """
    if budget_mb <= 0:
        return []
    used = sum(r.memory_mb for r in loaded)
    if used + need_mb <= budget_mb:
        return []
    chosen: list[str] = []
    for resident in sorted(loaded, key=lambda r: r.last_used):
        if resident.inflight > 0:
            continue
        chosen.append(resident.key)
        used -= resident.memory_mb
        if used + need_mb <= budget_mb:
            return chosen
    return None


def estimate_memory_mb(document_mb: float, artifact_bytes: int) -> float:
    """Memory to reserve for a model: the document's figure, else artifact size x factor."""
    if document_mb > 0:
        return document_mb
    return max(1.0, artifact_bytes * SIZE_FACTOR / _MIB)


def version_sort_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Natural order: `2` < `10`, `v1.9` < `v1.10`; digits sort before letters."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in _DIGITS.split(version) if part
    )


def latest_version(versions: Sequence[str]) -> str | None:
    """The highest version by natural sort, or None for an empty list."""
    return max(versions, key=version_sort_key) if versions else None
