"""One request's routing decision against the router's snapshot and feedback.

`decide` resolves the model and version (version splits, sticky by a route key), the
policy and the fallback chain from the snapshot, then runs the routing core
(`mpfn.routing.route`, or a baseline strategy) and returns its `Decision`. The router's
hot path and `mpfn route explain` both call it, so an explanation is the decision the
router would make. It reads only in-memory values: no I/O, and the clock reading, the
random generator and the round-robin turn are passed in.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mpfn.documents import ModelVersion, Policy
from mpfn.routing import (
    DEFAULT_CONFIG,
    NO_HINTS,
    BreakerConfig,
    Decision,
    Feedback,
    RequestHints,
    RoutingConfig,
    Strategy,
    Target,
    resolve_version,
    route,
    route_baseline,
)
from mpfn.routing.breaker import DEFAULT_BREAKER
from mpfn.routing.errors import RouteError
from mpfn.routing.filter import Exclusion
from mpfn.routing.hints import Limits, tighten
from mpfn.routing.serving import Protocol, candidates
from mpfn.routing.snapshot import Snapshot

#: Why a pool at zero replicas is not a candidate (the router may wake it).
ASLEEP = "asleep: 0 replicas, wakes on request"


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """What the router knows about a request before choosing a pool.

    `version` is the one the path names (None: version-less); `key` is the route key
    that keeps a caller on one version of a split."""

    protocol: Protocol
    model: str
    version: str | None = None
    hints: RequestHints = NO_HINTS
    key: str | None = None


def default_policy(timeout_s: float) -> Policy:
    """The policy of models when the store holds neither theirs nor a `default` one."""
    return Policy(name="default", timeout_ms=timeout_s * 1000.0)


def pick_version(
    snapshot: Snapshot,
    name: str,
    versions: Mapping[str, ModelVersion],
    policy: Policy,
    rng: random.Random,
    key: str | None,
    requested: str | None,
) -> str | None:
    """The version to serve: requested, else the policy's split, else the latest."""
    if requested is None and not policy.version_weights:
        latest = snapshot.latest.get(name)
        if latest is not None:
            return latest
    return resolve_version(versions.keys(), policy, rng, key, requested)


@dataclass(frozen=True, slots=True)
class Plain:
    """What a request for a model names nothing but the model resolves to, the same for
    every such request against one snapshot: computed once (`plain_target`)."""

    target: Target
    limits: Limits
    fallbacks: tuple[str, ...]
    fallback_policy: Policy  # the `fallback_policy` it was resolved with


def plain_target(
    snapshot: Snapshot, name: str, protocol: Protocol, fallback_policy: Policy
) -> Plain | None:
    """The target, limits and fallbacks of a request for `name` with no version, hints
    or route key, memoised in `snapshot`; None when each request must be resolved on its
    own (the model is unknown, has no pool, or splits traffic between versions)."""
    key = ("plain", protocol, name)
    found = snapshot.memo.get(key)
    if isinstance(found, Plain) and found.fallback_policy is fallback_policy:
        return found
    pools = snapshot.pools_for(name, protocol)
    versions = snapshot.versions_for(name, protocol)
    policy = snapshot.policy_for(name) or fallback_policy
    version = snapshot.latest.get(name)
    if not pools or not versions or policy.version_weights:
        return None
    if version is None or version not in versions:
        return None
    limits = tighten(policy, NO_HINTS)
    fallbacks = snapshot.fallbacks(name) if policy.fallbacks else ()
    plain = Plain(Target(versions[version], pools, policy), limits, fallbacks, fallback_policy)
    snapshot.memo[key] = plain
    return plain


