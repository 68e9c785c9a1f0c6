"""What a deployment is made of: frozen resources, and the plan of changes to them.

A `Resource` is a frozen dataclass naming one thing a target creates (a bucket, a role, a
function, a manifest file, a process stack). Its fields are the settings the planner
compares; fields marked `observed_only()` carry facts read back from the remote side
(a URL, an object count) or local build inputs (a zip path) and never cause an update.

A `Plan` is an ordered tuple of `Change`s. Nothing in this module performs I/O.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

ResourceKey = tuple[str, str]  # (kind, name)

_NO_DIFF = "mpfn.deploy.no_diff"


def observed_only(default: Any = "") -> Any:
    """A field that is reported but never compared (remote facts, local build paths)."""
    return field(default=default, compare=False, repr=False, metadata={_NO_DIFF: True})


@dataclass(frozen=True)
class Resource:
    """One deployable thing. Subclasses set `kind` and `order` and add their settings.

    `order` ranks creation (ascending) and deletion (descending): a role before the
    function that assumes it, the function before the URL and schedule that point at it.
    """

    name: str
    kind: ClassVar[str] = "resource"
    order: ClassVar[int] = 50

    @property
    def key(self) -> ResourceKey:
        return (self.kind, self.name)

    def settings(self) -> dict[str, Any]:
        """The compared fields (everything but the name and observed-only fields)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "name" and not f.metadata.get(_NO_DIFF)
        }

    def outputs(self) -> dict[str, str]:
        """Values worth reporting after a deploy (a URL, an ARN); none by default."""
        return {}


class Action(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    KEEP = "keep"  # exists and matches, or is deliberately retained


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: Any
    new: Any


@dataclass(frozen=True)
class Change:
    """One step of a plan. `desired` is None for deletes, `current` None for creates."""

    action: Action
    kind: str
    name: str
    desired: Resource | None = None
    current: Resource | None = None
    fields: tuple[FieldChange, ...] = ()
    reason: str = ""

    @property
    def key(self) -> ResourceKey:
        return (self.kind, self.name)

    @property
    def resource(self) -> Resource:
        found = self.desired or self.current
        assert found is not None, "a change names a desired or a current resource"
        return found

    def describe(self) -> str:
        """One line: `+ create aws.lambda mpfn-dev-router` with changed fields or a reason."""
        marks = {Action.CREATE: "+", Action.UPDATE: "~", Action.DELETE: "-", Action.KEEP: "="}
        line = f"{marks[self.action]} {self.action.value:<6} {self.kind} {self.name}"
        if self.fields:
            line += " (" + ", ".join(_field_text(fc) for fc in self.fields) + ")"
        if self.reason:
            line += f" [{self.reason}]"
        return line

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"action": self.action.value, "kind": self.kind, "name": self.name}
        if self.fields:
            data["fields"] = {fc.field: {"old": fc.old, "new": fc.new} for fc in self.fields}
        if self.reason:
            data["reason"] = self.reason
        return data


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _field_text(fc: FieldChange) -> str:
    return f"{fc.field}: {_short(fc.old)} -> {_short(fc.new)}"


@dataclass(frozen=True)
class Plan:
    """The ordered changes that turn the remote state into the desired one."""

    target: str
    stage: str
    changes: tuple[Change, ...]

    def __iter__(self) -> Iterator[Change]:
        return iter(self.changes)

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action is action)

    @property
    def is_noop(self) -> bool:
        return all(c.action is Action.KEEP for c in self.changes)

    def summary(self) -> str:
        return (
            f"{self.count(Action.CREATE)} to create, {self.count(Action.UPDATE)} to update, "
            f"{self.count(Action.DELETE)} to delete, {self.count(Action.KEEP)} unchanged"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "stage": self.stage,
            "changes": [c.as_dict() for c in self.changes if c.action is not Action.KEEP],
            "unchanged": [c.name for c in self.changes if c.action is Action.KEEP],
        }


Observed = Mapping[ResourceKey, Resource | None]
