"""Google Cloud Storage store: `gs://bucket/prefix`.

The ETag of an object is its generation number. Writes carry `ifGenerationMatch`
(0 = only if absent), deletes carry it too, and reads ask `ifGenerationNotMatch` and also
compare the generation returned with the body, so revalidation is race-free even where a
server ignores the read precondition. `STORAGE_EMULATOR_HOST` (or `endpoint`) selects an
emulator, reached with anonymous credentials. Every call goes through one injectable
`google.cloud.storage.Client` with a short timeout and retry deadline; errors become
one-line `StoreError`s. This module never caches or interprets documents.
"""

from __future__ import annotations

import os
from typing import Any, NoReturn

from mpfn.extras import install_hint
from mpfn.store.base import Blob, KeyNotFound, PreconditionFailed, StoreUnavailable, check_key

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
EMULATOR_PROJECT = "mpfn-local"


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _generation(etag: str) -> int | None:
    return int(etag) if etag.isdigit() else None


class GCSStore:
    """A bucket (and optional object-name prefix) on Google Cloud Storage."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        project: str | None = None,
        endpoint: str | None = None,
        timeout: float = 10.0,
        retry_deadline: float = 3.0,
        **unknown: object,
    ) -> None:
        if unknown:
            raise ValueError(f"unknown gcs store option(s): {', '.join(sorted(unknown))}")
        if not bucket:
            raise ValueError("gcs store: bucket name is empty")
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self.url = f"gs://{bucket}/{self.prefix}" if self.prefix else f"gs://{bucket}"
        self.client = client if client is not None else _make_client(project, endpoint)
        self.endpoint = str(getattr(self.client, "api_endpoint", None) or "Cloud Storage")
        self._bucket = self.client.bucket(bucket)
        self._timeout = (min(3.0, timeout), timeout)
        from google.api_core.retry import Retry
        from google.cloud.storage.retry import DEFAULT_RETRY

        self._retry: Retry = DEFAULT_RETRY.with_timeout(retry_deadline)

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def get(self, key: str, *, if_none_match: str | None = None) -> Blob | None:
        blob = self._bucket.blob(self._name(key))
        known = _generation(if_none_match) if if_none_match is not None else None
        try:
            body = blob.download_as_bytes(
                if_generation_not_match=known, timeout=self._timeout, retry=self._retry
            )
        except Exception as exc:
            if getattr(exc, "code", None) == 304:
                return None
            self._raise(exc, key)
        if blob.generation is None:
            raise StoreUnavailable(f"{self.url}/{key}: server returned no object generation")
        etag = str(blob.generation)
        if if_none_match is not None and etag == if_none_match:
            return None
        return Blob(body=body, etag=etag)

    def put(
        self,
        key: str,
        body: bytes,
        *,
        if_match: str | None = None,
        if_absent: bool = False,
    ) -> str:
        if if_match is not None and if_absent:
            raise ValueError("put: use either if_match or if_absent, not both")
        match: int | None = None
        if if_absent:
            match = 0
        elif if_match is not None:
            match = _generation(if_match)
            if match is None or match == 0:
                raise PreconditionFailed(f"{key}: changed since it was read")
        blob = self._bucket.blob(self._name(key))
        content_type = "application/json" if key.endswith(".json") else "application/octet-stream"
        try:
            blob.upload_from_string(
                body,
                content_type=content_type,
                if_generation_match=match,
                timeout=self._timeout,
                # Conditional writes are not retried: a retry after a lost response
                # would see its own write as a conflict (and the change applied twice).
                retry=self._retry if match is None else None,
            )
        except Exception as exc:
            self._raise(exc, key, writing=True, exists=if_absent)
        return str(blob.generation)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        name = self._name(key)
        match: int | None = None
        if if_match is not None:
            # Check first so a vanished key reads as KeyNotFound; the server still
            # enforces ifGenerationMatch on the delete itself.
            try:
                current = self._bucket.get_blob(name, timeout=self._timeout, retry=self._retry)
            except Exception as exc:
                self._raise(exc, key)
            if current is None:
                raise KeyNotFound(f"{key}: not found in {self.url}")
            if str(current.generation) != if_match:
                raise PreconditionFailed(f"{key}: changed since it was read")
            match = int(current.generation)
        try:
            self._bucket.delete_blob(
                name, if_generation_match=match, timeout=self._timeout, retry=self._retry
            )
        except Exception as exc:
            self._raise(exc, key)

    def list(self, prefix: str = "") -> list[str]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        cut = len(self.prefix) + 1 if self.prefix else 0
        try:
            blobs = self.client.list_blobs(
                self.bucket_name, prefix=full, timeout=self._timeout, retry=self._retry
            )
            keys = [blob.name[cut:] for blob in blobs]
        except Exception as exc:
            self._raise(exc, prefix or "(listing)", listing=True)
        return sorted(keys)

    def _raise(
        self,
        exc: Exception,
        key: str,
        *,
        writing: bool = False,
        exists: bool = False,
        listing: bool = False,
    ) -> NoReturn:
        raise translate_error(
            exc, self, key, writing=writing, exists=exists, listing=listing
        ) from None


def _make_client(project: str | None, endpoint: str | None) -> Any:
    try:
        from google.auth.exceptions import GoogleAuthError
        from google.cloud import storage
    except ImportError:
        raise StoreUnavailable(
            "gs:// state needs google-cloud-storage: " + install_hint("gcp")
        ) from None
    endpoint = endpoint or os.environ.get(EMULATOR_ENV) or None
    try:
        if endpoint:
            from google.auth.credentials import AnonymousCredentials

            return storage.Client(
                project=project or EMULATOR_PROJECT,
                credentials=AnonymousCredentials(),
                client_options={"api_endpoint": endpoint},
            )
        return storage.Client(project=project)
    except GoogleAuthError as exc:
        raise StoreUnavailable(f"no Google Cloud credentials found: {_one_line(exc)}") from None


def translate_error(
    exc: Exception,
    store: GCSStore,
    key: str,
    *,
    writing: bool = False,
    exists: bool = False,
    listing: bool = False,
) -> Exception:
    """Map a google-cloud-storage exception to the one-line `StoreError` of the contract."""
    import requests
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as authexc

    if isinstance(exc, gexc.RetryError) and isinstance(exc.cause, Exception):
        exc = exc.cause
    if isinstance(exc, gexc.GoogleAPICallError):
        message = _one_line(exc.message)
        if isinstance(exc, gexc.NotFound):
            # An upload or listing can only 404 on the bucket; a read says which is missing.
            if writing or listing or "bucket does not exist" in message.lower():
                return StoreUnavailable(f"gs://{store.bucket_name}: bucket does not exist")
            return KeyNotFound(f"{key}: not found in {store.url}")
        if isinstance(exc, gexc.PreconditionFailed | gexc.Conflict):
            if exists:
                return PreconditionFailed(f"{key}: already exists")
            return PreconditionFailed(f"{key}: changed since it was read")
        if isinstance(exc, gexc.Unauthorized | gexc.Forbidden):
            return StoreUnavailable(
                f"gs://{store.bucket_name}: credentials refused by {store.endpoint} ({message})"
            )
        return StoreUnavailable(f"{store.url}/{key}: {exc.code}: {message}")
    if isinstance(exc, authexc.GoogleAuthError):
        return StoreUnavailable(
            f"gs://{store.bucket_name}: credentials refused or missing ({_one_line(exc)})"
        )
    if isinstance(exc, requests.RequestException | OSError):
        return StoreUnavailable(
            f"cannot reach {store.endpoint} for {store.url}: {type(exc).__name__}: "
            f"{_one_line(exc)[:200]}"
        )
    raise exc
