"""`mpfn deploy` / `mpfn destroy`: plan, show, apply (see `mpfn.deploy.deployer`).

    mpfn deploy --target aws [--stage prod] [--region eu-west-1] [--set router.memory_mb=1024]
    mpfn deploy --target aws --dry-run        # print the plan, create nothing (reads the cloud)
    mpfn deploy --export DIR                  # SAM, Terraform, k8s manifests, Grafana
    mpfn deploy status|logs [--target local]  # what is deployed; local process logs
    mpfn destroy --target aws [--delete-state]

Settings come from the `deploy:` section of mpfn.yaml, overlaid by the stage, overlaid by
flags. Errors are one line; a bad config fails before anything is created.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer

from mpfn.cli.common import CliError, console, err_console, get_ctx, handle_errors, print_json
from mpfn.deploy.errors import DeployFailure

if TYPE_CHECKING:
    from mpfn.deploy import DeployConfig, Outcome, Project, Target
    from mpfn.deploy.sites import SiteOutcome

P = ParamSpec("P")
R = TypeVar("R")
Echo = Callable[[str], None]
_META = "mpfn.deploy.options"

deploy_app = typer.Typer(
    help="Deploy the router, warmer and pools: plan, show, apply.",
    no_args_is_help=False,
    invoke_without_command=True,
)

TargetOpt = Annotated[
    str | None,
    typer.Option("--target", "-t", help="local, k8s, aws or gcp (default: deploy.target)"),
]
StageOpt = Annotated[str | None, typer.Option("--stage", "-s", help="Stage (default: dev)")]
RegionOpt = Annotated[str | None, typer.Option("--region", help="Cloud region (aws, gcp)")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a deploy setting: PATH=VALUE (repeatable)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the plan and outcome as JSON")]
StatusJsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the deployment record(s) as JSON")
]
DryRunOpt = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Print the plan only; nothing is created or changed. aws and gcp still read "
        "the cloud to compare against it, so they need live credentials",
    ),
]
SiteOpt = Annotated[
    str | None, typer.Option("--site", help="Only this site of deploy.sites (default: all)")
]


def deploy_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Deploy failures are user-facing one-liners: hand them to `handle_errors` as such."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except DeployFailure as exc:
            raise CliError(" ".join(str(exc).split()) or type(exc).__name__) from None

    return wrapper


def _config(
    ctx: typer.Context,
    target: str | None,
    stage: str | None,
    region: str | None,
    assignments: list[str] | None,
) -> tuple[DeployConfig, Project]:
    from mpfn.deploy import Project, load_deploy_config

    c = get_ctx(ctx)
    config = load_deploy_config(
        c.config.options,
        stage=stage,
        target=target,
        region=region,
        assignments=tuple(assignments or ()),
    )
    return config, Project(c.config.project_dir, c.config.state, dict(c.config.options))


def _open(
    ctx: typer.Context,
    target: str | None,
    stage: str | None,
    region: str | None,
    assignments: list[str] | None,
) -> Target:
    from mpfn.deploy import open_target

    return open_target(*_config(ctx, target, stage, region, assignments))


def _sites(
    ctx: typer.Context,
    site: str | None,
    target: str | None,
    stage: str | None,
    region: str | None,
    assignments: list[str] | None,
) -> tuple[list[DeployConfig], Project] | None:
    """The site configs when mpfn.yaml has `deploy.sites`, else None (one target)."""
    from mpfn.deploy import Project
    from mpfn.deploy.siteconfig import has_sites, load_site_configs

    c = get_ctx(ctx)
    if not has_sites(c.config.options):
        if site is not None:
            raise CliError(f"--site {site}: mpfn.yaml has no deploy.sites")
        return None
    if target or region:
        raise CliError(
            "mpfn.yaml deploys sites: --target and --region do not apply (each site names "
            "its own); use --site NAME, or --set sites.NAME.SETTING=VALUE"
        )
    configs = load_site_configs(
        c.config.options,
        c.config.project_dir,
        stage=stage,
        assignments=tuple(assignments or ()),
        only=site,
    )
    return configs, Project(c.config.project_dir, c.config.state, dict(c.config.options))


def _report_sites(
    outcomes: list[SiteOutcome], json_out: bool, echo: Echo, dry_run: bool, *, show_outputs: bool
) -> None:
    if json_out:
        print_json({"sites": [o.as_dict() for o in outcomes]})
        return
    if dry_run:
        echo("dry run: nothing was changed.")
    for o in outcomes if show_outputs else ():
        outputs = {**o.resources.record.outputs, **o.registry.record.outputs}
        for key, value in sorted(outputs.items()):
            echo(f"{o.site}: {key}: {value}")


def _echo(json_out: bool) -> Echo:
    def echo(line: str) -> None:
        (err_console if json_out else console).print(line, highlight=False, soft_wrap=True)

    return echo


def _report(outcome: Outcome, json_out: bool, echo: Echo, registry: Outcome | None) -> None:
    outputs = {**outcome.record.outputs, **(registry.record.outputs if registry else {})}
    if json_out:
        print_json(
            {
                "plan": outcome.plan.as_dict(),
                "applied": outcome.applied or bool(registry and registry.applied),
                "outputs": outputs,
                **({"registry": registry.plan.as_dict()} if registry else {}),
            }
        )
        return
    if outcome.applied or (registry and registry.applied):
        echo("done.")
    for key, value in sorted(outputs.items()):
        echo(f"{key}: {value}")


@deploy_app.callback()
@handle_errors
@deploy_errors
def deploy(
    ctx: typer.Context,
    target: TargetOpt = None,
    stage: StageOpt = None,
    region: RegionOpt = None,
    assignments: SetOpt = None,
    dry_run: DryRunOpt = False,
    export: Annotated[
        Path | None, typer.Option("--export", help="Write SAM, Terraform, k8s, Grafana to DIR")
    ] = None,
    json_out: JsonOpt = False,
    site: SiteOpt = None,
) -> None:
    """Plan and apply a deployment (`status` and `logs` show what is deployed)."""
    if ctx.invoked_subcommand is not None:
        ctx.meta[_META] = (target, stage, region, assignments, site, json_out)
        return
    from mpfn.deploy.sites import deploy_one

    echo = _echo(json_out)
    sites = _sites(ctx, site, target, stage, region, assignments) if export is None else None
    if sites is not None:
        from mpfn.deploy.sites import deploy_sites

        outcomes = deploy_sites(*sites, echo, dry_run=dry_run)
        _report_sites(outcomes, json_out, echo, dry_run, show_outputs=True)
        return
    if export is not None:
        from mpfn.deploy.export import export_all

        config, project = _config(ctx, target, stage, region, assignments)
        for path in export_all(config, project, export):
            echo(f"wrote {path}")
        return
    tgt = _open(ctx, target, stage, region, assignments)
    outcome, registry = deploy_one(tgt, echo, dry_run=dry_run)
    if dry_run and not json_out:
        echo("dry run: nothing was changed.")
    _report(outcome, json_out, echo, registry)


def _sub_targets(
    ctx: typer.Context,
    target: str | None,
    stage: str | None,
    region: str | None,
    assignments: list[str] | None,
    site: str | None,
) -> list[Target]:
    """The one target, or every site's (or `--site`'s) when mpfn.yaml has sites. The
    options may follow `deploy` or the sub-command; the sub-command's win."""
    from mpfn.deploy import open_target

    first_target, first_stage, first_region, first_set, first_site, _ = (
        ctx.meta.get(_META) or (None,) * 6
    )
    target = target if target is not None else first_target
    stage = stage if stage is not None else first_stage
    region = region if region is not None else first_region
    site = site if site is not None else first_site
    assignments = [*(first_set or ()), *(assignments or ())]
    sites = _sites(ctx, site, target, stage, region, assignments)
    if sites is None:
        return [_open(ctx, target, stage, region, assignments)]
    configs, project = sites
    return [open_target(config, project) for config in configs]


