"""When to send a batch: pure functions of a snapshot of one model's queue.

`decide` says how many waiting rows to run now, or how long to wait for more. It waits only
when the model is busy (a batch of it is running), a slot is free, and the rows waiting
cannot keep up with the arrival rate at the per-row cost the model has shown; and never
longer than `max_queue_delay_s` nor past the latency target. A request that finds the model
idle is sent at once, so the delay is zero at low load. Under sustained load the target
is also at least each slot's share of the rows in the system (Little's law: arrival rate
times the time a row spends queued and running), so that clients waiting on a running batch
are not answered in a trickle of small, inefficient batches that keep the slots busy for
less work.

The inputs it needs are kept up to date by two more pure functions: `observe_cost` (a
least-squares fit of batch run time = fixed + per_row * rows, weighted towards recent
batches) and `count_arrival` (an arrival rate, exponentially decayed in time). Nothing here
reads a clock, keeps state or does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: Share of the latency target that queueing plus one batch's run may take.
SLO_SHARE = 0.5
#: Utilisation the batch size aims for: rows per batch such that slots are busy this much.
TARGET_UTILISATION = 0.8
#: Weight a new run time has in the cost fit (the others decay by 1 - this).
COST_WEIGHT = 0.05
#: Below this fixed cost per batch (as a share of one row's cost) batching saves nothing.
MIN_FIXED_SHARE = 0.01
#: Time constant of the arrival rate estimate (seconds).
RATE_WINDOW_S = 0.2


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """What one model allows: rows per batch, longest wait, sizes sent when reached and
    its latency target (seconds)."""

    max_batch_size: int
    max_queue_delay_s: float
    preferred: tuple[int, ...] = ()
    latency_target_s: float = 0.1

    @property
    def enabled(self) -> bool:
        return self.max_batch_size > 1


@dataclass(frozen=True, slots=True)
class CostFit:
    """Exponentially weighted sums for fitting seconds = fixed + per_row * rows."""

    n: float = 0.0
    x: float = 0.0
    xx: float = 0.0
    y: float = 0.0
    xy: float = 0.0

    def fixed_and_per_row(self) -> tuple[float, float]:
        """(fixed seconds per batch, seconds per row); (0, mean per row) until batches of
        different sizes have been seen, and never negative."""
        if self.n <= 0.0 or self.x <= 0.0:
            return 0.0, 0.0
        mean_x, mean_y = self.x / self.n, self.y / self.n
        var = self.xx / self.n - mean_x * mean_x
        if var <= 1e-9 * max(1.0, mean_x * mean_x):
            return 0.0, self.y / self.x
        slope = (self.xy / self.n - mean_x * mean_y) / var
        if slope <= 0.0:  # bigger batches were not slower: all of it is fixed cost
            return max(mean_y, 0.0), 0.0
        fixed = mean_y - slope * mean_x
        if fixed < 0.0:
            return 0.0, self.y / self.x
        return fixed, slope

    def seconds(self, rows: int) -> float:
        fixed, per_row = self.fixed_and_per_row()
        return fixed + per_row * rows


def observe_cost(fit: CostFit, rows: int, seconds: float, weight: float = COST_WEIGHT) -> CostFit:
    """`fit` after a batch of `rows` took `seconds` to run."""
    keep = 1.0 - weight if fit.n > 0 else 0.0
    return CostFit(
        n=fit.n * keep + 1.0,
        x=fit.x * keep + rows,
        xx=fit.xx * keep + rows * rows,
        y=fit.y * keep + seconds,
        xy=fit.xy * keep + rows * seconds,
    )


@dataclass(frozen=True, slots=True)
class Rate:
    """Arrivals per second, as an exponentially decayed count of rows as of `at`."""

    count: float = 0.0
    at: float = 0.0

    def per_second(self, now: float, window_s: float = RATE_WINDOW_S) -> float:
        return self.count * math.exp(-max(0.0, now - self.at) / window_s) / window_s


def count_arrival(rate: Rate, now: float, rows: int = 1, window_s: float = RATE_WINDOW_S) -> Rate:
    """`rate` after `rows` arrived at `now`."""
    decayed = rate.count * math.exp(-max(0.0, now - rate.at) / window_s)
    return Rate(decayed + rows, max(now, rate.at))


@dataclass(frozen=True, slots=True)
class QueueView:
    """One model's queue at a moment: rows waiting (of the oldest request's shape), how long
    the oldest has waited, batches of this model running, slots free now (0 when every
    concurrency slot is taken or others wait for one), rows arriving per second, the
    fitted batch cost, how long rows recently spent from arrival to answer, and whether a
    slot was taken in the admission line for these rows (it is not held back idle)."""

    waiting: int
    oldest_wait_s: float
    running: int
    free_slots: int
    arrival_per_s: float
    cost: CostFit
    sojourn_s: float = 0.0  # recent mean time from a row's arrival to its answer
    holding: bool = False  # one of the free slots was taken in the admission line for us


@dataclass(frozen=True, slots=True)
class Decision:
    """`take` rows now (0: none), else wait up to `wait_s` (inf: until something changes)."""

    take: int
    wait_s: float = math.inf


WAIT_FOR_SLOT = Decision(0)


def batching_pays(cost: CostFit) -> bool:
    """Whether a batch has a fixed cost worth sharing (bigger batches raise throughput)."""
    fixed, per_row = cost.fixed_and_per_row()
    return fixed > MIN_FIXED_SHARE * per_row


def rows_to_keep_up(arrival_per_s: float, cost: CostFit, slots: int) -> float:
    """Smallest rows per batch at which `slots` busy at TARGET_UTILISATION serve the
    arrival rate: slots * b / (fixed + per_row * b) >= rate / utilisation; inf if none."""
    fixed, per_row = cost.fixed_and_per_row()
    demand = arrival_per_s / TARGET_UTILISATION
    if not batching_pays(cost) or demand <= 0.0:
        return 1.0
    room = slots - demand * per_row
    if room <= 0.0:
        return math.inf
    return demand * fixed / room


def slot_share(view: QueueView) -> float:
    """Each slot's share of the rows in the system (arrival rate x time in system)."""
    slots = view.running + view.free_slots
    return view.arrival_per_s * view.sojourn_s / slots if slots > 0 else 0.0


