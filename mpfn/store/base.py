"""The object-store interface every state backend implements.

All shared mpfn state lives behind this interface: a flat key space of byte blobs with
ETags and optimistic-concurrency preconditions. Backends must not cache, retry or
interpret documents; that belongs to `mpfn.state`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class StoreError(Exception):
    """Base class of every error a store raises; the message is one clear line."""


class KeyNotFound(StoreError):
    """The key does not exist."""


class PreconditionFailed(StoreError):
    """An if-match / only-if-absent precondition did not hold (someone else wrote first)."""


class StoreUnavailable(StoreError):
    """The store could not be reached, the bucket is missing, or credentials were refused."""


@dataclass(frozen=True, slots=True)
class Blob:
    """One stored object: its bytes and the ETag that identifies this exact content."""

    body: bytes
    etag: str


@runtime_checkable
class Store(Protocol):
    """A bucket/prefix (or directory) holding mpfn's state.

    Keys are relative, `/`-separated paths such as `models/demo/1.json`.
    """

    @property
    def url(self) -> str:
        """Where the state lives (`s3://bucket/prefix`, `file:///dir`, ...)."""
        ...

    def get(self, key: str, *, if_none_match: str | None = None) -> Blob | None:
        """Return the object, or None when `if_none_match` equals its current ETag.

        Raises KeyNotFound when absent, StoreUnavailable when the store cannot be read.
        """
        ...

    def put(
        self,
        key: str,
        body: bytes,
        *,
        if_match: str | None = None,
        if_absent: bool = False,
    ) -> str:
        """Write the object and return its new ETag.

        `if_match`: only replace the version with this ETag. `if_absent`: only create.
        Raises PreconditionFailed when the precondition does not hold.
        """
        ...

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        """Remove the object (only the version with ETag `if_match`, when given).

        Raises KeyNotFound when absent, PreconditionFailed on an ETag mismatch.
        """
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Return every key starting with `prefix`, sorted."""
        ...


def normalize_etag(etag: str) -> str:
    """Strip the quotes and weak marker HTTP puts around ETags."""
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"')


def check_key(key: str) -> str:
    """Reject keys that could escape the store root or are not plain relative paths."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise ValueError(f"invalid store key {key!r}: must be a relative '/'-separated path")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid store key {key!r}: empty, '.' or '..' path segment")
    return key
