"""Usage counting: key layout, absolute per-minute documents created under sequence numbers,
no double counting."""

from __future__ import annotations

import json
from pathlib import Path

from mpfn.functions.router.usage import UsageCounter
from mpfn.store import LocalStore
from mpfn.usage import (
    UsageName,
    latest_usage,
    legacy_usage_key,
    parse_usage_key,
    usage_document,
    usage_key,
    writer_id,
)
from mpfn.warm.usage import UsageReader


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_usage_key_layout() -> None:
    # 2024-03-05 07:09:00 UTC
    minute = 1709622540 // 60
    assert usage_key("demo", minute, "abc", 3) == "usage/demo/2024/03/05/07/09-abc.3.json"
    assert legacy_usage_key("demo", minute, "abc") == "usage/demo/2024/03/05/07/09-abc.json"
    folder = "usage/demo/2024/03/05/07"
    writer = writer_id("r.1")
    assert parse_usage_key(usage_key("demo", minute, writer, 12)) == UsageName(
        folder, minute, writer, 12
    )
    assert parse_usage_key(legacy_usage_key("demo", minute, writer)) == UsageName(
        folder, minute, writer, 0
    )
    for other in ("usage/demo/2024/03/05/07/09-abc.txt", "usage/demo/09-abc.json", "x.json"):
        assert parse_usage_key(other) is None


def test_only_the_highest_sequence_of_each_writer_and_minute_counts() -> None:
    minute = 1709622540 // 60
    keys = [
        legacy_usage_key("demo", minute, "a"),
        usage_key("demo", minute, "a", 2),
        usage_key("demo", minute, "a", 10),
        usage_key("demo", minute, "b", 1),
        legacy_usage_key("demo", minute + 1, "a"),
        "usage/demo/2024/03/05/07/README",
    ]
    assert list(latest_usage(keys)) == sorted([keys[2], keys[3], keys[4]])


def read(store: LocalStore, key: str) -> dict[str, object]:
    blob = store.get(key)
    assert blob is not None
    doc: dict[str, object] = json.loads(blob.body)
    return doc


def test_flush_writes_absolute_counts_and_never_double_counts(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    clock = Clock(1709622540.0)
    minute = int(clock.t // 60)
    counter = UsageCounter("i1", clock=clock)
    for _ in range(3):
        counter.add("demo")
    counter.add("other")
    assert counter.flush(store) == 2
    assert read(store, usage_key("demo", minute, "i1", 1))["count"] == 3
    # Nothing changed: nothing written; flushing again is harmless.
    assert counter.flush(store) == 0
    counter.add("demo", 2)
    assert counter.flush(store) == 1
    doc = read(store, usage_key("demo", minute, "i1", 2))
    assert doc == {"model": "demo", "minute": "2024-03-05T07:09:00Z", "instance": "i1", "count": 5}
    assert read(store, usage_key("demo", minute, "i1", 1))["count"] == 3  # never rewritten
    # The next minute gets documents of its own; the finished one is forgotten once clean.
    clock.t += 60
    counter.add("demo")
    counter.flush(store)
    assert read(store, usage_key("demo", minute + 1, "i1", 1))["count"] == 1
    assert all(m == minute + 1 for (_model, m) in counter.counts())
    assert all(m == minute + 1 for (_model, m) in counter.sequences)
    history = UsageReader(store).history("demo", clock.t + 30, days=1, recent_s=300)
    assert history.recent == 6


def test_a_taken_sequence_number_is_skipped(tmp_path: Path) -> None:
    """A create refused because the key exists moves on to the next sequence at once."""
    store = LocalStore(tmp_path)
    clock = Clock(1709622540.0)
    minute = int(clock.t // 60)
    store.put(usage_key("demo", minute, "i1", 1), usage_document("demo", minute, "i1", 1))
    counter = UsageCounter("i1", clock=clock)
    counter.add("demo", 4)
    assert counter.flush(store) == 1
    assert read(store, usage_key("demo", minute, "i1", 2))["count"] == 4
    assert UsageReader(store).history("demo", clock.t + 30, days=1, recent_s=300).recent == 4


def test_failed_flush_is_retried(tmp_path: Path) -> None:
    root = tmp_path / "state"
    store = LocalStore(root)
    counter = UsageCounter("i1", clock=Clock(1709622540.0))
    counter.add("demo")
    # Make the usage directory unwritable by putting a file where it must go.
    (root / "usage").write_text("not a directory")
    assert counter.flush(store) == 0
    assert counter.pending() == 1
    (root / "usage").unlink()
    assert counter.flush(store) == 1
    assert counter.pending() == 0


def test_a_restart_with_a_fixed_instance_id_keeps_both_processes_counts(tmp_path: Path) -> None:
    """Two processes configured with the same instance id, counting in the same minute (a
    restart within the minute): neither overwrites the other, and the warmer sums both."""
    store = LocalStore(tmp_path)
    clock = Clock(1709622540.0)
    before = UsageCounter(writer_id("router-1"), clock=clock)
    for _ in range(4):
        before.add("demo")
    assert before.flush(store) == 1
    clock.t += 20
    after = UsageCounter(writer_id("router-1"), clock=clock)
    for _ in range(3):
        after.add("demo")
    assert after.flush(store) == 1
    assert before.instance != after.instance
    assert all(c.instance.startswith("router-1-") for c in (before, after))
    keys = list(store.list("usage/demo/"))
    assert len(keys) == 2 and len(latest_usage(keys)) == 2
    history = UsageReader(store).history("demo", clock.t + 30, days=1, recent_s=300)
    assert history.recent == 7


def test_writer_id_is_random_without_an_instance_id() -> None:
    ids = {writer_id() for _ in range(20)} | {writer_id("") for _ in range(20)}
    assert len(ids) == 40
    assert all("-" not in i for i in ids)
