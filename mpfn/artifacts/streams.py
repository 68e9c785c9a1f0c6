"""Chunked hashing and verified, atomic file writes.

Nothing here holds a whole model in memory: files are hashed and copied in fixed-size
chunks, and a download only becomes visible at its final path (rename) after its digest
and size have been checked.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from mpfn.artifacts.errors import ArtifactError, DigestMismatch, mismatch

CHUNK = 1024 * 1024

Progress = Callable[[int, int], None]


def file_chunks(path: Path, chunk: int = CHUNK) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            yield block


def describe_file(path: Path, progress: Progress | None = None) -> tuple[str, int]:
    """Return (`sha256:<hex>`, size) of a file, reading it in chunks."""
    try:
        total = path.stat().st_size
        h = hashlib.sha256()
        done = 0
        for block in file_chunks(path):
            h.update(block)
            done += len(block)
            if progress:
                progress(done, total)
    except OSError as exc:
        raise ArtifactError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    return "sha256:" + h.hexdigest(), done


def write_verified(
    chunks: Iterable[bytes],
    out: Path,
    *,
    digest: str,
    size: int,
    what: str,
    progress: Progress | None = None,
) -> Path:
    """Stream `chunks` to `out` atomically, raising DigestMismatch unless they hash to `digest`.

    The bytes go to a temp file next to `out`; only verified content is renamed into place.
    """
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    except OSError as exc:
        raise ArtifactError(f"cannot write {out}: {exc.strerror or exc}") from None
    try:
        h = hashlib.sha256()
        done = 0
        with os.fdopen(fd, "wb") as fh:
            for block in chunks:
                fh.write(block)
                h.update(block)
                done += len(block)
                if done > size:
                    raise DigestMismatch(f"{what}: larger than the expected {size} bytes")
                if progress:
                    progress(done, size)
            fh.flush()
            os.fsync(fh.fileno())
        actual = "sha256:" + h.hexdigest()
        if actual != digest:
            raise mismatch(what, digest, actual)
        if done != size:
            raise DigestMismatch(f"{what}: size mismatch: expected {size} bytes, got {done}")
        os.replace(tmp, out)
    except OSError as exc:
        raise ArtifactError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return out
