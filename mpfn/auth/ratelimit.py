"""Per-key token-bucket rate limiting as a pure function (the router keeps the buckets)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TokenBucket:
    tokens: float
    updated: float


def take(
    bucket: TokenBucket | None, now: float, rate_per_s: float, burst: int
) -> tuple[bool, TokenBucket, float]:
    """Spend one token. Returns (allowed, new bucket, seconds until a token is available).

    `rate_per_s` <= 0 means unlimited. `burst` <= 0 means max(1, rate_per_s).
    """
    capacity = float(burst) if burst > 0 else max(1.0, rate_per_s)
    if rate_per_s <= 0:
        return True, TokenBucket(capacity, now), 0.0
    if bucket is None:
        bucket = TokenBucket(capacity, now)
    elapsed = max(0.0, now - bucket.updated)
    tokens = min(capacity, bucket.tokens + elapsed * rate_per_s)
    if tokens >= 1.0:
        return True, TokenBucket(tokens - 1.0, now), 0.0
    return False, TokenBucket(tokens, now), (1.0 - tokens) / rate_per_s
