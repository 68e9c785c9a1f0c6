"""The usage document format: where routers write per-minute counts and what they hold.

`usage/<model>/<yyyy>/<mm>/<dd>/<hh>/<minute>-<writer>.json` (UTC), one document per
(model, minute, router process), holding that minute's absolute count. The router's
counter (`mpfn.functions.router.usage`) writes them and the warmer's reader
(`mpfn.warm.usage`) reads them; this module is the only definition of the format.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import UTC, datetime

log = logging.getLogger("mpfn.usage")

MINUTE = 60
USAGE_PREFIX = "usage/"


def writer_id(instance: str | None = None) -> str:
    """This process's name in usage keys: `<instance>-<random>`, or random alone.

    Two processes with the same configured instance id (a restart within a minute, or a
    copy-pasted setting) must not write the same document: absolute counts would overwrite
    each other and requests would be lost from the usage history.
    """
    token = secrets.token_hex(6)
    return f"{instance}-{token}" if instance else token


def minute_of(epoch_s: float) -> int:
    """Whole minutes since the epoch."""
    return int(epoch_s // 60)


def usage_key(model: str, minute: int, instance: str) -> str:
    """`usage/<model>/<yyyy>/<mm>/<dd>/<hh>/<minute>-<writer>.json` (UTC)."""
    t = datetime.fromtimestamp(minute * 60, tz=UTC)
    return f"{USAGE_PREFIX}{model}/{t:%Y/%m/%d/%H}/{t:%M}-{instance}.json"


def usage_document(model: str, minute: int, instance: str, count: int) -> bytes:
    start = datetime.fromtimestamp(minute * 60, tz=UTC)
    return (
        json.dumps(
            {
                "model": model,
                "minute": start.strftime("%Y-%m-%dT%H:%M:00Z"),
                "instance": instance,
                "count": count,
            },
            indent=2,
        ).encode()
        + b"\n"
    )


def minute_of_key(key: str) -> int | None:
    """`usage/m/2026/11/29/08/53-abc.json` -> minutes since the epoch (UTC), else None."""
    parts = key.split("/")
    try:
        yyyy, mm, dd, hh = (int(p) for p in parts[-5:-1])
        minute = int(parts[-1].split("-", 1)[0])
        stamp = datetime(yyyy, mm, dd, hh, minute, tzinfo=UTC)
    except (ValueError, IndexError):
        return None
    return int(stamp.timestamp()) // MINUTE


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
