"""Version splits and fallback model chains from a policy.

`choose_version` picks a version by the policy's weights: sticky for a key (the same key
always lands on the same version while the weights stay put, via a stable hash) or
weighted-random with an injected `random.Random`. `fallback_chain` expands a model's
fallbacks depth-first, in order, visiting each model once and stopping at a length cap,
so cyclic policies terminate.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Collection, Mapping

from mpfn.documents import Policy


def stable_unit(key: str) -> float:
    """A uniform number in [0, 1) that depends only on `key` (not on the process)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def choose_version(
    weights: Mapping[str, float],
    available: Collection[str],
    rng: random.Random,
    key: str | None = None,
) -> str | None:
    """A version drawn by `weights` among `available` ones; None when none is weighted."""
    items = sorted((v, w) for v, w in weights.items() if w > 0.0 and v in available)
    if not items:
        return None
    total = sum(w for _, w in items)
    point = (stable_unit(key) if key is not None else rng.random()) * total
    acc = 0.0
    for version, weight in items:
        acc += weight
        if point < acc:
            return version
    return items[-1][0]


def policy_for(policies: Mapping[str, Policy], model: str) -> Policy | None:
    """The model's own policy, else the `default` one."""
    return policies.get(model) or policies.get("default")


def fallback_chain(model: str, policies: Mapping[str, Policy], max_len: int = 8) -> tuple[str, ...]:
    """`model` followed by its fallbacks (and theirs), each once, at most `max_len`."""
    chain: list[str] = []
    seen: set[str] = set()
    stack = [model]
    while stack and len(chain) < max_len:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        chain.append(name)
        policy = policy_for(policies, name)
        if policy is not None:
            stack.extend(f for f in reversed(policy.fallbacks) if f not in seen)
    return tuple(chain)


_DIGITS = re.compile(r"(\d+)")


def _version_order(version: str) -> tuple[tuple[int, int | str], ...]:
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in _DIGITS.split(version) if part
    )


def latest_version(available: Collection[str]) -> str:
    """The version a version-less request means without a split: the highest by natural
    order (`10` > `9`, `1.10` > `1.9`), the same rule as the registry and the workers."""
    return max(available, key=_version_order)


def resolve_version(
    available: Collection[str],
    policy: Policy | None,
    rng: random.Random,
    key: str | None = None,
    requested: str | None = None,
) -> str | None:
    """The version to serve: the requested one, else the policy's split, else the latest.

    None when `requested` is not available or nothing is.
    """
    if requested is not None:
        return requested if requested in available else None
    if not available:
        return None
    if policy is not None and policy.version_weights:
        chosen = choose_version(policy.version_weights, available, rng, key)
        if chosen is not None:
            return chosen
    return latest_version(available)
