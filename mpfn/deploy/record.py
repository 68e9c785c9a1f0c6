"""The deployment record: what a deploy created, kept in the state store.

`deploy/<target>/<stage>.json` lists every resource (kind and name) the target holds and
the outputs worth reporting (router URL, ARNs). It is rewritten after every applied
change, so an interrupted deploy leaves a record of exactly what exists: the next deploy
resumes from it and `destroy` removes it. Writes are conditional like every state write.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from mpfn.deploy.models import Action, Change, ResourceKey
from mpfn.state import Documents
from mpfn.store import KeyNotFound, Store


class RecordedResource(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: str
    name: str


class DeploymentRecord(BaseModel):
    target: str
    stage: str
    name: str
    resources: list[RecordedResource] = Field(default_factory=list)
    outputs: dict[str, str] = Field(default_factory=dict)
    complete: bool = False
    updated_at: str = ""

    @property
    def keys(self) -> list[ResourceKey]:
        return [(r.kind, r.name) for r in self.resources]

    def after(self, change: Change, outputs: dict[str, str]) -> DeploymentRecord:
        """This record once `change` has been applied (pure)."""
        kept = [r for r in self.resources if (r.kind, r.name) != change.key]
        if change.action is not Action.DELETE:
            kept.append(RecordedResource(kind=change.kind, name=change.name))
        return self.model_copy(
            update={
                "resources": kept,
                "outputs": {**self.outputs, **outputs},
                "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )


def record_key(target: str, stage: str) -> str:
    return f"deploy/{target}/{stage}.json"


class RecordStore:
    """Reads and writes one target/stage record in a store.

    `open_store` is called on first use; `exists` tells whether the store is there yet
    (a local state directory before the first deploy is not), so reading never creates it.
    """

    def __init__(
        self,
        open_store: Callable[[], Store],
        target: str,
        stage: str,
        *,
        exists: Callable[[], bool] = lambda: True,
    ) -> None:
        self._open = open_store
        self._exists = exists
        self._docs: Documents | None = None
        self.key = record_key(target, stage)

    @property
    def docs(self) -> Documents:
        if self._docs is None:
            self._docs = Documents(self._open())
        return self._docs

    def read(self) -> DeploymentRecord | None:
        if not self._exists():
            return None
        return self.docs.find(self.key, DeploymentRecord)

    def write(self, record: DeploymentRecord) -> None:
        self.docs.upsert(self.key, record)

    def remove(self) -> None:
        if not self._exists():
            return
        with contextlib.suppress(KeyNotFound):
            self.docs.delete(self.key)
