"""Local-directory store (`file://DIR`), the embedded default.

Writes are atomic (temp file + rename) and ETags are SHA-256 content hashes, so readers
never see a torn document. Preconditions are enforced under an exclusive `flock` on a
per-directory lock file, which makes read-check-rename atomic across threads and
processes on the same host.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from mpfn.store.base import Blob, KeyNotFound, PreconditionFailed, StoreUnavailable, check_key

_LOCK_NAME = ".mpfn-store.lock"


def content_etag(body: bytes) -> str:
    """ETag of a local object: the hex SHA-256 of its bytes."""
    return hashlib.sha256(body).hexdigest()


class LocalStore:
    """A directory on local disk holding mpfn state."""

    def __init__(
        self, root: str | os.PathLike[str], *, create: bool | Literal["on-write"] = True
    ) -> None:
        """`create`: True makes the directory now; "on-write" at the first write (until
        then the store reads as empty); False requires it to exist."""
        self.root = Path(root).expanduser().resolve()
        self.lazy = create == "on-write"
        if create is True:
            self.root.mkdir(parents=True, exist_ok=True)
        elif not self.lazy and not self.root.is_dir():
            raise StoreUnavailable(f"state directory {self.root} does not exist")
        self.url = f"file://{self.root}"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            fd = os.open(self.root / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreUnavailable(f"cannot lock state directory {self.root}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def get(self, key: str, *, if_none_match: str | None = None) -> Blob | None:
        path = self._path(key)
        try:
            body = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyNotFound(f"{key}: not found in {self.url}") from None
        except OSError as exc:
            raise StoreUnavailable(f"cannot read {path}: {exc}") from exc
        etag = content_etag(body)
        if if_none_match is not None and if_none_match == etag:
            return None
        return Blob(body=body, etag=etag)

    def _current_etag(self, path: Path) -> str | None:
        try:
            return content_etag(path.read_bytes())
        except FileNotFoundError:
            return None

    def put(
        self,
        key: str,
        body: bytes,
        *,
        if_match: str | None = None,
        if_absent: bool = False,
    ) -> str:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
            with os.fdopen(fd, "wb") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise StoreUnavailable(f"cannot write {path}: {exc}") from exc
        try:
            with self._locked():
                if if_match is not None or if_absent:
                    current = self._current_etag(path)
                    if if_absent and current is not None:
                        raise PreconditionFailed(f"{key}: already exists")
                    if if_match is not None and current != if_match:
                        raise PreconditionFailed(f"{key}: changed since it was read")
                os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return content_etag(body)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        path = self._path(key)
        if self.lazy and not self.root.is_dir():
            raise KeyNotFound(f"{key}: not found in {self.url}")
        with self._locked():
            current = self._current_etag(path)
            if current is None:
                raise KeyNotFound(f"{key}: not found in {self.url}")
            if if_match is not None and current != if_match:
                raise PreconditionFailed(f"{key}: changed since it was read")
            path.unlink()
        # Remove now-empty parent directories so listings stay clean.
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def list(self, prefix: str = "") -> list[str]:
        keys: list[str] = []
        if not self.root.is_dir():
            if self.lazy:
                return keys
            raise StoreUnavailable(f"state directory {self.root} does not exist")
        # Walk only the directory the prefix names, not the whole state tree.
        base_rel = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        try:
            start = self.root / check_key(base_rel) if base_rel else self.root
        except ValueError:
            start = self.root  # an odd prefix matches nothing special: filter below
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = os.path.relpath(dirpath, self.root)
            for name in filenames:
                if name.startswith("."):
                    continue
                key = name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)
