"""A store that passes every call to the store it wraps: the base of test stores that
change how a few calls behave (override those) on top of a real backend."""

from __future__ import annotations

from dataclasses import dataclass

from mpfn.store.base import Blob, Store


@dataclass
class PassThrough:
    """`inner`, unchanged."""

    inner: Store

    @property
    def url(self) -> str:
        return self.inner.url

    def get(self, key: str, *, if_none_match: str | None = None) -> Blob | None:
        return self.inner.get(key, if_none_match=if_none_match)

    def put(
        self, key: str, body: bytes, *, if_match: str | None = None, if_absent: bool = False
    ) -> str:
        return self.inner.put(key, body, if_match=if_match, if_absent=if_absent)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        self.inner.delete(key, if_match=if_match)

    def list(self, prefix: str = "") -> list[str]:
        return self.inner.list(prefix)
