"""Routing core: filter -> score -> pick, as pure functions over typed inputs.

`route` turns a model version, its candidate pools, a policy and the router's feedback
into an ordered failover plan with an explanation. Request hints (`parse_hints`),
circuit breakers, version splits, fallback chains and the `stats/` snapshot document
live in their own modules; `RoutingState` keeps one router's feedback. Nothing in this
package does I/O or reads a clock.
"""

from mpfn.routing.breaker import Breaker, BreakerConfig, BreakerState
from mpfn.routing.compat import (
    DEFAULT_FORMATS,
    FormatTable,
    Protocol,
    adapter_serves,
    speaks,
    with_formats,
)
from mpfn.routing.explain import REASON_HEADER, Explanation
from mpfn.routing.failover import deadline_for, is_failure, remaining_budget, retryable
from mpfn.routing.filter import Exclusion, filter_pools
from mpfn.routing.hints import NO_HINTS, HintError, Limits, RequestHints, parse_hints, tighten
from mpfn.routing.pick import swrr, weights_for
from mpfn.routing.route import Attempt, Decision, Target, chain_resolver, route
from mpfn.routing.score import Score, rank, score_pools
from mpfn.routing.state import RoutingState
from mpfn.routing.stats import (
    NO_FEEDBACK,
    Ewma,
    Feedback,
    PoolStats,
    observe,
    read_load,
    read_load_ms,
)
from mpfn.routing.statsdoc import PoolStatsDocument, stats_key
from mpfn.routing.strategies import STRATEGIES, Strategy, route_baseline
from mpfn.routing.tuning import DEFAULT_CONFIG, RoutingConfig
from mpfn.routing.versions import choose_version, fallback_chain, policy_for, resolve_version

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_FORMATS",
    "NO_FEEDBACK",
    "NO_HINTS",
    "REASON_HEADER",
    "STRATEGIES",
    "Attempt",
    "Breaker",
    "BreakerConfig",
    "BreakerState",
    "Decision",
    "Ewma",
    "Exclusion",
    "Explanation",
    "Feedback",
    "FormatTable",
    "HintError",
    "Limits",
    "PoolStats",
    "PoolStatsDocument",
    "Protocol",
    "RequestHints",
    "RoutingConfig",
    "RoutingState",
    "Score",
    "Strategy",
    "Target",
    "adapter_serves",
    "chain_resolver",
    "choose_version",
    "deadline_for",
    "fallback_chain",
    "filter_pools",
    "is_failure",
    "observe",
    "parse_hints",
    "policy_for",
    "rank",
    "read_load",
    "read_load_ms",
    "remaining_budget",
    "resolve_version",
    "retryable",
    "route",
    "route_baseline",
    "score_pools",
    "speaks",
    "stats_key",
    "swrr",
    "tighten",
    "weights_for",
    "with_formats",
]
