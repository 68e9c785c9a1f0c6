"""The size decision and the size history: pure rules, and the replica-time they give."""

from __future__ import annotations

from mpfn.scaling import ScaleSettings, decide_size, record_size
from mpfn.scaling.size import replica_seconds
from mpfn.store import LocalStore

S = ScaleSettings(down_after_s=300.0, cooldown_s=60.0)


def decide(need: int, current: int, **kwargs: object) -> tuple[int, str, float | None]:
    args: dict[str, object] = {"min_replicas": 0, "max_replicas": 4, "now": 1000.0, "settings": S}
    d = decide_size(need, current, **(args | kwargs))  # type: ignore[arg-type]
    return d.replicas, d.reason, d.below_since


def test_scales_up_at_once_within_bounds() -> None:
    assert decide(3, 1)[:2] == (3, "up: need 3")
    assert decide(9, 1)[0] == 4  # max_replicas
    assert decide(0, 0, min_replicas=1)[:2] == (1, "outside bounds [1, 4]")
    assert decide(2, 2) == (2, "at need", None)


def test_scales_down_only_after_the_need_stayed_lower() -> None:
    first = decide(0, 2)
    assert first == (2, "down to 0 in 300 s", 1000.0)
    assert decide(0, 2, now=1200.0, below_since=1000.0)[:2] == (2, "down to 0 in 100 s")
    assert decide(0, 2, now=1300.0, below_since=1000.0) == (0, "down: need 0 for 300 s", None)
    assert decide(1, 2, now=1300.0, below_since=1000.0, min_replicas=1)[0] == 1
    # the need came back: the wait starts over
    assert decide(2, 2, below_since=900.0) == (2, "at need", None)


def test_no_change_within_the_cooldown_but_waking_from_zero() -> None:
    assert decide(3, 1, changed_at=990.0)[:2] == (1, "up to 3 after cooldown")
    assert decide(1, 0, changed_at=990.0)[:2] == (1, "up: need 1")  # zero is never made to wait
    assert decide(0, 1, now=1400.0, changed_at=1390.0, below_since=1000.0)[0] == 1


def test_history_gives_replica_time(tmp_path: object) -> None:
    store = LocalStore(str(tmp_path))
    record_size(store, "p", 2, now=100.0, reason="up", by="warmer")
    record_size(store, "p", 2, now=150.0, reason="same", by="warmer", below_since=150.0)
    size = record_size(store, "p", 0, now=200.0, reason="down", by="cli")
    assert size.history == [(100.0, 2), (200.0, 0)] and size.by == "cli"
    assert size.below_since is None
    record_size(store, "p", 1, now=300.0, reason="wake", by="router:a")
    history = record_size(store, "p", 1, now=400.0, reason="x", by="warmer").history
    assert replica_seconds(history, 0.0, 400.0) == 2 * 100 + 0 * 100 + 1 * 100
    assert replica_seconds(history, 150.0, 350.0) == 2 * 50 + 1 * 50
