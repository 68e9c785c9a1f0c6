"""The model registry: model versions, pools and policies as documents in the store.

A thin typed facade over `Documents`; version resolution (`latest_version`) is a pure
function so the worker, the router and the CLI agree on what `NAME` without a version means.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mpfn.documents import ModelVersion, Policy, Pool, model_key, policy_key, pool_key
from mpfn.state import Documents
from mpfn.store import KeyNotFound, PreconditionFailed, Store


class NotRegistered(LookupError):
    """The named model, version, pool or policy does not exist."""


class AlreadyRegistered(ValueError):
    """A model version with this name already exists (versions are immutable)."""


def _natural_key(text: str) -> list[tuple[int, int | str]]:
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", text) if p]


def latest_version(versions: Iterable[str]) -> str | None:
    """The highest version by natural order (`10` > `9`, `1.10` > `1.9`), or None."""
    ordered = sorted(versions, key=_natural_key)
    return ordered[-1] if ordered else None


def parse_model_ref(ref: str) -> tuple[str, str | None]:
    """`name[:version]` -> (name, version or None)."""
    name, sep, version = ref.partition(":")
    if not name or (sep and not version):
        raise ValueError(f"invalid model reference {ref!r}: expected NAME or NAME:VERSION")
    return name, version or None


class Registry:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.docs = Documents(store)

    # -- models -----------------------------------------------------------------------
    def versions(self, name: str) -> list[str]:
        prefix = f"models/{name}/"
        return [
            k[len(prefix) : -len(".json")]
            for k in self.store.list(prefix)
            if k.endswith(".json") and "/" not in k[len(prefix) :]
        ]

    def model(self, name: str, version: str | None = None) -> ModelVersion:
        if version is None:
            version = latest_version(self.versions(name))
            if version is None:
                raise NotRegistered(f"model {name!r} is not registered")
        try:
            return self.docs.get(model_key(name, version), ModelVersion)
        except KeyNotFound:
            raise NotRegistered(f"model {name}:{version} is not registered") from None

    def models(self) -> list[ModelVersion]:
        return self.docs.list("models/", ModelVersion)

    def add_model(self, model: ModelVersion) -> None:
        try:
            self.docs.create(model.key, model)
        except PreconditionFailed:
            raise AlreadyRegistered(
                f"model {model.name}:{model.version} already exists; versions are immutable "
                "(push a new version, or remove this one first)"
            ) from None

    def remove_model(self, name: str, version: str) -> None:
        try:
            self.docs.delete(model_key(name, version))
        except KeyNotFound:
            raise NotRegistered(f"model {name}:{version} is not registered") from None

    # -- pools ------------------------------------------------------------------------
    def pools(self) -> list[Pool]:
        return self.docs.list("pools/", Pool)

    def pool(self, pool_id: str) -> Pool:
        try:
            return self.docs.get(pool_key(pool_id), Pool)
        except KeyNotFound:
            raise NotRegistered(f"pool {pool_id!r} is not registered") from None

    def put_pool(self, pool: Pool) -> None:
        self.docs.upsert(pool.key, pool)

    def remove_pool(self, pool_id: str) -> None:
        try:
            self.docs.delete(pool_key(pool_id))
        except KeyNotFound:
            raise NotRegistered(f"pool {pool_id!r} is not registered") from None

    # -- policies ---------------------------------------------------------------------
    def policies(self) -> list[Policy]:
        return self.docs.list("policies/", Policy)

    def policy(self, name: str) -> Policy:
        try:
            return self.docs.get(policy_key(name), Policy)
        except KeyNotFound:
            raise NotRegistered(f"policy {name!r} is not set") from None

    def put_policy(self, policy: Policy) -> None:
        self.docs.upsert(policy.key, policy)
