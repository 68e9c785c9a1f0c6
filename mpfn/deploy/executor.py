"""Executors: carry out a plan change by change, or only show it.

`Executor` applies each change through the target and rewrites the deployment record
after every step, so an interrupted run leaves a record of what exists; a failure stops
at once with one line naming the change and how far it got. `DisplayExecutor` prints the
plan and touches nothing: `--dry-run` is the same pipeline with it swapped in.
"""

from __future__ import annotations

from collections.abc import Callable

from mpfn.deploy.errors import DeployFailure
from mpfn.deploy.models import Action, Plan
from mpfn.deploy.record import DeploymentRecord, RecordStore
from mpfn.deploy.targets import Target

Echo = Callable[[str], None]


class DeployError(DeployFailure, RuntimeError):
    """Applying a plan failed; the message says which change and how to recover."""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class DisplayExecutor:
    """Prints the plan; applies nothing."""

    def __init__(self, echo: Echo) -> None:
        self.echo = echo

    def execute(
        self, plan: Plan, record: DeploymentRecord, *, destroy: bool = False
    ) -> DeploymentRecord:
        self.echo(f"plan for {plan.target} (stage {plan.stage}): {plan.summary()}")
        for change in plan:
            self.echo("  " + change.describe())
        return record


class Executor:
    """Applies a plan through `target`, recording progress in the target's record store."""

    def __init__(self, target: Target, echo: Echo) -> None:
        self.target = target
        self.echo = echo

    def execute(
        self, plan: Plan, record: DeploymentRecord, *, destroy: bool = False
    ) -> DeploymentRecord:
        """Apply every change; on `destroy` the record is removed at the end."""
        records: RecordStore | None = self.target.records()
        before = record
        todo = [c for c in plan if c.action is not Action.KEEP]
        for change in plan:
            if change.action is Action.KEEP and change.current is not None:
                record = record.after(change, change.current.outputs())
        for done, change in enumerate(todo):
            if change.action is Action.DELETE and getattr(change.current, "holds_state", False):
                if records is not None:
                    records.remove()
                records = None
            self.echo(f"  {change.describe()} ...")
            try:
                outputs = self.target.apply(change)
            except Exception as exc:  # any failure: stop, keep the record, say how far we got
                raise DeployError(
                    f"{change.action.value} {change.kind} {change.name} failed: {_one_line(exc)} "
                    f"({done} of {len(todo)} changes applied; run the same command again to "
                    "resume, or mpfn destroy to remove what was created)"
                ) from None
            record = record.after(change, outputs)
            if records is None and change.action is not Action.DELETE:
                records = self.target.records()
            if records is not None:
                records.write(record)
        record = record.model_copy(update={"complete": not destroy})
        if records is None:
            return record
        if destroy:
            records.remove()
        elif todo or _facts(record) != _facts(before):
            records.write(record)
        return record


def _facts(record: DeploymentRecord) -> tuple[object, ...]:
    return (sorted(record.keys), record.outputs, record.complete)