def decide(
    snapshot: Snapshot,
    feedback: Feedback,
    request: RouteRequest,
    *,
    now: float,
    rng: random.Random,
    fallback_policy: Policy,
    strategy: Strategy = "mpfn",
    turn: int = 0,
    cfg: RoutingConfig = DEFAULT_CONFIG,
    breaker_cfg: BreakerConfig = DEFAULT_BREAKER,
    explain: bool = False,
    asleep: frozenset[str] = frozenset(),
) -> Decision:
    """Route `request`. Raises RouteError (404/503) when the model, the version or any
    serving pool is unknown, and HintError (400) for hints the policy forbids.

    `fallback_policy` applies to models without a policy when there is no `default`
    one. With `explain`, every pool speaking the protocol is considered, so the
    explanation lists why the others were excluded; the choice is the same. Pools in
    `asleep` (at zero replicas) are left out with the reason `ASLEEP`: the router may wake
    one when nothing else can serve.
    """
    name, protocol = request.model, request.protocol
    plain = None
    if (
        request.hints is NO_HINTS
        and request.version is None
        and request.key is None
        and strategy == "mpfn"
        and not explain
        and not asleep
    ):
        plain = plain_target(snapshot, name, protocol, fallback_policy)
    if plain is not None:
        return route(
            plain.target,
            feedback,
            now=now,
            fallbacks=plain.fallbacks,
            resolve=_resolver(snapshot, protocol, fallback_policy, rng, None)
            if plain.fallbacks
            else None,
            cfg=cfg,
            breaker_cfg=breaker_cfg,
            limits=plain.limits,
        )
    resolution = candidates(snapshot, name, request.version, protocol)
    if not resolution.pools:
        raise RouteError(resolution.status, resolution.error)
    versions = snapshot.versions_for(name, protocol) or {}
    policy = snapshot.policy_for(name) or fallback_policy
    version = pick_version(snapshot, name, versions, policy, rng, request.key, request.version)
    if version is None:  # nothing to pick (a known model always has a version)
        raise RouteError(404, f"model {name!r} has no version to serve")
    pools = snapshot.protocol_pools(protocol) if explain else resolution.pools
    sleeping = tuple(Exclusion(p.id, ASLEEP) for p in pools if p.id in asleep)
    if sleeping:
        pools = tuple(p for p in pools if p.id not in asleep)
    target = Target(versions[version], pools, policy)
    if strategy != "mpfn":
        decision = route_baseline(
            strategy, target, feedback, now=now, rng=rng, turn=turn, hints=request.hints, cfg=cfg
        )
        return decision._replace(exclusions=decision.exclusions + sleeping)
    fallbacks = snapshot.fallbacks(name) if policy.fallbacks else ()
    decision = route(
        target,
        feedback,
        now=now,
        hints=request.hints,
        fallbacks=fallbacks,
        resolve=_resolver(snapshot, protocol, fallback_policy, rng, request.key)
        if fallbacks
        else None,
        cfg=cfg,
        breaker_cfg=breaker_cfg,
    )
    return decision._replace(exclusions=decision.exclusions + sleeping) if sleeping else decision


def _resolver(
    snapshot: Snapshot,
    protocol: Protocol,
    fallback_policy: Policy,
    rng: random.Random,
    key: str | None,
) -> Callable[[str], Target | None]:
    """Resolves a fallback model's name to the target `route` tries next."""

    def resolve(other: str) -> Target | None:
        other_versions = snapshot.versions_for(other, protocol)
        other_pools = snapshot.pools_for(other, protocol)
        if not other_versions or not other_pools:
            return None
        other_policy = snapshot.policy_for(other) or fallback_policy
        v = pick_version(snapshot, other, other_versions, other_policy, rng, key, None)
        return None if v is None else Target(other_versions[v], other_pools, other_policy)

    return resolve


def explain_request(
    snapshot: Snapshot,
    feedback: Feedback,
    request: RouteRequest,
    *,
    now: float,
    rng: random.Random,
    fallback_policy: Policy,
    strategy: Strategy = "mpfn",
    cfg: RoutingConfig = DEFAULT_CONFIG,
    breaker_cfg: BreakerConfig = DEFAULT_BREAKER,
) -> dict[str, object]:
    """`decide` with every pool of the protocol considered, as a JSON-ready explanation:
    candidates with their scores, exclusions with reasons, the choice and the failover
    plan. Raises like `decide`."""
    decision = decide(
        snapshot,
        feedback,
        request,
        now=now,
        rng=rng,
        fallback_policy=fallback_policy,
        strategy=strategy,
        cfg=cfg,
        breaker_cfg=breaker_cfg,
        explain=True,
    )
    out = decision.explain().as_dict()
    out["strategy"] = strategy
    out["plan"] = [
        {
            "pool": a.pool.id,
            "model": f"{a.model.name}/{a.model.version}",
            "expected_ms": round(a.expected_ms, 3),
        }
        for a in decision.plan
    ]
    out["timeout_ms"] = decision.limits.timeout_ms
    return out
