"""Usage counts on a create-only grant, and when a write's answer is lost: on every backend,
wrapped so that usage objects can only be created (`CreateOnlyUsage`, as GCS's
objectCreator role allows), the router never overwrites or deletes a usage object, the
warmer's reader sees exactly the requests counted, and a write that lands late or
unanswered is never counted twice nor hides a newer count."""

from __future__ import annotations

from dataclasses import dataclass, field

from mpfn.functions.router.usage import UsageCounter
from mpfn.store.base import Store, StoreUnavailable
from mpfn.usage import latest_usage
from mpfn.warm.usage import UsageReader
from tests.store.create_only import CreateOnlyUsage
from tests.store.passthrough import PassThrough

MINUTE_T = 1709622540.0  # 2024-03-05 07:09:00 UTC
HOUR_END_T = 1709625420.0  # 2024-03-05 07:57:00 UTC


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class HeldWrites(PassThrough):
    """A store whose writes time out for the caller: each one is held back (`land` sends it
    later, as a slow network or a frozen server does) or sent with its answer lost."""

    send: bool = False
    # key, body, if_match, if_absent of every write held back
    held: list[tuple[str, bytes, str | None, bool]] = field(default_factory=list)

    def put(
        self, key: str, body: bytes, *, if_match: str | None = None, if_absent: bool = False
    ) -> str:
        if self.send:
            self.inner.put(key, body, if_match=if_match, if_absent=if_absent)
        else:
            self.held.append((key, body, if_match, if_absent))
        raise StoreUnavailable("timed out")

    def land(self) -> None:
        for key, body, if_match, if_absent in self.held:
            self.inner.put(key, body, if_match=if_match, if_absent=if_absent)


def per_minute(store: Store, model: str, first: int, last: int) -> dict[int, int]:
    """minute -> requests the warmer's reader sees, for minutes `first`..`last`."""
    reader = UsageReader(store, write_rollups=False)
    now = (last + 1) * 60.0
    seen = [
        reader.history(model, now, days=1, recent_s=60.0 * k).recent
        for k in range(last - first + 2)
    ]
    return {last - k: seen[k + 1] - seen[k] for k in range(last - first + 1)}


def test_many_flushes_on_a_create_only_grant_count_exactly(store: Store) -> None:
    guarded = CreateOnlyUsage(store)
    clock = Clock(HOUR_END_T)
    counter = UsageCounter("w1", clock=clock)
    first = int(HOUR_END_T // 60)
    added: dict[tuple[str, int], int] = {}
    flushes = 0
    for m in range(5):  # 07:57 .. 08:01: minutes of two hours
        clock.t = HOUR_END_T + 60 * m
        for round_, n in enumerate((3, 2, 0, 4)):
            for model in ("demo", "other"):
                if n and (model == "demo" or round_ % 2):
                    counter.add(model, n)
                    added[(model, first + m)] = added.get((model, first + m), 0) + n
            flushes += counter.flush(guarded)
            assert counter.flush(guarded) == 0  # nothing changed: nothing written
            clock.t += 10
    assert guarded.refused == [] and counter.pending() == 0
    keys = store.list("usage/")
    assert len(keys) == flushes == 5 * (3 + 2)  # a minute: 3 writes of demo, 2 of other
    assert len(latest_usage(keys)) == len(added)

    for model in ("demo", "other"):
        want = {first + m: added.get((model, first + m), 0) for m in range(5)}
        assert per_minute(store, model, first, first + 4) == want
        history = UsageReader(store, write_rollups=False).history(model, (first + 5) * 60.0, days=1)
        assert history.counts.tolist()[-1] == sum(want[first + m] for m in range(3))
        assert history.current == sum(want[first + m] for m in range(3, 5))


def test_a_write_landing_late_never_hides_a_newer_count(store: Store) -> None:
    guarded = CreateOnlyUsage(store)
    counter = UsageCounter("w1", clock=Clock(MINUTE_T))
    minute = int(MINUTE_T // 60)
    counter.add("demo", 3)
    assert counter.flush(guarded) == 1

    slow = HeldWrites(guarded)
    counter.add("demo", 2)  # 5
    assert counter.flush(slow) == 0 and counter.pending() == 1
    counter.add("demo")  # 6
    assert counter.flush(guarded) == 1
    slow.land()  # the write of 5 arrives after the write of 6: a new object, fewer counts
    assert len(store.list("usage/")) == 3
    assert per_minute(store, "demo", minute, minute) == {minute: 6}
    assert guarded.refused == []


def test_a_write_that_landed_unanswered_is_not_counted_twice(store: Store) -> None:
    guarded = CreateOnlyUsage(store)
    clock = Clock(MINUTE_T)
    counter = UsageCounter("w1", clock=clock)
    minute = int(MINUTE_T // 60)
    lost = HeldWrites(guarded, send=True)
    counter.add("demo", 4)
    assert counter.flush(lost) == 0  # it landed, the router did not hear back
    assert per_minute(store, "demo", minute, minute) == {minute: 4}
    counter.add("demo")  # 5
    assert counter.flush(guarded) == 1  # a new object under the next sequence
    counter.add("demo", 2)  # 7
    assert counter.flush(lost) == 0  # lands as 7
    assert counter.flush(guarded) == 1  # the slot is retried: same count, next sequence
    assert per_minute(store, "demo", minute, minute) == {minute: 7}
    clock.t += 60
    counter.add("demo")
    assert counter.flush(guarded) == 1
    assert per_minute(store, "demo", minute, minute + 1) == {minute: 7, minute + 1: 1}
    assert guarded.refused == [] and len(store.list("usage/")) == 5
