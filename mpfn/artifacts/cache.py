"""A local, content-addressed cache of model files for workers.

`fetch_cached` keeps each model file at `<cache_dir>/sha256/<hex>` (its blob digest). It
pulls and verifies a blob once, then records the file's stat fingerprint (size, mtime,
ctime, inode) in a sidecar `<hex>.verified`. Later calls return the path at the cost of one
`stat`; if the file was rewritten, truncated or replaced since, it is re-hashed and, when
the content no longer matches, pulled again. Every write is temp file + rename, so
concurrent workers sharing a cache directory never see a partial file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from mpfn.artifacts.errors import ArtifactError, DigestMismatch
from mpfn.artifacts.media import digest_hex
from mpfn.artifacts.models import pull_model
from mpfn.artifacts.streams import describe_file
from mpfn.documents import ArtifactRef
from mpfn.store.base import Store


def cache_path(cache_dir: Path, ref: ArtifactRef) -> Path:
    """Where `fetch_cached` keeps the model file of `ref`."""
    return Path(cache_dir) / "sha256" / digest_hex(ref.blob_digest)


def fetch_cached(
    store: Store, ref: ArtifactRef, cache_dir: Path, *, insecure: bool = False
) -> Path:
    """Return a verified local copy of `ref`'s model file, pulling it only when needed."""
    path = cache_path(cache_dir, ref)
    marker = path.with_name(path.name + ".verified")
    fingerprint = _fingerprint(path)
    if fingerprint is not None and _read(marker) == fingerprint:
        return path
    if fingerprint is not None:
        actual, size = describe_file(path)
        if actual == ref.blob_digest and size == ref.size:
            _write_marker(marker, path)
            return path
    try:
        pull_model(store, ref, path, insecure=insecure)
    except DigestMismatch:
        with contextlib.suppress(FileNotFoundError):
            marker.unlink()
        raise
    _write_marker(marker, path)
    return path


def _fingerprint(path: Path) -> str | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ArtifactError(f"cannot stat cached model {path}: {exc.strerror or exc}") from None
    return f"{st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} {st.st_ino}"


def _read(marker: Path) -> str | None:
    try:
        return marker.read_text().strip()
    except OSError:
        return None


def _write_marker(marker: Path, path: Path) -> None:
    fingerprint = _fingerprint(path)
    if fingerprint is None:
        return
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{marker.name}.", dir=marker.parent)
        with os.fdopen(fd, "w") as fh:
            fh.write(fingerprint + "\n")
        os.replace(tmp, marker)
    except OSError as exc:
        raise ArtifactError(f"cannot write cache marker {marker}: {exc.strerror or exc}") from None