def share_cap(rows: int, share: float) -> int:
    """Rows to send while another batch runs: `share` at most when it is known (the rest
    are the next slot's), so that one batch does not take every waiting client while the
    other slot runs a trickle of small ones."""
    return min(rows, math.ceil(share)) if share >= 1.0 else rows


def fit_preferred(rows: int, preferred: Sequence[int]) -> int:
    """The largest preferred size within `rows`, else `rows`."""
    fits = [size for size in preferred if size <= rows]
    return max(fits) if fits else rows


def decide(view: QueueView, limits: BatchLimits) -> Decision:
    """How many waiting rows to run now, or how long to wait for more. A slot taken in the
    admission line is used at once (other models' requests may wait behind it)."""
    decision = _decide(view, limits)
    if not view.holding or decision.take or view.waiting <= 0:
        return decision
    rows = min(view.waiting, max(1, limits.max_batch_size))
    pays = view.running and batching_pays(view.cost)
    return Decision(share_cap(rows, slot_share(view) if pays else 0.0))


def _decide(view: QueueView, limits: BatchLimits) -> Decision:
    if view.waiting <= 0 or view.free_slots <= 0:
        return WAIT_FOR_SLOT
    top = max(1, limits.max_batch_size)
    if view.waiting >= top:
        return Decision(fit_preferred(top, limits.preferred))
    if view.running == 0:  # idle: holding a request back cannot raise throughput
        return Decision(view.waiting)
    if view.waiting in limits.preferred:
        return Decision(view.waiting)
    keep_up = rows_to_keep_up(view.arrival_per_s, view.cost, view.running + view.free_slots)
    share = slot_share(view) if batching_pays(view.cost) else 0.0
    target = min(float(top), max(keep_up, share))
    bigger = [size for size in limits.preferred if size >= target]
    if bigger:
        target = float(bigger[0])
    if view.waiting >= target:
        return Decision(share_cap(view.waiting, target if share else 0.0))
    budget = min(
        limits.max_queue_delay_s,
        limits.latency_target_s * SLO_SHARE - view.cost.seconds(math.ceil(target)),
    )
    left = budget - view.oldest_wait_s
    if left <= 0.0 or view.arrival_per_s <= 0.0:
        return Decision(share_cap(view.waiting, share))
    return Decision(0, min(left, (target - view.waiting) / view.arrival_per_s))
