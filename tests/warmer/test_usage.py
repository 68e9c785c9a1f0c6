"""Reading usage: router documents summed per minute and hour, hourly rollups of sealed hours."""

from __future__ import annotations

from datetime import UTC, datetime

from mpfn.store import LocalStore
from mpfn.usage import legacy_usage_key, usage_document, usage_key
from mpfn.warm.plan import rollup_key
from mpfn.warm.usage import UsageReader
from tests.warmer.helpers import HOUR, NOW, write_usage

NOW_HOUR = NOW // HOUR * HOUR


def test_counts_are_summed_over_instances_and_idle_history_is_trimmed(
    warm_store: LocalStore,
) -> None:
    write_usage(warm_store, "m", {NOW_HOUR - 3 * HOUR + 60: 2, NOW - 60: 4}, "r1")
    write_usage(warm_store, "m", {NOW_HOUR - 3 * HOUR + 60: 3, NOW_HOUR - HOUR: 1}, "r2")
    warm_store.put(usage_key("m", int(NOW // 60) - 2, "r3", 1), b"not json")  # ignored

    h = UsageReader(warm_store).history("m", NOW, days=2, minute_span_s=900, recent_s=600)

    assert h.start == NOW_HOUR - 3 * HOUR
    assert h.counts.tolist() == [5, 0, 1]
    assert h.current == 4 and h.recent == 4
    assert h.last_used == (NOW // 60) * 60  # end of the minute before NOW


def test_the_latest_sequence_counts_and_keys_without_one_are_sequence_zero(
    warm_store: LocalStore,
) -> None:
    minute = int(NOW // 60) - 3

    def put(key: str, writer: str, count: int) -> None:
        warm_store.put(key, usage_document("m", minute, writer, count))

    put(legacy_usage_key("m", minute, "r1-0a1b2c3d4e5f"), "r1-0a1b2c3d4e5f", 4)
    put(usage_key("m", minute, "r1-0a1b2c3d4e5f", 2), "r1-0a1b2c3d4e5f", 6)
    put(usage_key("m", minute, "r1-0a1b2c3d4e5f", 1), "r1-0a1b2c3d4e5f", 5)  # landed late
    put(legacy_usage_key("m", minute, "123456789012"), "123456789012", 3)
    put(usage_key("m", minute, "r2-aaaaaaaaaaaa", 1), "r2-aaaaaaaaaaaa", 2)

    h = UsageReader(warm_store).history("m", NOW, days=1, recent_s=600)
    assert h.recent == 6 + 3 + 2


def test_finished_hours_are_rolled_up_and_read_back_without_minute_documents(
    warm_store: LocalStore,
) -> None:
    write_usage(warm_store, "m", {NOW_HOUR - 5 * HOUR: 7, NOW_HOUR - HOUR + 60: 2, NOW - 60: 1})
    reader = UsageReader(warm_store, seal_after_s=3600)
    first = reader.history("m", NOW, days=1)
    assert first.counts.tolist() == [7, 0, 0, 0, 2] and first.current == 1
    assert reader.rollups_written == 2  # yesterday's hours since 10:00, today's until 08:00
    doc = warm_store.get(rollup_key("m", datetime.fromtimestamp(NOW, tz=UTC).date()))
    assert doc is not None and b'"05": 7' in doc.body
    assert b'"09"' not in doc.body  # ended 30 min ago: not sealed after 3600 s

    for key in warm_store.list("usage/m/"):
        if key.split("/")[-2] not in ("09", "10"):
            warm_store.delete(key)
    again = UsageReader(warm_store, seal_after_s=3600).history("m", NOW, days=1)
    assert again.counts.tolist() == [7, 0, 0, 0, 2]


def test_a_read_only_reader_writes_nothing(warm_store: LocalStore) -> None:
    write_usage(warm_store, "m", {NOW_HOUR - 5 * HOUR: 7})
    before = warm_store.list("")
    h = UsageReader(warm_store, write_rollups=False).history("m", NOW, days=1)
    assert h.counts.tolist() == [7, 0, 0, 0, 0]
    assert warm_store.list("") == before


def test_no_usage_is_an_empty_history(warm_store: LocalStore) -> None:
    h = UsageReader(warm_store).history("nobody", NOW, days=3, minute_span_s=600, recent_s=600)
    assert h.hours == 0 and h.current == 0 and h.recent == 0 and h.last_used is None
