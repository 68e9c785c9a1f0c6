"""The usage document format: where routers write per-minute counts and what they hold.

`usage/<model>/<yyyy>/<mm>/<dd>/<hh>/<minute>-<writer>.<seq>.json` (UTC): each flush of a
(model, minute) by one router process creates a new document, holding that minute's
absolute count so far, under the writer's next sequence number. Documents are only ever
created, never overwritten or deleted, so a grant that only allows creating objects
(GCS `roles/storage.objectCreator`) is enough to write them. A reader counts, per
(minute, writer), the document with the highest sequence. Keys without a sequence
(`<minute>-<writer>.json`, written before sequences existed) read as sequence 0.

A document holds `count`, the requests for the model that arrived in that minute (what
the warmer forecasts from), and optionally `pools`: per pool that answered a request for
the model, the answers that finished in that minute (`requests`) and, from the `usage`
of OpenAI answers, `prompt_tokens` and `completion_tokens`. Documents without `pools`
(older routers) read as having no per-pool breakdown.
The router's counter (`mpfn.functions.router.usage`) writes them and the warmer's reader
(`mpfn.warm.usage`) reads them; this module is the only definition of the format.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

log = logging.getLogger("mpfn.usage")

MINUTE = 60
USAGE_PREFIX = "usage/"
FIRST_SEQUENCE = 1  # 0 is the sequence of a key written without one
POOL_FIELDS = ("requests", "prompt_tokens", "completion_tokens")


def writer_id(instance: str | None = None) -> str:
    """This process's name in usage keys: `<instance>-<random>`, or random alone.

    Two processes with the same configured instance id (a restart within a minute, or a
    copy-pasted setting) must not write under the same name: a reader keeps one count per
    (minute, writer), so one process's count would hide the other's.
    """
    token = secrets.token_hex(6)
    return f"{instance}-{token}" if instance else token


def minute_of(epoch_s: float) -> int:
    """Whole minutes since the epoch."""
    return int(epoch_s // 60)


def _stem(model: str, minute: int, writer: str) -> str:
    t = datetime.fromtimestamp(minute * 60, tz=UTC)
    return f"{USAGE_PREFIX}{model}/{t:%Y/%m/%d/%H}/{t:%M}-{writer}"


def usage_key(model: str, minute: int, writer: str, seq: int) -> str:
    """`usage/<model>/<yyyy>/<mm>/<dd>/<hh>/<minute>-<writer>.<seq>.json` (UTC)."""
    if seq < FIRST_SEQUENCE:
        raise ValueError(f"usage sequence numbers start at {FIRST_SEQUENCE}, not {seq}")
    return f"{_stem(model, minute, writer)}.{seq}.json"


def legacy_usage_key(model: str, minute: int, writer: str) -> str:
    """`.../<minute>-<writer>.json`: the key routers wrote before sequences (sequence 0)."""
    return f"{_stem(model, minute, writer)}.json"


@dataclass(frozen=True, slots=True)
class PoolUsage:
    """What one pool answered for one model in one minute."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_json(self) -> dict[str, int]:
        out = {"requests": self.requests}
        if self.prompt_tokens or self.completion_tokens:
            out["prompt_tokens"] = self.prompt_tokens
            out["completion_tokens"] = self.completion_tokens
        return out


@dataclass(frozen=True, slots=True)
class MinuteUsage:
    """One usage document's counts: requests that arrived, and answers per pool."""

    count: int
    pools: Mapping[str, PoolUsage] = field(default_factory=dict)


def usage_document(
    model: str,
    minute: int,
    instance: str,
    count: int,
    pools: Mapping[str, PoolUsage] | None = None,
) -> bytes:
    start = datetime.fromtimestamp(minute * 60, tz=UTC)
    doc: dict[str, object] = {
        "model": model,
        "minute": start.strftime("%Y-%m-%dT%H:%M:00Z"),
        "instance": instance,
        "count": count,
    }
    if pools:
        doc["pools"] = {pool: pools[pool].to_json() for pool in sorted(pools)}
    return json.dumps(doc, indent=2).encode() + b"\n"


@dataclass(frozen=True, slots=True)
class UsageName:
    """What a usage key says: the folder it is in, its minute, writer and sequence."""

    folder: str  # `usage/<model>/<yyyy>/<mm>/<dd>/<hh>`
    minute: int  # minutes since the epoch (UTC)
    writer: str
    seq: int


def parse_usage_key(key: str) -> UsageName | None:
    """`usage/m/2026/11/29/08/53-abc.4.json` -> its parts; None when not a usage key.

    A writer id never ends in `.<digits>` (it ends in a random hex part), so a key
    without a sequence cannot be mistaken for one with it.
    """
    folder, _, name = key.rpartition("/")
    if not name.endswith(".json"):
        return None
    label, sep, rest = name[: -len(".json")].partition("-")
    stem, dot, tail = rest.rpartition(".")
    writer, seq = (stem, int(tail)) if dot and tail.isdecimal() and tail.isascii() else (rest, 0)
    try:
        yyyy, mm, dd, hh = (int(p) for p in folder.split("/")[-4:])
        stamp = datetime(yyyy, mm, dd, hh, int(label), tzinfo=UTC)
    except ValueError:
        return None
    if not sep or not writer:
        return None
    return UsageName(folder, int(stamp.timestamp()) // MINUTE, writer, seq)


def latest_usage(keys: Iterable[str]) -> dict[str, UsageName]:
    """Of `keys`, the usage key with the highest sequence per (model, minute, writer), in
    key order: the documents to count. Keys that are not usage keys are left out."""
    latest: dict[tuple[str, int, str], tuple[str, UsageName]] = {}
    for key in keys:
        name = parse_usage_key(key)
        if name is None:
            continue
        slot = (name.folder, name.minute, name.writer)
        if slot not in latest or name.seq > latest[slot][1].seq:
            latest[slot] = (key, name)
    return dict(sorted(latest.values()))


def count_of(key: str, body: bytes) -> int:
    """The `count` of one usage document; 0 (logged) when the document is malformed."""
    try:
        count = json.loads(body)["count"]
    except (ValueError, KeyError, TypeError):
        count = None
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return count
    log.warning("%s: not a usage document; ignored", key)
    return 0


def _natural(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def read_usage(key: str, body: bytes) -> MinuteUsage:
    """The counts of one usage document; a malformed document reads as 0 (logged), a
    malformed `pools` entry is left out (logged)."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    count = _natural(doc.get("count")) if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or count is None:
        log.warning("%s: not a usage document; ignored", key)
        return MinuteUsage(0)
    raw = doc.get("pools")
    if not isinstance(raw, dict):
        if raw is not None:
            log.warning("%s: its pools are not an object; ignored", key)
        return MinuteUsage(count)
    pools: dict[str, PoolUsage] = {}
    for pool, entry in raw.items():
        if not isinstance(entry, dict):
            log.warning("%s: pool %r is not an object; ignored", key, pool)
            continue
        numbers = [_natural(entry.get(k, 0)) for k in POOL_FIELDS]
        if any(n is None for n in numbers):
            log.warning("%s: pool %r has a count that is not a natural number; ignored", key, pool)
            continue
        pools[pool] = PoolUsage(*(n or 0 for n in numbers))
    return MinuteUsage(count, pools)
