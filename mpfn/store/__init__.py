"""Object stores holding mpfn state: `file://DIR`, `s3://bucket/prefix`, `gs://bucket/prefix`."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from mpfn.store.base import (
    Blob,
    KeyNotFound,
    PreconditionFailed,
    Store,
    StoreError,
    StoreUnavailable,
)
from mpfn.store.local import LocalStore

__all__ = [
    "Blob",
    "KeyNotFound",
    "LocalStore",
    "PreconditionFailed",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "open_store",
    "split_bucket_url",
]


def split_bucket_url(url: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> (`bucket`, `a/b`)."""
    parsed = urlparse(url)
    if not parsed.netloc:
        raise ValueError(f"{url}: missing bucket name")
    return parsed.netloc, parsed.path.strip("/")


def open_store(url: str, options: dict[str, Any] | None = None) -> Store:
    """Open the store at `url`; `options` are the `s3:` / `gcs:` sections of mpfn.yaml.

    Cloud SDKs are imported lazily so the local path never pays for them.
    """
    options = options or {}
    if url.startswith("s3://"):
        from mpfn.store.s3 import S3Store

        bucket, prefix = split_bucket_url(url)
        return S3Store(bucket, prefix, **(options.get("s3") or {}))
    if url.startswith("gs://"):
        from mpfn.store.gcs import GCSStore

        bucket, prefix = split_bucket_url(url)
        return GCSStore(bucket, prefix, **(options.get("gcs") or {}))
    if url.startswith("file://"):
        return LocalStore(url[len("file://") :])
    if "://" in url:
        raise ValueError(f"{url}: unsupported state URL (use a path, file://, s3:// or gs://)")
    return LocalStore(url)
