"""API keys and rate limits for the router: hashed keys in the store, scoped and revocable."""

from mpfn.auth.keys import (
    ApiKey,
    AuthError,
    Verdict,
    authorize,
    hash_secret,
    issue_key,
    key_id_of,
    keys_prefix,
    may_use_model,
    may_use_pool,
    parse_bearer,
)
from mpfn.auth.ratelimit import TokenBucket, take

__all__ = [
    "ApiKey",
    "AuthError",
    "TokenBucket",
    "Verdict",
    "authorize",
    "hash_secret",
    "issue_key",
    "key_id_of",
    "keys_prefix",
    "may_use_model",
    "may_use_pool",
    "parse_bearer",
    "take",
]
