"""The admin credential of the worker's management API (`/v2/repository/...`).

When the worker is given an admin token (`--admin-token-file` or `MPFN_WORKER_ADMIN_TOKEN`),
every management request must present it as `Authorization: Bearer <token>`; the check is a
constant-time comparison and a refusal is 401 with a JSON error. Inference, health,
metadata and `/metrics` stay open: the router forwards only inference, and never forwards a
caller's credentials. This module never logs or echoes a token.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from pathlib import Path

from mpfn.adapters.ort_worker.errors import WorkerError

ADMIN_TOKEN_ENV = "MPFN_WORKER_ADMIN_TOKEN"
CHALLENGE = (b"www-authenticate", b'Bearer realm="mpfn-worker-management"')
_BEARER = b"bearer "
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class Unauthorized(WorkerError):
    """A management request without the admin token, or with a wrong one."""

    status = 401


def read_token_file(path: Path) -> str:
    """The token in `path` (surrounding whitespace dropped); ValueError when unusable."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read admin token file {path}: {exc.__class__.__name__}") from None
    if not token:
        raise ValueError(f"admin token file {path} is empty")
    return token


class AdminGuard:
    """Checks the admin credential of one request; open when no token is configured."""

    __slots__ = ("_token",)

    def __init__(self, token: str | None) -> None:
        self._token = token.encode("utf-8") if token else None

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def __repr__(self) -> str:  # never show the token
        return f"AdminGuard(enabled={self.enabled})"

    def check(self, authorization: bytes | None) -> None:
        """Raise Unauthorized unless `authorization` is `Bearer <the admin token>`."""
        if self._token is None:
            return
        if authorization is None:
            raise Unauthorized("the management API requires the worker's admin token")
        if authorization[: len(_BEARER)].lower() != _BEARER:
            raise Unauthorized("the management API requires a Bearer admin token")
        presented = authorization[len(_BEARER) :].strip()
        if not hmac.compare_digest(presented, self._token):
            raise Unauthorized("invalid admin token")


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    name = host.strip().strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, guarded: bool) -> str | None:
    """A warning when the worker listens beyond loopback with an open management API."""
    if guarded or is_loopback(host):
        return None
    return (
        f"the worker listens on {host} without an admin token: anyone who can reach it can "
        "load and unload models through /v2/repository/...; set --admin-token-file or "
        f"{ADMIN_TOKEN_ENV}, and keep workers on private addresses"
    )


class TokenFile:
    """The tokens a pool accepts for inference: one per non-empty line of a file, re-read
    when the file changes (looked at no more than once a second), so a token can be
    rotated without a restart: add the new line, move the callers over, drop the old one."""

    __slots__ = ("_checked", "_mtime", "_tokens", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime = -1.0
        self._checked = 0.0
        self._tokens: tuple[bytes, ...] = ()
        self._reload(time.monotonic())
        if not self._tokens:
            raise ValueError(f"token file {path} holds no token")

    def __repr__(self) -> str:  # never the tokens
        return f"TokenFile({self.path}, tokens={len(self._tokens)})"

    def _reload(self, now: float) -> None:
        self._checked = now
        try:
            mtime = self.path.stat().st_mtime
            if mtime == self._mtime:
                return
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return  # keep the tokens read last: a file being replaced is not a lockout
        tokens = tuple(line.strip().encode() for line in lines if line.strip())
        if tokens:
            self._tokens, self._mtime = tokens, mtime

    def tokens(self) -> tuple[bytes, ...]:
        now = time.monotonic()
        if now - self._checked >= 1.0:
            self._reload(now)
        return self._tokens


class AccessGuard:
    """Checks the bearer token of inference and metadata requests; open without a file."""

    __slots__ = ("_file",)

    def __init__(self, tokens: TokenFile | None) -> None:
        self._file = tokens

    @property
    def enabled(self) -> bool:
        return self._file is not None

    def __repr__(self) -> str:
        return f"AccessGuard(enabled={self.enabled})"

    def check(self, authorization: bytes | None) -> None:
        if self._file is None:
            return
        if authorization is None or authorization[: len(_BEARER)].lower() != _BEARER:
            raise Unauthorized("this pool requires a Bearer token")
        presented = authorization[len(_BEARER) :].strip()
        if not any(hmac.compare_digest(presented, t) for t in self._file.tokens()):
            raise Unauthorized("invalid token")
