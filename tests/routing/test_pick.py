from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mpfn.routing import swrr

weights_st = st.lists(st.floats(0.05, 1.0), min_size=1, max_size=8)


def run(weights: list[float], rounds: int) -> list[int]:
    ids = [f"p{i}" for i in range(len(weights))]
    current: dict[str, float] = {}
    counts = [0] * len(weights)
    for _ in range(rounds):
        i, current = swrr(ids, weights, current)
        counts[i] += 1
    return counts


@given(weights_st)
def test_proportions_converge_to_weights(weights: list[float]) -> None:
    rounds = 2000
    counts = run(weights, rounds)
    total = sum(weights)
    for count, w in zip(counts, weights, strict=True):
        assert abs(count - rounds * w / total) <= len(weights)


def test_integer_weights_are_exact_and_smooth() -> None:
    ids = ["a", "b", "c"]
    current: dict[str, float] = {}
    picks = []
    for _ in range(7):
        i, current = swrr(ids, [5.0, 1.0, 1.0], current)
        picks.append(ids[i])
    assert picks == ["a", "a", "b", "a", "c", "a", "a"]  # nginx's classic sequence


@given(weights_st, st.integers(1, 50))
def test_deterministic(weights: list[float], rounds: int) -> None:
    assert run(weights, rounds) == run(weights, rounds)


def test_offered_set_changes_drop_stale_entries() -> None:
    _, current = swrr(["a", "b"], [1.0, 1.0], {"gone": 9.0})
    assert set(current) == {"a", "b"}
