"""What `mpfn.client` raises: a router's refusal, every router failing, a site it cannot
sign for. Messages name sites, URLs and statuses, never a key or a token."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class ClientError(Exception):
    """Anything the client could not do: no routers, an unknown site, every site failed."""


class SigningError(ClientError):
    """The client cannot authenticate to one router: no API key, no region, no credentials.
    The site is skipped like one that is down."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One site the client tried without getting an answer, and why."""

    site: str
    url: str
    why: str

    def __str__(self) -> str:
        return f"{self.site} ({self.url}): {self.why}"


class AllRoutersFailed(ClientError):
    """No site answered: each was down, timed out, answered 502/503/504 or could not be
    signed for. `attempts` lists them in the order tried."""

    def __init__(self, attempts: Sequence[Attempt]) -> None:
        self.attempts = tuple(attempts)
        tried = "; ".join(str(a) for a in self.attempts)
        super().__init__(f"no router answered ({len(self.attempts)} tried): {tried}")


class RouterError(ClientError):
    """A router's answer that is not a success (a 4xx, a 500): the answer, not failed over.
    `message` is the router's JSON `error`; `site` the site that answered."""

    def __init__(
        self, status: int, message: str, *, site: str, route_reason: str | None = None
    ) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.site = site
        self.route_reason = route_reason
