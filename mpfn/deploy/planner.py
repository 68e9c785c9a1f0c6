"""The planner: desired resources + observed remote state -> an ordered `Plan`. Pure.

`Planner.plan` never reads anything itself: the target observed the remote side first
(read-only) and passes what it saw, keyed by `(kind, name)`. Each resource type may have a
`_plan_<classname>` method (lower-case) deciding its own change; the default compares the
settings field by field. Deletions come last, in reverse creation order. Resources that
hold the state (`holds_state`) are kept on destroy while they contain anything but
deployment records, unless the caller asked to delete the state too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mpfn.deploy.errors import DeployFailure
from mpfn.deploy.models import Action, Change, FieldChange, Observed, Plan, Resource


class PlanError(DeployFailure, ValueError):
    """The remote state cannot be reconciled with the config (one line)."""


@dataclass(frozen=True)
class PlanOptions:
    delete_state: bool = False  # destroy: also empty and delete the state bucket


class Planner:
    """Diffs desired against observed resources, one `_plan_<type>` per resource type."""

    def __init__(self, options: PlanOptions | None = None) -> None:
        self.options = options or PlanOptions()

    def plan(
        self,
        target: str,
        stage: str,
        desired: Sequence[Resource],
        observed: Observed,
    ) -> Plan:
        seen: set[tuple[str, str]] = set()
        changes: list[Change] = []
        for resource in sorted(desired, key=lambda r: r.order):
            if resource.key in seen:
                raise PlanError(f"{resource.kind} {resource.name} is declared twice")
            seen.add(resource.key)
            method: Callable[[Resource, Resource | None], Change] = getattr(
                self, f"_plan_{type(resource).__name__.lower()}", self._plan_resource
            )
            changes.append(method(resource, observed.get(resource.key)))
        stale = [r for key, r in observed.items() if r is not None and key not in seen]
        for current in sorted(stale, key=lambda r: r.order, reverse=True):
            changes.append(self._plan_delete(current))
        return Plan(target, stage, tuple(changes))

    def _plan_resource(self, desired: Resource, current: Resource | None) -> Change:
        if current is None:
            return Change(Action.CREATE, desired.kind, desired.name, desired=desired)
        fields = diff_settings(current, desired)
        if not fields:
            return Change(Action.KEEP, desired.kind, desired.name, desired, current)
        frozen: frozenset[str] = getattr(type(desired), "immutable", frozenset())
        blocked = [fc.field for fc in fields if fc.field in frozen]
        if blocked:
            raise PlanError(
                f"{desired.kind} {desired.name}: {', '.join(blocked)} cannot change in place "
                f"({', '.join(f'{fc.old!r} -> {fc.new!r}' for fc in fields if fc.field in frozen)})"
                "; destroy it first or pick another name"
            )
        return Change(Action.UPDATE, desired.kind, desired.name, desired, current, fields)

    def _plan_delete(self, current: Resource) -> Change:
        if getattr(current, "holds_state", False) and not self.options.delete_state:
            others = int(getattr(current, "foreign_objects", 0))
            if others:
                return Change(
                    Action.KEEP,
                    current.kind,
                    current.name,
                    current=current,
                    reason=f"holds {others} state object(s); --delete-state removes it",
                )
        return Change(Action.DELETE, current.kind, current.name, current=current)


def diff_settings(current: Resource, desired: Resource) -> tuple[FieldChange, ...]:
    old, new = current.settings(), desired.settings()
    return tuple(
        FieldChange(name, old.get(name), value)
        for name, value in new.items()
        if old.get(name) != value
    )
