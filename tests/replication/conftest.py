"""Stores for the replication tests: local directories, and one whose link can be cut."""

from __future__ import annotations

from pathlib import Path

from mpfn.store import LocalStore, StoreUnavailable
from mpfn.store.base import Blob


class CuttableStore(LocalStore):
    """A local store standing for a site's replica behind a link that can be cut: while
    cut, every call fails as an unreachable store does."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.cut = False

    def _check(self) -> None:
        if self.cut:
            raise StoreUnavailable(f"cannot reach {self.url}: link cut")

    def get(self, key: str, *, if_none_match: str | None = None) -> Blob | None:
        self._check()
        return super().get(key, if_none_match=if_none_match)

    def put(
        self, key: str, body: bytes, *, if_match: str | None = None, if_absent: bool = False
    ) -> str:
        self._check()
        return super().put(key, body, if_match=if_match, if_absent=if_absent)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        self._check()
        super().delete(key, if_match=if_match)

    def list(self, prefix: str = "") -> list[str]:
        self._check()
        return super().list(prefix)
