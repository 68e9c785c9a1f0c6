"""What one call to a pool carries: the headers and TLS context its `auth` and `tls` ask for.

`PoolCredentials.keys(pool)` resolves the pool's references (through the `SecretResolver`,
so rotated secrets arrive within its TTL), builds its TLS context once per distinct PEM
material, and caches the result per pool for the same TTL: on the hot path a pool's keys
are one dictionary lookup. `admin=True` gives the management API's credential instead
(`auth.admin_token`, else `auth.token`). Failures are `CredentialError`s whose message
names the reference and the reason, never a secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from mpfn.documents import Pool, PoolAuth, PoolTLS
from mpfn.poolauth.refs import parse_ref
from mpfn.poolauth.resolver import SecretResolver
from mpfn.poolauth.sigv4 import sigv4_headers
from mpfn.poolauth.sources import SecretUnavailable
from mpfn.poolauth.tls import BadTLSMaterial, client_context

Signer = Callable[[str, str, bytes, Mapping[str, str]], dict[str, str]]


class CredentialError(Exception):
    """A pool's credentials could not be had; the message is safe to show."""


@dataclass(frozen=True)
class PoolKeys:
    headers: Mapping[str, str] = field(default_factory=dict)
    ssl: ssl.SSLContext | None = None
    server_name: str | None = None
    sign: Signer | None = None  # per request (SigV4 signs the body)

    def __repr__(self) -> str:  # never the header values
        return f"PoolKeys(headers={sorted(self.headers)}, tls={self.ssl is not None})"

    def request_headers(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str]
    ) -> dict[str, str]:
        out = {**headers, **self.headers}
        if self.sign is not None:
            out.update(self.sign(method, url, body, out))
        return out


NO_KEYS = PoolKeys()


def needs_keys(pool: Pool) -> bool:
    return pool.auth is not None or pool.tls is not None


class PoolCredentials:
    def __init__(
        self,
        resolver: SecretResolver | None = None,
        *,
        aws_credentials: Callable[[], Any] | None = None,
    ) -> None:
        self.resolver = resolver or SecretResolver()
        self._aws_credentials = aws_credentials
        self._aws: Any = None
        self._keys: dict[tuple[str, bool], tuple[object, PoolKeys, float]] = {}
        self._contexts: dict[str, ssl.SSLContext] = {}

    async def keys(self, pool: Pool, *, admin: bool = False) -> PoolKeys:
        if not needs_keys(pool):
            return NO_KEYS
        slot = (pool.id, admin)
        fingerprint = (pool.auth, pool.tls, str(pool.endpoint))
        hit = self._keys.get(slot)
        if hit and hit[0] == fingerprint and self.resolver.clock() < hit[2]:
            return hit[1]
        try:
            keys = await self._build(pool, admin)
        except (SecretUnavailable, BadTLSMaterial) as exc:
            raise CredentialError(f"credentials: {exc}") from None
        self._keys[slot] = (fingerprint, keys, self._expiry(pool, admin))
        return keys

    def _expiry(self, pool: Pool, admin: bool) -> float:
        """Keys stay as long as the secrets they were made of are fresh, so a rotated
        secret reaches the pool's keys within the resolver's TTL."""
        refs = [pool.tls.ca, pool.tls.cert, pool.tls.key] if pool.tls else []
        if pool.auth is not None:
            refs.append(_auth_ref(pool.auth, admin))
        resolver = self.resolver
        return min(
            [resolver.expires_at(parse_ref(r)) for r in refs if r],
            default=resolver.clock() + resolver.ttl_s,
        )

    async def _secret(self, ref: str) -> bytes:
        return await self.resolver.get(parse_ref(ref))

    async def _build(self, pool: Pool, admin: bool) -> PoolKeys:
        headers: dict[str, str] = {}
        sign: Signer | None = None
        auth = pool.auth
        if auth is not None:
            ref = _auth_ref(auth, admin)
            if auth.type == "bearer" or (admin and auth.admin_token):
                assert ref is not None
                headers["Authorization"] = f"Bearer {(await self._secret(ref)).decode().strip()}"
            elif auth.type == "header":
                assert ref is not None and auth.header is not None
                headers[auth.header] = (await self._secret(ref)).decode().strip()
            elif auth.type == "google-id-token":
                audience = auth.audience or _origin(str(pool.endpoint))
                token = await self.resolver.sources.gcp_id_token(audience)
                headers["Authorization"] = f"Bearer {token}"
            elif auth.type == "sigv4":
                assert auth.region is not None
                sign = self._signer(await self._aws_creds(), auth.region, auth.service)
        context = await self._context(pool.tls) if pool.tls is not None else None
        server_name = pool.tls.server_name if pool.tls is not None else None
        return PoolKeys(headers, context, server_name, sign)

    async def _context(self, tls: PoolTLS) -> ssl.SSLContext:
        parts = [await self._secret(r) if r else b"" for r in (tls.ca, tls.cert, tls.key)]
        digest = hashlib.sha256(b"\0".join(parts)).hexdigest()
        context = self._contexts.get(digest)
        if context is None:
            ca, cert, key = (p or None for p in parts)
            context = await asyncio.to_thread(client_context, ca, cert, key)
            if len(self._contexts) > 256:
                self._contexts.clear()
            self._contexts[digest] = context
        return context

    async def _aws_creds(self) -> Any:
        if self._aws is None:
            if self._aws_credentials is not None:
                self._aws = self._aws_credentials()
            else:
                import boto3

                self._aws = await asyncio.to_thread(boto3.Session().get_credentials)
            if self._aws is None:
                raise SecretUnavailable("sigv4: no AWS credentials in this process")
        return self._aws

    @staticmethod
    def _signer(credentials: Any, region: str, service: str) -> Signer:
        def sign(method: str, url: str, body: bytes, headers: Mapping[str, str]) -> dict[str, str]:
            return sigv4_headers(credentials, region, service, method, url, body, headers)

        return sign

    async def aclose(self) -> None:
        await self.resolver.aclose()


def _auth_ref(auth: PoolAuth, admin: bool) -> str | None:
    """The reference of the token a call presents: the management one for `admin`."""
    return auth.admin_token if admin and auth.admin_token else auth.token


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
