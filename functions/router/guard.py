"""Who may use the router: bearer API keys, model and pool scopes, per-key rate limits.

With `auth=keys` every request on a protected path must carry `Authorization: Bearer
mpfn_<id>_<secret>`. The keys are `keys/<id>.json` documents read with the rest of the
state snapshot (conditional GETs), so a revoked or deleted key stops working at the
router's next refresh. Verification is `mpfn.auth.authorize` (SHA-256 of the secret,
constant-time comparison, also for unknown ids). A key's models scope what it may ask
for (403 outside it) and its pools where its requests may go. Rate limits are token
buckets per key and per router instance (429 with `Retry-After`). The presented key is
never logged and never echoed in an answer. Everything here is in-memory and pure
apart from the buckets it keeps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from mpfn.auth import (
    ApiKey,
    AuthError,
    TokenBucket,
    authorize,
    key_id_of,
    may_use_model,
    may_use_pool,
    parse_bearer,
    take,
)
from mpfn.functions.router.errors import RouteError
from mpfn.routing import Attempt

CHALLENGE = (b"www-authenticate", b'Bearer realm="mpfn"')
INVALID = (b"www-authenticate", b'Bearer realm="mpfn", error="invalid_token"')
PROTECTED_PREFIXES = ("/v2/models", "/v1/")
METRICS_PATH = "/metrics"
STATS_PATHS = frozenset({"/v2/models/stats", "/v2/models/stats/"})


def protected(path: str) -> bool:
    """Paths that need a key with `auth=keys`: models (metadata, readiness, inference)
    and the OpenAI API; health, server metadata and the schema stay open."""
    return path.startswith(PROTECTED_PREFIXES)


def model_in_path(path: str) -> str | None:
    """The model a `/v2/models/{m}...`, `/v1/models/{m}` or `/v1/models/{m}:predict` path
    names, if any (`/v2/models/stats`, the statistics of every model, names none)."""
    if path in STATS_PATHS:
        return None
    for prefix in ("/v2/models/", "/v1/models/"):
        if path.startswith(prefix):
            name = path[len(prefix) :].split("/", 1)[0]
            if prefix == "/v1/models/":
                name = name.removesuffix(":predict")
            return name or None
    return None


def authorization(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            return value.decode("latin-1")
    return None


class Guard:
    """Authenticates requests against the snapshot's keys and keeps their rate buckets."""

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}

    def authenticate(self, header: str | None, keys: Mapping[str, ApiKey], now: float) -> ApiKey:
        """The key presented in `header` (an `Authorization` value), after its rate
        limit; RouteError 401 (missing, malformed, unknown, revoked) or 429."""
        if header is None:
            raise RouteError(
                401,
                "missing API key: send 'Authorization: Bearer <api key>'",
                "rejected: no API key",
                headers=[CHALLENGE],
                rejection="unauthenticated",
            )
        try:
            presented = parse_bearer(header)
            if presented is None:
                raise AuthError(401, "Authorization header must be 'Bearer <api key>'")
            key_id, secret = key_id_of(presented)
            doc = keys.get(key_id)
            authorize(doc, secret, None)
        except AuthError as exc:
            raise RouteError(
                exc.status,
                str(exc),
                "rejected: API key refused",
                headers=[INVALID],
                rejection="unauthenticated",
            ) from None
        assert doc is not None  # authorize refuses unknown ids
        self.limit(doc, now)
        return doc

    def limit(self, doc: ApiKey, now: float) -> None:
        """Spend one token of the key's bucket; RouteError 429 when it is empty."""
        if doc.rate_per_s <= 0:
            return
        ok, bucket, wait_s = take(self._buckets.get(doc.id), now, doc.rate_per_s, doc.burst)
        self._buckets[doc.id] = bucket
        if not ok:
            retry = str(max(1, math.ceil(wait_s))).encode()
            raise RouteError(
                429,
                f"rate limit of {doc.rate_per_s:g} requests/s exceeded for API key {doc.name!r}",
                "rejected: rate limited",
                headers=[(b"retry-after", retry)],
                rejection="rate_limited",
            )

    def forget(self, keys: Mapping[str, ApiKey]) -> None:
        """Drop the buckets of keys that no longer exist."""
        for key_id in [k for k in self._buckets if k not in keys]:
            del self._buckets[key_id]


def check_model(doc: ApiKey, model: str) -> None:
    """RouteError 403 unless the key may use `model`."""
    if not may_use_model(doc, model):
        raise RouteError(
            403,
            f"API key {doc.name!r} is not allowed to use model {model!r}",
            "rejected: model outside the API key's scope",
            rejection="forbidden",
            param="model",
            code="model_not_allowed",
        )


def scoped_plan(doc: ApiKey, plan: Sequence[Attempt], model: str) -> tuple[Attempt, ...]:
    """The attempts of `plan` on pools the key may use; RouteError 403 when none is left."""
    if not doc.pools:
        return tuple(plan)
    allowed = tuple(a for a in plan if may_use_pool(doc, a.pool.id))
    if not allowed:
        raise RouteError(
            403,
            f"API key {doc.name!r} may not use any pool that can serve model {model!r} now",
            "rejected: no pool within the API key's scope",
            rejection="forbidden",
        )
    return allowed
