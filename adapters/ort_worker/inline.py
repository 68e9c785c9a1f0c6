"""When a request runs on the worker's event loop instead of an inference thread.

Handing a run to an inference thread and taking its answer back costs about 100 µs of CPU
and two thread wake-ups per request on a small machine. A model whose runs take less than
that (the demo model runs in about 5 µs) answers sooner, and leaves more CPU to everyone,
when it runs on the event loop itself; a model whose runs take longer must never block
the loop. So the worker runs a request inline only when recent runs of its model were all
short (`RunTimes.slowest_s`, a decayed maximum) and its inputs are no bigger than those of
a run that was short: a request bigger than any seen goes to a thread, where it is
measured, so an unexpectedly large input cannot hold the loop.

Pure functions of what was measured; no clock, no state of their own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Default longest run (microseconds) that may happen on the event loop; 0 turns it off.
DEFAULT_INLINE_MAX_US = 100
#: Per run, the remembered slowest time shrinks by this factor before the new one counts.
DECAY = 0.9


@dataclass(frozen=True, slots=True)
class RunTimes:
    """What recent runs of one model took: a decayed maximum of their seconds (inf until
    one was measured) and the largest input, in elements, of a run within the limit."""

    slowest_s: float = math.inf
    largest_short: int = -1


def observe_run(times: RunTimes, seconds: float, elements: int, limit_s: float) -> RunTimes:
    """`times` after a run of `elements` input elements took `seconds`."""
    slowest = seconds if math.isinf(times.slowest_s) else max(seconds, times.slowest_s * DECAY)
    largest = max(times.largest_short, elements) if seconds <= limit_s else times.largest_short
    return RunTimes(slowest, largest)


def runs_inline(times: RunTimes, elements: int, limit_s: float) -> bool:
    """Whether a request of `elements` input elements may run on the event loop."""
    return limit_s > 0.0 and times.slowest_s <= limit_s and elements <= times.largest_short
