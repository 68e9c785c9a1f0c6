"""API keys: issued once, stored only as a hash, scoped to models/pools, revocable.

A key looks like `mpfn_<id>_<secret>`. The store holds `keys/<id>.json` with the SHA-256 of
the secret (keys are 256-bit random, so a fast hash is the right tool — there is nothing
to brute-force), its scopes and its revocation time. Verification is a pure function over
the document and the presented key, with a constant-time comparison. The secret is never
logged and never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from mpfn.documents import NAME_PATTERN

PREFIX = "mpfn"
_KEY_RE = re.compile(r"^mpfn_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


class AuthError(ValueError):
    """A presented key is malformed, unknown, revoked or out of scope (401/403)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ApiKey(BaseModel):
    """The stored form of an API key (`keys/<id>.json`); never holds the secret."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[0-9a-f]{12}$")
    name: str = Field(pattern=NAME_PATTERN)
    secret_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    models: list[str] = Field(default_factory=list, description="Empty = every model")
    pools: list[str] = Field(default_factory=list, description="Empty = every pool")
    rate_per_s: float = Field(default=0.0, ge=0, description="0 = unlimited")
    burst: int = Field(default=0, ge=0, description="0 = max(1, rate_per_s)")
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def key(self) -> str:
        return keys_prefix() + f"{self.id}.json"


def keys_prefix() -> str:
    return "keys/"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_key(
    name: str,
    *,
    models: list[str] | None = None,
    pools: list[str] | None = None,
    rate_per_s: float = 0.0,
    burst: int = 0,
    now: datetime | None = None,
) -> tuple[str, ApiKey]:
    """A new key: (the plaintext to show once, the document to store)."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    doc = ApiKey(
        id=key_id,
        name=name,
        secret_sha256=hash_secret(secret),
        models=models or [],
        pools=pools or [],
        rate_per_s=rate_per_s,
        burst=burst,
        created_at=now or datetime.now(UTC),
    )
    return f"{PREFIX}_{key_id}_{secret}", doc


def parse_bearer(header: str | None) -> str | None:
    """The key from `Authorization: Bearer <key>` (None when absent)."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthError(401, "Authorization header must be 'Bearer <api key>'")
    return value.strip()


def key_id_of(presented: str) -> tuple[str, str]:
    """Split a presented key into (id, secret), or raise a 401 AuthError."""
    match = _KEY_RE.match(presented)
    if not match:
        raise AuthError(401, "malformed API key")
    return match.group(1), match.group(2)


@dataclass(frozen=True, slots=True)
class Verdict:
    key_id: str
    name: str


def authorize(doc: ApiKey | None, presented_secret: str, model: str | None) -> Verdict:
    """Check a presented secret against its stored document and the requested model."""
    # Compare even when the key is unknown so timing does not reveal which ids exist.
    expected = doc.secret_sha256 if doc else "0" * 64
    matches = hmac.compare_digest(hash_secret(presented_secret), expected)
    if doc is None or not matches:
        raise AuthError(401, "invalid API key")
    if doc.revoked_at is not None:
        raise AuthError(401, "API key revoked")
    if model is not None and not may_use_model(doc, model):
        raise AuthError(403, f"API key {doc.name!r} is not allowed to use model {model!r}")
    return Verdict(doc.id, doc.name)


def may_use_model(doc: ApiKey, model: str) -> bool:
    """Whether the key's model scope covers `model` (an empty scope covers every model)."""
    return not doc.models or model in doc.models


def may_use_pool(doc: ApiKey, pool: str) -> bool:
    """Whether the key's pool scope covers `pool` (an empty scope covers every pool)."""
    return not doc.pools or pool in doc.pools
