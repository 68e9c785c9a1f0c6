from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from mpfn.routing import choose_version, fallback_chain, resolve_version
from tests.routing.factories import policy

WEIGHTS = {"1": 0.9, "2": 0.1}


@given(st.text(min_size=1, max_size=40))
def test_sticky_by_key(key: str) -> None:
    a = choose_version(WEIGHTS, {"1", "2"}, random.Random(1), key)
    b = choose_version(WEIGHTS, {"1", "2"}, random.Random(2), key)
    assert a == b


def test_keyed_split_is_proportional() -> None:
    rng = random.Random(0)
    picks = [choose_version(WEIGHTS, {"1", "2"}, rng, f"user-{i}") for i in range(10_000)]
    assert 0.08 < picks.count("2") / len(picks) < 0.12


@given(st.integers(0, 2**32))
def test_random_split_is_proportional_and_seeded(seed: int) -> None:
    picks = [choose_version(WEIGHTS, {"1", "2"}, random.Random(seed)) for _ in range(1)]
    again = [choose_version(WEIGHTS, {"1", "2"}, random.Random(seed)) for _ in range(1)]
    assert picks == again
    rng = random.Random(seed)
    many = [choose_version(WEIGHTS, {"1", "2"}, rng) for _ in range(4000)]
    assert 0.07 < many.count("2") / len(many) < 0.13


def test_unavailable_versions_are_skipped() -> None:
    assert choose_version(WEIGHTS, {"2"}, random.Random(0)) == "2"
    assert choose_version({"3": 1.0}, {"1"}, random.Random(0)) is None
    assert choose_version({"1": 0.0, "2": 1.0}, {"1", "2"}, random.Random(0), "k") == "2"


def test_resolve_version() -> None:
    rng = random.Random(0)
    split = policy(version_weights={"1": 1.0})
    assert resolve_version({"1", "2", "10"}, None, rng) == "10"
    assert resolve_version({"1", "2", "10"}, split, rng) == "1"
    assert resolve_version({"1", "2"}, split, rng, requested="2") == "2"
    assert resolve_version({"1"}, split, rng, requested="3") is None
    assert resolve_version(set(), None, rng) is None


def test_chain_order_is_depth_first() -> None:
    policies = {
        "a": policy("a", fallbacks=["b", "c"]),
        "b": policy("b", fallbacks=["d"]),
        "c": policy("c", fallbacks=["a"]),
    }
    assert fallback_chain("a", policies) == ("a", "b", "d", "c")
    assert fallback_chain("a", policies, max_len=2) == ("a", "b")
    assert fallback_chain("x", policies) == ("x",)


def test_default_policy_applies_to_models_without_one() -> None:
    policies = {"default": policy(fallbacks=["small"])}
    assert fallback_chain("big", policies) == ("big", "small")


names = st.sampled_from(["a", "b", "c", "d", "e", "f"])


@given(st.dictionaries(names, st.lists(names, max_size=6), max_size=6), names)
def test_chains_terminate_without_repeats(graph: dict[str, list[str]], start: str) -> None:
    policies = {n: policy(n, fallbacks=[f for f in fbs if f != n]) for n, fbs in graph.items()}
    chain = fallback_chain(start, policies)
    assert chain[0] == start
    assert len(chain) == len(set(chain)) <= 6
