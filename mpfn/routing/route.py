"""One routing decision: filter -> score -> pick, with fallback models and a failover plan.

`route` takes the model version to serve (a `Target`: version, serving pools, policy),
the router's `Feedback` and the request's hints, and returns a `Decision`: an ordered
plan of attempts (the picked pool, then the next-best ones, then pools of fallback
models when the plan is still short) and everything needed to explain it. It is pure:
the smooth round-robin weights it advanced come back in the decision for the caller to
commit. Cost is O(candidate pools); nothing here depends on the number of models.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

from mpfn.documents import ModelVersion, Policy, Pool
from mpfn.routing.breaker import DEFAULT_BREAKER, BreakerConfig
from mpfn.routing.compat import DEFAULT_FORMATS, FormatTable
from mpfn.routing.explain import Explanation, route_reason
from mpfn.routing.filter import Exclusion, filter_pools, policy_reason
from mpfn.routing.hints import NO_HINTS, PIN, HintError, Limits, RequestHints, tighten
from mpfn.routing.locality import left_site
from mpfn.routing.pick import swrr, weights_for
from mpfn.routing.score import Score, rank, score_pools
from mpfn.routing.stats import Feedback
from mpfn.routing.tuning import DEFAULT_CONFIG, RoutingConfig
from mpfn.routing.versions import policy_for


@dataclass(frozen=True, slots=True)
class Target:
    """A model version to route, the pools that may serve it and the policy to obey."""

    model: ModelVersion
    pools: Sequence[Pool]
    policy: Policy


class Attempt(NamedTuple):
    """One step of a failover plan: send `model` to `pool`, expected to take `expected_ms`."""

    pool: Pool
    model: ModelVersion
    expected_ms: float


class Decision(NamedTuple):
    """The outcome of `route`. `plan` is empty when nothing can serve the request.

    `wrr_key`/`wrr_next` are the round-robin weights to commit (see `RoutingState`);
    `strategy` names the pick strategy (`mpfn`, or a baseline of `strategies`); `site` is
    the router's site (None: none, or locality off) and `left_site` says why the choice
    is in another one (empty when it is not).
    """

    plan: tuple[Attempt, ...]
    limits: Limits
    requested: str
    ranked: tuple[Score, ...] = ()
    exclusions: tuple[Exclusion, ...] = ()
    near: int = 0
    weights: tuple[float, ...] = ()
    skipped: tuple[str, ...] = ()
    wrr_key: str = ""
    wrr_next: Mapping[str, float] = MappingProxyType({})
    strategy: str = "mpfn"
    site: str | None = None
    left_site: str = ""

    @property
    def chosen(self) -> Attempt | None:
        return self.plan[0] if self.plan else None

    @property
    def route_reason(self) -> str:
        first = self.plan[0] if self.plan else None
        return route_reason(
            self.limits.objective if self.strategy == "mpfn" else self.strategy,
            self.ranked[0] if self.ranked and first is not None else None,
            len(self.ranked),
            len(self.exclusions),
            near=self.near,
            pinned=self.limits.pool is not None,
            fallback_from=self.requested
            if first is not None and first.model.name != self.requested
            else None,
            left_site=self.left_site,
        )

    def explain(self) -> Explanation:
        first = self.plan[0] if self.plan else None
        return Explanation(
            model=f"{first.model.name}/{first.model.version}" if first else self.requested,
            objective=self.limits.objective if self.strategy == "mpfn" else self.strategy,
            latency_slo_ms=self.limits.latency_slo_ms,
            max_cost=self.limits.max_cost,
            pinned=self.limits.pool,
            candidates=self.ranked,
            exclusions=self.exclusions,
            near=self.near,
            weights=self.weights,
            choice=first.pool.id if first else None,
            skipped=self.skipped,
            route_reason=self.route_reason,
            site=self.site,
        )


def check_pin(target: Target, limits: Limits) -> None:
    """Raise HintError when the pinned pool does not serve the model or the policy forbids it."""
    pin = limits.pool
    if pin is None:
        return
    for pool in target.pools:
        if pool.id == pin:
            reason = policy_reason(limits, pool)
            if reason is not None:
                raise HintError(f"{PIN}: pool {pin!r} is not allowed: {reason}")
            return
    raise HintError(f"{PIN}: pool {pin!r} does not serve model {target.model.name!r}")


@dataclass(slots=True)
class _Ranked:
    target: Target
    ranked: list[Score]
    near: int
    excluded: list[Exclusion]


def _rank_target(
    target: Target,
    limits: Limits,
    feedback: Feedback,
    now: float,
    cfg: RoutingConfig,
    breaker_cfg: BreakerConfig,
    table: FormatTable,
) -> _Ranked:
    kept, excluded = filter_pools(
        target.model, target.pools, limits, feedback.breakers, now, breaker_cfg, table
    )
    scores, over_budget = score_pools(target.model, kept, feedback, limits, now, cfg)
    if over_budget:
        excluded.extend(over_budget)
    ranked, near = rank(scores, limits, cfg)
    return _Ranked(target, ranked, near, excluded)


def route(
    target: Target,
    feedback: Feedback,
    *,
    now: float,
    hints: RequestHints = NO_HINTS,
    fallbacks: Sequence[str] = (),
    resolve: Callable[[str], Target | None] | None = None,
    cfg: RoutingConfig = DEFAULT_CONFIG,
    breaker_cfg: BreakerConfig = DEFAULT_BREAKER,
    table: FormatTable = DEFAULT_FORMATS,
    limits: Limits | None = None,
) -> Decision:
    """Decide where to send one request for `target`.

    `fallbacks` are the models to use, in order, when `target` has no candidate or its
    plan is shorter than `cfg.max_attempts` (a `fallback_chain`; the target's own name is
    skipped); `resolve` turns a name into a `Target`. `now` is seconds from the router's
    clock (wall-clock time when `stats/` snapshots are shared).
    Raises HintError for a malformed request (a region or pin the policy forbids).
    `limits`, when given, are `tighten(target.policy, hints)`, already checked.
    """
    if limits is None:
        limits = tighten(target.policy, hints)
        check_pin(target, limits)
    first = _rank_target(target, limits, feedback, now, cfg, breaker_cfg, table)
    found: list[tuple[_Ranked, Limits]] = []
    skipped: list[str] = []
    exclusions: list[Exclusion] = first.excluded
    if first.ranked:
        found.append((first, limits))
    else:
        skipped.append(target.model.name)
    count = len(first.ranked)
    if count < cfg.max_attempts and resolve is not None:
        for name in fallbacks:
            if count >= cfg.max_attempts:
                break
            if name == target.model.name:
                continue
            fb = resolve(name)
            try:
                fb_limits = tighten(fb.policy, hints) if fb is not None else None
            except HintError:
                fb_limits = None
            if fb is None or fb_limits is None:
                skipped.append(name)
                continue
            r = _rank_target(fb, fb_limits, feedback, now, cfg, breaker_cfg, table)
            if not r.ranked:
                skipped.append(name)
                if not found:
                    exclusions = exclusions + r.excluded
                continue
            if not found:
                exclusions = exclusions + r.excluded
            found.append((r, fb_limits))
            count += len(r.ranked)
    if not found:
        return Decision(
            (),
            limits,
            target.model.name,
            (),
            tuple(exclusions),
            skipped=tuple(skipped),
            site=cfg.home,
        )
    primary, limits = found[0]
    ranked = primary.ranked
    near = primary.near
    weights = weights_for(ranked[:near], cfg)
    model = primary.target.model
    wrr_key = f"{model.name}/{model.version}"
    ids = [s.pool.id for s in ranked[:near]]
    chosen, wrr_next = swrr(ids, weights, feedback.wrr.get(wrr_key, {}))
    if chosen:
        ranked = [ranked[chosen], *ranked[:chosen], *ranked[chosen + 1 :]]
        weights = [weights[chosen], *weights[:chosen], *weights[chosen + 1 :]]
    plan = [Attempt(s.pool, model, s.latency_ms) for s in ranked]
    for r, _ in found[1:]:
        plan.extend(Attempt(s.pool, r.target.model, s.latency_ms) for s in r.ranked)
    left = ""
    if cfg.home is not None:
        pools = primary.target.pools
        left = left_site(ranked[0], ranked, pools, exclusions, model.name, limits, cfg)
    return Decision(
        tuple(plan[: cfg.max_attempts]),
        limits,
        target.model.name,
        tuple(ranked),
        tuple(exclusions),
        near,
        tuple(weights),
        tuple(skipped),
        wrr_key,
        wrr_next,
        site=cfg.home,
        left_site=left,
    )


def chain_resolver(
    policies: Mapping[str, Policy],
    lookup: Callable[[str], tuple[ModelVersion, Sequence[Pool]] | None],
) -> Callable[[str], Target | None]:
    """A `resolve` for `route` from a policy table and a (model version, pools) lookup."""

    def resolve(name: str) -> Target | None:
        found = lookup(name)
        policy = policy_for(policies, name)
        if found is None or policy is None:
            return None
        return Target(found[0], found[1], policy)

    return resolve
