"""Forward one request's raw bytes to a backend pool and relay the answer.

The body is sent exactly as received (JSON or the binary-tensor extension) through one
pooled aiohttp session; the response is relayed as bytes, streamed chunk by chunk when the
backend streams (SSE, chunked). Connection errors, timeouts and 502/503/504 answers fail
over to the next pool until the response has started; after that nothing is retried.
This module never picks pools (see `routing`) and never touches the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import aiohttp
from starlette.types import Send

from mpfn.documents import Pool
from mpfn.router.errors import send_error
from mpfn.router.routing import backend_url, should_fail_over

log = logging.getLogger("mpfn.router")

SessionFactory = Callable[[], aiohttp.ClientSession]

# Request headers a backend may need; everything else (cookies, the caller's credentials,
# hop-by-hop headers) stays at the router.
FORWARD_REQUEST_HEADERS = frozenset(
    {
        b"content-type",
        b"content-encoding",
        b"accept",
        b"accept-encoding",
        b"inference-header-content-length",
        b"x-request-id",
        b"traceparent",
        b"tracestate",
    }
)
# Response headers the router sets itself or that only make sense on one hop.
DROP_RESPONSE_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"content-length",
        b"date",
        b"server",
        b"proxy-authenticate",
        b"upgrade",
        b"trailer",
    }
)
POOL_HEADER = b"x-mpfn-pool"


def default_session() -> aiohttp.ClientSession:
    """One pooled keep-alive session: no redirects followed, no decompression, no cookies."""
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30.0, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("User-Agent", "Content-Type", "Accept-Encoding"),
    )


def forward_headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The client's headers a backend gets (names are lower-case in ASGI scopes)."""
    return {
        k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k in FORWARD_REQUEST_HEADERS
    }


def relay_headers(raw: Iterable[tuple[bytes, bytes]], pool_id: str) -> list[tuple[bytes, bytes]]:
    """The backend's response headers a client gets, plus which pool answered."""
    out = [(k.lower(), v) for k, v in raw if k.lower() not in DROP_RESPONSE_HEADERS]
    out.append((POOL_HEADER, pool_id.encode()))
    return out


def streams(content_type: str, content_length: int | None) -> bool:
    """Relay chunk by chunk (SSE, or no announced length) rather than buffered?"""
    return content_length is None or content_type.startswith("text/event-stream")


class BackendHealth:
    """Pools that recently refused a connection or timed out, tried last for a while."""

    def __init__(self, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._down_until: dict[str, float] = {}

    def mark_down(self, pool_id: str) -> None:
        self._down_until[pool_id] = self.clock() + self.cooldown_s

    def mark_up(self, pool_id: str) -> None:
        self._down_until.pop(pool_id, None)

    def down(self) -> frozenset[str]:
        if not self._down_until:
            return frozenset()
        now = self.clock()
        for pool_id in [p for p, until in self._down_until.items() if until <= now]:
            del self._down_until[pool_id]
        return frozenset(self._down_until)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a forwarded request ended: who answered (if anyone) and with what status."""

    pool: str | None
    status: int
    attempts: int


class Forwarder:
    """Sends requests to pools through one lazily created, shared aiohttp session."""

    def __init__(
        self,
        health: BackendHealth,
        *,
        connect_timeout_s: float,
        session_factory: SessionFactory | None = None,
    ) -> None:
        self.health = health
        self.connect_timeout_s = connect_timeout_s
        self._factory = session_factory or default_session
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = self._factory()
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def forward(
        self,
        send: Send,
        pools: Sequence[Pool],
        path: str,
        body: bytes,
        headers: dict[str, str],
        timeout_s: float,
    ) -> Outcome:
        """Try `pools` in order until one answers; relay that answer on `send`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        failures: list[str] = []
        session = self.session
        for attempt, pool in enumerate(pools, start=1):
            remaining = deadline - loop.time()
            if remaining <= 0:
                failures.append("request deadline passed")
                break
            timeout = aiohttp.ClientTimeout(
                total=None, sock_connect=min(self.connect_timeout_s, remaining), sock_read=remaining
            )
            try:
                resp = await session.post(
                    backend_url(pool, path),
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                    timeout=timeout,
                )
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                self.health.mark_down(pool.id)
                failures.append(f"{pool.id}: {describe(exc)}")
                continue
            try:
                if should_fail_over(resp.status):
                    text = (await resp.read())[:200].decode("utf-8", "replace")
                    failures.append(f"{pool.id}: HTTP {resp.status} {text}".strip())
                    continue
                if streams(resp.content_type, resp.content_length):
                    await self._relay_stream(send, resp, pool.id)
                else:
                    payload = await resp.read()
                    await self._relay_buffered(send, resp, pool.id, payload)
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError) as exc:
                # Only the buffered read can fail here, before anything reached the client.
                self.health.mark_down(pool.id)
                failures.append(f"{pool.id}: {describe(exc)}")
                continue
            finally:
                resp.release()
            self.health.mark_up(pool.id)
            return Outcome(pool.id, resp.status, attempt)
        message = "no healthy backend: " + "; ".join(failures or ["no pool to try"])
        await send_error(send, 503, message)
        return Outcome(None, 503, len(pools))

    async def _relay_buffered(
        self, send: Send, resp: aiohttp.ClientResponse, pool_id: str, payload: bytes
    ) -> None:
        headers = relay_headers(resp.raw_headers, pool_id)
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _relay_stream(self, send: Send, resp: aiohttp.ClientResponse, pool_id: str) -> None:
        headers = relay_headers(resp.raw_headers, pool_id)
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        try:
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The status is already on the wire: end the body, never retry.
            log.warning("stream from pool %s broke off: %s", pool_id, describe(exc))
            resp.close()
        await send({"type": "http.response.body", "body": b""})


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