def _status(tgt: Target) -> dict[str, Any]:
    records = tgt.records()
    record = records.read() if records is not None else None
    info: dict[str, Any] = {
        **({"site": tgt.config.site} if tgt.config.site else {}),
        "target": tgt.name,
        "stage": tgt.config.stage,
        "deployed": record is not None,
        "complete": bool(record and record.complete),
        "resources": [f"{k} {n}" for k, n in (record.keys if record else [])],
        "outputs": dict(record.outputs) if record else {},
    }
    info.update(tgt.status())
    return info


@deploy_app.command("status")
@handle_errors
@deploy_errors
def status(
    ctx: typer.Context,
    target: TargetOpt = None,
    stage: StageOpt = None,
    region: RegionOpt = None,
    assignments: SetOpt = None,
    site: SiteOpt = None,
    json_out: StatusJsonOpt = False,
) -> None:
    """Show the deployment record (and, for local, whether the processes run); with
    sites, one block per site."""
    targets = _sub_targets(ctx, target, stage, region, assignments, site)
    infos = [_status(tgt) for tgt in targets]
    if json_out or (ctx.meta.get(_META) or (None,) * 6)[5]:
        print_json(infos[0] if len(infos) == 1 and "site" not in infos[0] else infos)
        return
    for info in infos:
        for key, value in info.items():
            if isinstance(value, list):
                console.print(f"{key:>10}:", highlight=False)
                for item in value:
                    console.print(f"{'':>12}{item}", highlight=False)
            else:
                console.print(f"{key:>10}: {value}", highlight=False)


