"""Usage counts survive a write whose answer was lost: on every backend, a router's write
that lands late can never replace a newer count, and a write that landed although the
router saw an error is read back and written over."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from mpfn.functions.router.usage import UsageCounter
from mpfn.store.base import Blob, PreconditionFailed, Store, StoreUnavailable
from mpfn.usage import usage_key

MINUTE_T = 1709622540.0


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class HeldWrites:
    """A store whose writes time out for the caller: each one is held back (`land` sends it
    later, as a slow network or a frozen server does) or sent with its answer lost."""

    inner: Store
    send: bool = False
    # key, body, if_match, if_absent of every write held back
    held: list[tuple[str, bytes, str | None, bool]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.inner.url

    def get(self, key: str, *, if_none_match: str | None = None) -> Blob | None:
        return self.inner.get(key, if_none_match=if_none_match)

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

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        self.inner.delete(key, if_match=if_match)

    def list(self, prefix: str = "") -> list[str]:
        return self.inner.list(prefix)


def count_in(store: Store, key: str) -> int:
    blob = store.get(key)
    assert blob is not None
    return int(json.loads(blob.body)["count"])


def test_a_write_landing_late_cannot_replace_a_newer_count(store: Store) -> None:
    clock = Clock(MINUTE_T)
    counter = UsageCounter("w1", clock=clock)
    key = usage_key("demo", int(MINUTE_T // 60), "w1")
    counter.add("demo", 3)
    assert counter.flush(store) == 1

    slow = HeldWrites(store)
    counter.add("demo", 2)  # 5
    assert counter.flush(slow) == 0 and counter.pending() == 1
    counter.add("demo")  # 6
    assert counter.flush(store) == 1
    assert count_in(store, key) == 6
    with pytest.raises(PreconditionFailed):
        slow.land()  # the write of 5 arrives after the write of 6
    assert count_in(store, key) == 6


def test_a_write_that_landed_unanswered_is_read_back_and_written_over(store: Store) -> None:
    clock = Clock(MINUTE_T)
    counter = UsageCounter("w1", clock=clock)
    key = usage_key("demo", int(MINUTE_T // 60), "w1")
    lost = HeldWrites(store, send=True)
    counter.add("demo", 4)
    assert counter.flush(lost) == 0  # it landed, the router did not hear back
    assert count_in(store, key) == 4
    counter.add("demo")  # 5
    assert counter.flush(store) == 1  # only-if-absent fails, read back, written over
    counter.add("demo", 2)  # 7
    assert counter.flush(lost) == 0  # lands as 7 over the version of 5
    assert counter.flush(store) == 1  # the slot is retried: same count, written over
    assert count_in(store, key) == 7
    clock.t += 60
    counter.add("demo")
    assert counter.flush(store) == 1
    assert count_in(store, key) == 7
    assert count_in(store, usage_key("demo", int(clock.t // 60), "w1")) == 1
