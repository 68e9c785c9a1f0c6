"""`Client`: calls a deployment's routers, the preferred site first, failing over to the
next site when one is down.

A site is failed over when it cannot be reached (connection error, timeout), answers
502, 503 or 504, or cannot be signed for (`SigningError`). Any other answer, a 4xx
included, is the answer: `request` returns it, `infer` and `chat` raise `RouterError`
with the router's JSON error message. `last` tells which site answered, with the
router's `x-mpfn-route-reason` and `x-mpfn-pool`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from mpfn.client.errors import AllRoutersFailed, Attempt, ClientError, RouterError, SigningError
from mpfn.client.signing import SIGNERS, SignerFactory, base_url
from mpfn.entrypoints import RouterEntry, read_routers
from mpfn.store import Store

API_KEY_ENV = "MPFN_API_KEY"
FAILOVER_STATUSES = frozenset({502, 503, 504})
ROUTE_REASON_HEADER = "x-mpfn-route-reason"
POOL_HEADER = "x-mpfn-pool"
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)


@dataclass(frozen=True, slots=True)
class Served:
    """Who answered a call: the site and URL, the status, the router's
    `x-mpfn-route-reason` and `x-mpfn-pool`, and the sites failed over before it."""

    site: str
    url: str
    status: int
    route_reason: str | None
    pool: str | None
    failed_over: tuple[Attempt, ...] = ()


def error_message(response: httpx.Response) -> str:
    """The router's JSON `error` (or a platform's `message`), else the start of the body."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("error", "message", "Message"):
            if isinstance(data.get(key), str):
                return str(data[key])
    return response.text[:300].strip() or response.reason_phrase


def _why(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        kind = "timed out"
    elif isinstance(exc, httpx.ConnectError):
        kind = "cannot connect"
    else:
        kind = "connection failed"
    detail = str(exc).strip()
    return f"{kind} ({type(exc).__name__}{': ' + detail if detail else ''})"


class Client:
    """A client of every router of a deployment (see the module docstring).

    `routers`: the sites' entries, in the order to try them after `prefer`.
    `api_key`: an mpfn API key (default `$MPFN_API_KEY`; "" for none), sent to `api-key`
    routers and to `none` ones, and with the ID token to `google-id-token` ones.
    `http` / `transport`: the httpx client, or the transport of the one made here.
    `signers`: factories by `auth`, replacing those of `mpfn.client.signing.SIGNERS`.
    `timeout`: per attempt (default 60 s, 5 s to connect).
    """

    def __init__(
        self,
        routers: Sequence[RouterEntry],
        *,
        prefer: str | None = None,
        api_key: str | None = None,
        http: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        signers: Mapping[str, SignerFactory] | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> None:
        if not routers:
            raise ClientError("no routers to call")
        sites = [r.site for r in routers]
        if len(set(sites)) != len(sites):
            raise ClientError(f"a site has two router entries: {', '.join(sites)}")
        if prefer is not None and prefer not in sites:
            raise ClientError(f"no router for site {prefer!r}; recorded: {', '.join(sites)}")
        first = [r for r in routers if r.site == prefer]
        self.routers: tuple[RouterEntry, ...] = (
            *first,
            *(r for r in routers if r.site != prefer),
        )
        self._api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
        self._owns_http = http is None
        self._http = http or httpx.Client(transport=transport, timeout=timeout)
        self._signers = {**SIGNERS, **(signers or {})}
        self._auth: dict[str, httpx.Auth | None] = {}
        self.last: Served | None = None

    @classmethod
    def from_state(cls, store: Store, *, prefer: str | None = None, **options: Any) -> Client:
        """A client of the routers the state records (`routers/<site>.json`)."""
        routers = read_routers(store)
        if not routers:
            raise ClientError("the state records no routers (routers/<site>.json)")
        return cls(routers, prefer=prefer, **options)

    def __repr__(self) -> str:
        return f"Client(sites={[r.site for r in self.routers]!r})"

    @property
    def last_site(self) -> str | None:
        """The site that answered the last call."""
        return self.last.site if self.last else None

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _signer(self, entry: RouterEntry) -> httpx.Auth | None:
        if entry.site not in self._auth:
            factory = self._signers.get(entry.auth)
            if factory is None:
                raise SigningError(f"no signer for auth {entry.auth!r}")
            self._auth[entry.site] = factory(entry, self._api_key)
        return self._auth[entry.site]

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """`method path` on the first site that answers; that answer, whatever its status
        (except 502/503/504, which fail over). AllRoutersFailed when no site answers."""
        failed: list[Attempt] = []
        for entry in self.routers:
            base = base_url(entry)
            try:
                response = self._http.request(
                    method,
                    base + path,
                    json=json,
                    content=content,
                    headers=headers,
                    auth=self._signer(entry),
                )
            except SigningError as exc:
                failed.append(Attempt(entry.site, base, f"cannot authenticate: {exc}"))
                continue
            except httpx.TransportError as exc:
                failed.append(Attempt(entry.site, base, _why(exc)))
                continue
            if response.status_code in FAILOVER_STATUSES:
                why = f"{response.status_code} {error_message(response)}"
                failed.append(Attempt(entry.site, base, why))
                continue
            self.last = Served(
                site=entry.site,
                url=base,
                status=response.status_code,
                route_reason=response.headers.get(ROUTE_REASON_HEADER),
                pool=response.headers.get(POOL_HEADER),
                failed_over=tuple(failed),
            )
            return response
        self.last = None
        raise AllRoutersFailed(failed)

    def _answer(self, response: httpx.Response) -> dict[str, Any]:
        served = self.last
        site = served.site if served else ""
        reason = served.route_reason if served else None
        if response.status_code >= 400:
            raise RouterError(
                response.status_code, error_message(response), site=site, route_reason=reason
            )
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise RouterError(response.status_code, "the answer is not a JSON object", site=site)
        return data

    def infer(
        self, model: str, body: Mapping[str, Any], version: str | None = None
    ) -> dict[str, Any]:
        """An Open Inference Protocol v2 request (`{"inputs": [...]}`); the v2 answer."""
        path = f"/v2/models/{quote(model, safe='')}"
        if version is not None:
            path += f"/versions/{quote(version, safe='')}"
        return self._answer(self.request("POST", path + "/infer", json=dict(body)))

    def chat(
        self, model: str, messages: Sequence[Mapping[str, Any]], **params: Any
    ) -> dict[str, Any]:
        """An OpenAI chat completion (not streamed); `params` are more request fields."""
        if params.get("stream"):
            raise ClientError("chat() does not stream: use request() for SSE")
        body = {"model": model, "messages": [dict(m) for m in messages], **params}
        return self._answer(self.request("POST", "/v1/chat/completions", json=body))