@deploy_app.command("logs")
@handle_errors
@deploy_errors
def logs(
    ctx: typer.Context,
    target: TargetOpt = None,
    stage: StageOpt = None,
    region: RegionOpt = None,
    assignments: SetOpt = None,
    site: SiteOpt = None,
    lines: Annotated[int, typer.Option("--lines", "-n", help="Lines per log")] = 40,
) -> None:
    """Print the tail of each deployed process's log (local), or where the logs are."""
    for tgt in _sub_targets(ctx, target, stage, region, assignments, site):
        if tgt.config.site:
            sys.stdout.write(f"== site {tgt.config.site} ({tgt.name}) ==\n")
        for line in tgt.logs(lines):
            sys.stdout.write(line + "\n")


@handle_errors
@deploy_errors
def destroy(
    ctx: typer.Context,
    target: TargetOpt = None,
    stage: StageOpt = None,
    region: RegionOpt = None,
    assignments: SetOpt = None,
    dry_run: DryRunOpt = False,
    delete_state: Annotated[
        bool,
        typer.Option("--delete-state", help="Also empty and delete the state bucket"),
    ] = False,
    json_out: JsonOpt = False,
    site: SiteOpt = None,
) -> None:
    """Remove what `mpfn deploy` created (the state bucket only when empty or asked)."""
    from mpfn.deploy import PlanOptions
    from mpfn.deploy.sites import destroy_one

    echo = _echo(json_out)
    sites = _sites(ctx, site, target, stage, region, assignments)
    if sites is not None:
        from mpfn.deploy.sites import destroy_sites

        options = PlanOptions(delete_state=delete_state)
        outcomes = destroy_sites(*sites, echo, dry_run=dry_run, options=options)
        _report_sites(outcomes, json_out, echo, dry_run, show_outputs=False)
        if not dry_run and not json_out:
            echo("done.")
        return
    tgt = _open(ctx, target, stage, region, assignments)
    outcome, registry = destroy_one(
        tgt, echo, dry_run=dry_run, options=PlanOptions(delete_state=delete_state)
    )
    if dry_run and not json_out:
        echo("dry run: nothing was changed.")
    _report(outcome, json_out, echo, registry)


def register(app: typer.Typer) -> None:
    """Add `deploy` (with `status`, `logs`) and `destroy` to the top-level CLI."""
    app.add_typer(deploy_app, name="deploy")
    app.command("destroy")(destroy)
