"""Tunable constants of the routing model, in one frozen value.

Every decision function takes a `RoutingConfig`; nothing reads module-level knobs, so a
router (or a test) can run with its own settings side by side with another's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from mpfn.documents import SITE_PATTERN, Pool

_SITE_RE = re.compile(SITE_PATTERN)
SITE_RULE = "lower-case letters, digits and '-', starting with a letter, at most 32 characters"


def is_site_name(name: str) -> bool:
    """Whether `name` may name a site (a pool's `site`, a router's)."""
    return _SITE_RE.match(name) is not None


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    """Priors, smoothing and tolerances used by filter, score and pick.

    - `prior_latency_ms`: expected latency of a pool never observed.
    - `default_load_ms`: expected load time of a model without `load_time_ms`.
    - `assume_loaded`: a pool that never said which models it holds (no answer, no
      `stats/` snapshot) is expected to hold the model, so it gets tried and its first
      answer (with `x-mpfn-load-ms` if it had to load) tells the truth. False expects a
      load there, which keeps such pools out of traffic until a snapshot says otherwise.
    - `ewma_alpha`: weight of a new latency sample in the moving average.
    - `stale_half_life_s`: an average not refreshed for this long counts half towards the
      estimate, the rest comes from the next fallback (pool average, then the prior), so a
      pool that was slow once is tried again eventually.
    - `report_ttl_s`: adapter-reported in-flight/queued counts older than this are ignored.
    - `tolerance`: candidates whose objective value is within this fraction of the best
      share the traffic; `min_weight` keeps a slow member of that set from starving.
    - `cost_epsilon`: USD per request under which costs count as equal (free pools).
    - `error_alpha`: weight of one answer in a pool's moving failure rate.
    - `max_error_rate`: pools failing more often than this rank after every healthier
      candidate (flaky pools are used only when nothing better is left).
    - `max_attempts`: length cap of a failover plan, fallback models included.
    - `max_chain`: most models in one fallback chain (the primary included).
    - `site`: the site the router runs in (None: no site, pools' sites are ignored).
    - `locality`: False ignores every site (to compare decisions with and without it).
    - `cross_site_ms`: added to the prior of a pool in another site that was never
      observed (observed latencies already include the distance).
    - `cross_site_cost_per_1k`: USD per 1k requests added to the cost of a pool in another
      site: the egress of sending requests and answers there, from the provider's price.
    """

    prior_latency_ms: float = 50.0
    default_load_ms: float = 2_000.0
    assume_loaded: bool = True
    ewma_alpha: float = 0.2
    stale_half_life_s: float = 60.0
    report_ttl_s: float = 10.0
    tolerance: float = 0.25
    min_weight: float = 0.05
    cost_epsilon: float = 1e-9
    error_alpha: float = 0.1
    max_error_rate: float = 0.2
    max_attempts: int = 4
    max_chain: int = 8
    site: str | None = None
    locality: bool = True
    cross_site_ms: float = 30.0
    cross_site_cost_per_1k: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.ewma_alpha <= 1.0:
            raise ValueError("ewma_alpha must be in (0, 1]")
        if self.prior_latency_ms <= 0 or self.default_load_ms < 0:
            raise ValueError("prior_latency_ms must be > 0 and default_load_ms >= 0")
        if self.stale_half_life_s <= 0 or self.report_ttl_s < 0:
            raise ValueError("stale_half_life_s must be > 0 and report_ttl_s >= 0")
        if self.tolerance < 0 or not 0.0 < self.min_weight <= 1.0:
            raise ValueError("tolerance must be >= 0 and min_weight in (0, 1]")
        if not 0.0 < self.error_alpha <= 1.0 or not 0.0 <= self.max_error_rate <= 1.0:
            raise ValueError("error_alpha must be in (0, 1] and max_error_rate in [0, 1]")
        if self.max_attempts < 1 or self.max_chain < 1:
            raise ValueError("max_attempts and max_chain must be >= 1")
        if self.site is not None and not is_site_name(self.site):
            raise ValueError(f"site {self.site!r} is not a site name ({SITE_RULE})")
        for value in (self.cross_site_ms, self.cross_site_cost_per_1k):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError("cross_site_ms and cross_site_cost_per_1k must be finite, >= 0")

    @property
    def home(self) -> str | None:
        """The site routing prefers: the router's, or None when locality is off."""
        return self.site if self.locality else None

    def away(self, pool: Pool) -> bool:
        """Whether `pool` is in another site than the router's (a pool without a site, or
        a router without one or with locality off, is never away)."""
        home = self.home
        return home is not None and pool.site is not None and pool.site != home


DEFAULT_CONFIG = RoutingConfig()
