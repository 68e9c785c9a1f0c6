"""An OCI image layout kept in a `Store` (the embedded default registry).

Keys under the prefix (default `oci/`) follow the OCI image-layout spec: `oci-layout`,
`index.json` and `blobs/sha256/<hex>`, so a `LocalStore` holds a real on-disk layout that
other OCI tools can read. Blobs are content-addressed and written only-if-absent;
`index.json` is updated with compare-and-swap (if-match / if-absent) and retried, so
concurrent pushes never lose a tag. On a `LocalStore` blobs are streamed to and from disk
instead of passing through memory. This module never trusts content: callers verify
digests (see `write_verified`).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mpfn.artifacts.errors import ArtifactError, mismatch
from mpfn.artifacts.media import (
    EMPTY_CONFIG,
    EMPTY_DIGEST,
    add_to_index,
    digest_hex,
    empty_index,
    sha256_digest,
)
from mpfn.artifacts.streams import CHUNK, Progress, file_chunks, write_verified
from mpfn.store.base import KeyNotFound, PreconditionFailed, Store, StoreError
from mpfn.store.local import LocalStore

DEFAULT_PREFIX = "oci"
LAYOUT_SCHEME = "oci-layout:"
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
_INDEX_ATTEMPTS = 200


class Layout:
    """The OCI image layout stored under `prefix` in `store`."""

    def __init__(self, store: Store, prefix: str = DEFAULT_PREFIX) -> None:
        self.store = store
        self.prefix = prefix.strip("/")

    @property
    def reference(self) -> str:
        return f"{LAYOUT_SCHEME}{self.prefix}"

    def blob_key(self, digest: str) -> str:
        return f"{self.prefix}/blobs/sha256/{digest_hex(digest)}"

    def _local_path(self, key: str) -> Path | None:
        return self.store.root / key if isinstance(self.store, LocalStore) else None

    # -- writing -----------------------------------------------------------------------

    def put_bytes(self, body: bytes) -> str:
        """Store a small blob (manifest, config) and return its digest."""
        digest = sha256_digest(body)
        self._put_if_absent(self.blob_key(digest), body)
        return digest

    def put_file(self, path: Path, digest: str, size: int, progress: Progress | None) -> None:
        """Store the model file as the blob `digest` (already computed from `path`)."""
        key = self.blob_key(digest)
        local = self._local_path(key)
        if local is not None:
            if local.is_file() and local.stat().st_size == size:
                if progress:
                    progress(size, size)
                return
            write_verified(
                file_chunks(path),
                local,
                digest=digest,
                size=size,
                what=f"model file {path}",
                progress=progress,
            )
            return
        try:
            body = path.read_bytes()
        except OSError as exc:
            raise ArtifactError(f"cannot read model file {path}: {exc.strerror or exc}") from None
        actual = sha256_digest(body)
        if actual != digest:
            raise mismatch(f"model file {path} changed while pushing", digest, actual)
        if progress:
            progress(0, size)
        self._put_if_absent(key, body)
        if progress:
            progress(size, size)

    def put_config(self) -> None:
        """Store the empty config blob `{}` every mpfn manifest references."""
        if self.put_bytes(EMPTY_CONFIG) != EMPTY_DIGEST:
            raise ArtifactError("internal error: empty config digest differs from the OCI one")

    def _put_if_absent(self, key: str, body: bytes, attempts: int = 3) -> None:
        # Content-addressed writes are idempotent, so unlike document updates they can be
        # retried safely after a transient server error.
        for attempt in range(attempts):
            try:
                self.store.put(key, body, if_absent=True)
                return
            except PreconditionFailed:
                return  # content-addressed (or the fixed oci-layout file): already there
            except StoreError as exc:
                if attempt == attempts - 1:
                    raise ArtifactError(f"cannot write {key} to {self.store.url}: {exc}") from None
                time.sleep(0.2 * (attempt + 1))

    def tag(self, digest: str, size: int, tag: str) -> None:
        """Point `tag` at the manifest `digest` in index.json (compare-and-swap, retried)."""
        self._put_if_absent(f"{self.prefix}/oci-layout", OCI_LAYOUT)
        key = f"{self.prefix}/index.json"
        for attempt in range(_INDEX_ATTEMPTS):
            index, etag = self._read_index(key)
            body = json.dumps(add_to_index(index, digest=digest, size=size, tag=tag), indent=2)
            try:
                if etag is None:
                    self.store.put(key, body.encode() + b"\n", if_absent=True)
                else:
                    self.store.put(key, body.encode() + b"\n", if_match=etag)
                return
            except PreconditionFailed:
                time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 25)))
            except StoreError as exc:
                raise ArtifactError(f"cannot write {key} to {self.store.url}: {exc}") from None
        raise ArtifactError(f"{key}: gave up after {_INDEX_ATTEMPTS} conflicting updates")

    def _read_index(self, key: str) -> tuple[dict[str, Any], str | None]:
        try:
            blob = self.store.get(key)
        except KeyNotFound:
            return empty_index(), None
        except StoreError as exc:
            raise ArtifactError(f"cannot read {key} from {self.store.url}: {exc}") from None
        assert blob is not None
        try:
            index = json.loads(blob.body)
            if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list):
                raise ValueError("not an image index")
        except ValueError as exc:
            raise ArtifactError(
                f"{key} in {self.store.url} is not a valid OCI index: {exc}"
            ) from None
        return index, blob.etag

    # -- reading -----------------------------------------------------------------------

    def get_bytes(self, digest: str, what: str) -> bytes:
        key = self.blob_key(digest)
        try:
            blob = self.store.get(key)
        except KeyNotFound:
            raise ArtifactError(
                f"{what} {digest} not found in {self.store.url}/{self.prefix}"
            ) from None
        except StoreError as exc:
            raise ArtifactError(f"cannot read {what} {digest}: {exc}") from None
        assert blob is not None
        return blob.body

    def chunks(self, digest: str, what: str) -> Iterator[bytes]:
        """The blob's bytes in chunks (streamed from disk on a LocalStore)."""
        local = self._local_path(self.blob_key(digest))
        if local is None:
            body = self.get_bytes(digest, what)
            for start in range(0, len(body), CHUNK):
                yield body[start : start + CHUNK]
            return
        try:
            fh = local.open("rb")
        except FileNotFoundError:
            raise ArtifactError(
                f"{what} {digest} not found in {self.store.url}/{self.prefix}"
            ) from None
        except OSError as exc:
            raise ArtifactError(f"cannot read {what} {digest}: {exc.strerror or exc}") from None
        with fh:
            while block := fh.read(CHUNK):
                yield block


def parse_reference(reference: str) -> str | None:
    """The store prefix of an `oci-layout:<prefix>` reference, None for a registry."""
    if not reference.startswith(LAYOUT_SCHEME):
        return None
    prefix = reference[len(LAYOUT_SCHEME) :].strip("/")
    if not prefix or any(p in ("", ".", "..") for p in prefix.split("/")):
        raise ArtifactError(f"invalid layout reference {reference!r}")
    return prefix
