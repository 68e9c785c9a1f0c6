"""The deploy pipeline, in one screen.

    mpfn.yaml `deploy:` --layer(stage, flags)--> DeployConfig        (config.py; no I/O)
        -> open_target(config)                                       (targets.py)
        -> target.desired()      frozen Resources; builds the router zip / manifests
        -> target.records()      the deployment record in the state store, if it exists
        -> target.observe(keys)  read-only look at every desired or recorded resource
        -> Planner.plan(...)     pure diff -> Plan of create/update/delete/keep changes
        -> DisplayExecutor       prints the plan (all that `--dry-run` does)
        -> Executor              applies change by change, rewriting the record each step

`destroy` is the same pipeline with nothing desired: every observed resource the config
names or the record lists becomes a delete. Since observation reads the remote side, a
deploy that failed half-way is resumed by running it again, and a destroy after a failure
still finds what was created.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mpfn.deploy.executor import DisplayExecutor, Executor
from mpfn.deploy.models import Plan, ResourceKey
from mpfn.deploy.planner import PlanOptions
from mpfn.deploy.record import DeploymentRecord
from mpfn.deploy.targets import Target

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    plan: Plan
    record: DeploymentRecord
    applied: bool


def _unique(keys: list[ResourceKey]) -> list[ResourceKey]:
    return list(dict.fromkeys(keys))


def _record_of(target: Target) -> DeploymentRecord:
    records = target.records()
    found = records.read() if records is not None else None
    return found or DeploymentRecord(
        target=target.name, stage=target.config.stage, name=target.config.name
    )


def plan_deploy(
    target: Target, options: PlanOptions | None = None
) -> tuple[Plan, DeploymentRecord]:
    """Observe and diff: the plan that makes the remote side match the config."""
    desired = target.desired()
    record = _record_of(target)
    keys = _unique([r.key for r in desired] + record.keys)
    observed = target.observe(keys)
    plan = target.planner(options or PlanOptions()).plan(
        target.name, target.config.stage, desired, observed
    )
    return plan, record


def plan_destroy(
    target: Target, options: PlanOptions | None = None
) -> tuple[Plan, DeploymentRecord]:
    """Observe and diff against nothing: deletes for everything deploy made."""
    record = _record_of(target)
    keys = _unique(target.resource_keys() + record.keys)
    observed = target.observe(keys)
    plan = target.planner(options or PlanOptions()).plan(
        target.name, target.config.stage, (), observed
    )
    return plan, record


def deploy(
    target: Target, echo: Echo, *, dry_run: bool = False, options: PlanOptions | None = None
) -> Outcome:
    plan, record = plan_deploy(target, options)
    for note in target.notes():
        echo(note)
    DisplayExecutor(echo).execute(plan, record)
    if dry_run:
        return Outcome(plan, record, applied=False)
    return Outcome(plan, Executor(target, echo).execute(plan, record), applied=not plan.is_noop)


def destroy(
    target: Target, echo: Echo, *, dry_run: bool = False, options: PlanOptions | None = None
) -> Outcome:
    plan, record = plan_destroy(target, options)
    DisplayExecutor(echo).execute(plan, record)
    if dry_run:
        return Outcome(plan, record, applied=False)
    return Outcome(plan, Executor(target, echo).execute(plan, record, destroy=True), applied=True)
