"""Budget pacing for the forecast policy: which probability threshold spends the budget left.

The policy keeps a model warm for a minute when its predicted arrival probability clears a
threshold; pacing picks that threshold from the probabilities the policy predicted in the
past (one array per minute, one entry per model). Two estimators, both pure functions:

- `uniform_threshold`: the spend rate left (budget minutes per remaining minute) applied to
  the pooled probabilities of the history — assumes the future looks like its average.
- `aligned_threshold`: time-of-week aligned. The remaining `R` minutes are projected from
  the same stretch one week earlier (`history[-WEEK:][:R]`), scaled by the traffic trend
  (expected arrivals over the last `growth_minutes` vs the same minutes a week before).
  Weekends stay cheap and weekdays expensive, and a week with twice the traffic does not
  overspend early. Re-run every hour, it is also a feedback loop: overspending so far
  shrinks the budget left and raises the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

WEEK_MIN = 7 * 1440
GROWTH_CLIP = (0.5, 3.0)


def _top_k_threshold(probs: np.ndarray, k: int) -> float:
    """The smallest threshold that keeps at most `k` of `probs` (k <= 0: keep none)."""
    if k <= 0 or probs.size == 0:
        return math.inf
    if k >= probs.size:
        return 0.0
    return float(np.partition(probs, probs.size - k)[probs.size - k])


def uniform_threshold(
    history: Sequence[np.ndarray], remaining_min: float, budget_left_min: float
) -> float:
    """Threshold spending `budget_left_min` over `remaining_min` at the history's average."""
    if not history or remaining_min <= 0:
        return math.inf
    per_minute = budget_left_min / remaining_min
    return _top_k_threshold(np.concatenate(list(history)), int(per_minute * len(history)))


def traffic_growth(history: Sequence[np.ndarray], growth_minutes: int) -> float:
    """Expected arrivals in the last `growth_minutes` over the same minutes one week
    earlier, clipped to `GROWTH_CLIP`; needs `WEEK_MIN + growth_minutes` of history."""
    if growth_minutes <= 0 or len(history) < WEEK_MIN + growth_minutes:
        return 1.0
    n = len(history)
    recent = sum(float(a.sum()) for a in _slice(history, n - growth_minutes, n))
    before = sum(
        float(a.sum()) for a in _slice(history, n - WEEK_MIN - growth_minutes, n - WEEK_MIN)
    )
    if before <= 0:
        return GROWTH_CLIP[1] if recent > 0 else 1.0
    return min(max(recent / before, GROWTH_CLIP[0]), GROWTH_CLIP[1])


def aligned_threshold(
    history: Sequence[np.ndarray],
    remaining_min: float,
    budget_left_min: float,
    growth_minutes: int = 1440,
) -> float:
    """Threshold whose projected spend over the remaining minutes equals the budget left.

    `history[i]` holds the probabilities predicted at minute `i` (oldest first, the last
    entry is the current minute). Falls back to `uniform_threshold` with less than a week
    (plus the growth window) of history."""
    if remaining_min <= 0:
        return math.inf
    if len(history) < WEEK_MIN + growth_minutes:
        return uniform_threshold(history, remaining_min, budget_left_min)
    remaining = max(1, int(min(remaining_min, WEEK_MIN)))
    n = len(history)
    segment = _slice(history, n - WEEK_MIN, n - WEEK_MIN + remaining)
    growth = traffic_growth(history, growth_minutes)
    scale = remaining_min / remaining  # a window longer than a week repeats the week
    k = int(budget_left_min / (growth * scale))
    return _top_k_threshold(np.concatenate(segment), k)


def _slice(history: Sequence[np.ndarray], lo: int, hi: int) -> list[np.ndarray]:
    return [history[i] for i in range(max(lo, 0), min(hi, len(history)))]
