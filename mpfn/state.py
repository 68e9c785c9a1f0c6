"""Typed access to state documents on top of a `Store`.

`Documents` reads and writes pydantic documents with optimistic concurrency (`update`
retries read-modify-write on a precondition failure, so concurrent writers never lose an
update). `CachedDocument` is the reader used on hot paths: it revalidates by ETag and keeps
serving its last good copy when the store is unreachable or the document is invalid.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel, ValidationError

from mpfn.store.base import Blob, KeyNotFound, PreconditionFailed, Store, StoreError

log = logging.getLogger("mpfn.state")

D = TypeVar("D", bound=BaseModel)


class InvalidDocument(StoreError):
    """A stored document does not match its schema; the message names the field."""


def describe_validation_error(key: str, exc: ValidationError) -> str:
    """One line naming each offending field, e.g. `pools/a.json: cost_per_hour: ...`."""
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(document)"
        problems.append(f"{loc}: {err['msg']}")
    return f"{key}: invalid: " + "; ".join(problems)


def parse_document(key: str, body: bytes, cls: type[D]) -> D:
    """Validate `body` as `cls`, raising InvalidDocument that names the bad field."""
    try:
        return cls.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidDocument(describe_validation_error(key, exc)) from None


def dump_document(doc: BaseModel) -> bytes:
    return doc.model_dump_json(indent=2, exclude_none=False).encode() + b"\n"


@dataclass(frozen=True, slots=True)
class Versioned(Generic[D]):
    """A parsed document together with the ETag it was read at."""

    doc: D
    etag: str


class Documents:
    """Typed CRUD over a store; every write is conditional."""

    def __init__(self, store: Store, *, max_retries: int = 200) -> None:
        self.store = store
        self.max_retries = max_retries

    def read(self, key: str, cls: type[D]) -> Versioned[D]:
        blob = self.store.get(key)
        assert blob is not None
        return Versioned(parse_document(key, blob.body, cls), blob.etag)

    def get(self, key: str, cls: type[D]) -> D:
        return self.read(key, cls).doc

    def find(self, key: str, cls: type[D]) -> D | None:
        try:
            return self.get(key, cls)
        except KeyNotFound:
            return None

    def create(self, key: str, doc: BaseModel) -> str:
        """Write a new document; PreconditionFailed if it already exists."""
        return self.store.put(key, dump_document(doc), if_absent=True)

    def replace(self, key: str, doc: BaseModel, *, if_match: str | None = None) -> str:
        return self.store.put(key, dump_document(doc), if_match=if_match)

    def upsert(self, key: str, doc: BaseModel) -> str:
        """Create or overwrite, but never clobber a concurrent writer's newer version."""
        return self.update(key, type(doc), lambda _old: doc, create=True)

    def update(
        self,
        key: str,
        cls: type[D],
        mutate: Callable[[D | None], D],
        *,
        create: bool = False,
    ) -> str:
        """Read-modify-write with optimistic concurrency; returns the new ETag.

        `mutate` gets the current document (None when absent and `create` is set) and
        returns the new one. It may be called several times, so it must be pure.
        """
        for attempt in range(self.max_retries):
            try:
                current: Versioned[D] | None = self.read(key, cls)
            except KeyNotFound:
                if not create:
                    raise
                current = None
            new = mutate(current.doc if current else None)
            body = dump_document(new)
            try:
                if current is None:
                    return self.store.put(key, body, if_absent=True)
                return self.store.put(key, body, if_match=current.etag)
            except PreconditionFailed:
                # Someone else won the race: back off with jitter, re-read, re-apply.
                time.sleep(min(0.2, 0.002 * (2 ** min(attempt, 6))) * random.random())
        raise PreconditionFailed(f"{key}: gave up after {self.max_retries} conflicting writes")

    def delete(self, key: str) -> None:
        self.store.delete(key)

    def list(self, prefix: str, cls: type[D]) -> list[D]:
        """Every valid document under `prefix`; invalid ones are logged and skipped."""
        docs: list[D] = []
        for key in self.store.list(prefix):
            if not key.endswith(".json"):
                continue
            try:
                docs.append(self.get(key, cls))
            except KeyNotFound:
                continue  # deleted between list and get
            except InvalidDocument as exc:
                log.warning("%s", exc)
        return docs


class CachedDocument(Generic[D]):
    """A TTL-cached, ETag-revalidated view of one document with stale-if-error.

    `get()` returns the last good copy when the store fails or the new version is
    invalid, and raises only when no good copy was ever read.
    """

    def __init__(
        self,
        store: Store,
        key: str,
        cls: type[D],
        *,
        ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.key, self.cls, self.ttl, self.clock = store, key, cls, ttl, clock
        self._good: Versioned[D] | None = None
        self._checked_at = float("-inf")
        self.last_error: StoreError | None = None

    def refresh(self) -> D:
        self._checked_at = self.clock()
        try:
            blob: Blob | None = self.store.get(
                self.key, if_none_match=self._good.etag if self._good else None
            )
            if blob is not None:
                self._good = Versioned(parse_document(self.key, blob.body, self.cls), blob.etag)
            self.last_error = None
        except KeyNotFound:
            self._good = None
            raise
        except StoreError as exc:
            self.last_error = exc
            if self._good is None:
                raise
            log.warning("%s; serving last good copy (etag %s)", exc, self._good.etag[:12])
        assert self._good is not None
        return self._good.doc

    def get(self) -> D:
        if self._good is not None and self.clock() - self._checked_at < self.ttl:
            return self._good.doc
        return self.refresh()
