"""`mpfn warm`: run the warmer, show its plan, draw its forecasts, simulate warm policies.

`run` applies one warmer pass and writes `plans/warm.json`; `plan` shows what a pass would
do without changing anything; `report` draws forecast vs actual per model; `simulate`
replays a real trace through warm policies and scores them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mpfn.cli.common import CliError, console, err_console, get_ctx, handle_errors, print_json
from mpfn.warm.plan import PLAN_KEY

if TYPE_CHECKING:
    from mpfn.warm.plan import WarmPlan

app = typer.Typer(help="Predictive pre-warming: run, plan, report, simulate.", no_args_is_help=True)


@app.callback()
def warm() -> None:
    """Predictive pre-warming."""


@app.command("simulate")
@handle_errors
def simulate(
    trace: Annotated[
        Path,
        typer.Option(
            "--trace", help="Trace CSV (Alibaba GenAI 2026, Azure LLM 2023 or Azure Functions 2019)"
        ),
    ],
    policy: Annotated[
        list[str],
        typer.Option(
            "--policy",
            help="none | keepalive:SECONDS | histogram | forecast:budget=HOURS (repeatable)",
        ),
    ],
    holdout_days: Annotated[float, typer.Option(help="Score only the last N days")] = 7.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    plot: Annotated[Path | None, typer.Option(help="Write the Pareto chart (PNG)")] = None,
    no_prophet: Annotated[
        bool, typer.Option("--no-prophet", help="Use the profile estimator instead of Prophet")
    ] = False,
) -> None:
    """Replay TRACE through each POLICY; one JSON object per policy (a list if several)."""
    from mpfn.simulator import load_trace, parse_policy, replay

    requests = load_trace(trace)
    if not requests:
        raise CliError(f"{trace}: no requests")
    policies = [parse_policy(p, use_prophet=not no_prophet) for p in policy]
    results = [replay(requests, p, holdout_days) for p in policies]
    if plot is not None:
        from mpfn.simulator.pareto import plot_pareto

        plot_pareto(results, plot, title=f"{trace.name}, last {holdout_days:g} days")
    rows = [r.as_dict() for r in results]
    if json_out:
        print_json(rows[0] if len(rows) == 1 else rows)
        return
    for r in results:
        console.print(
            f"{r.policy:<24} requests={r.requests} cold={r.cold_starts} "
            f"({100 * r.cold_start_rate:.2f} %) warm_model_hours="
            f"{r.warm_model_hours:.1f}",
            highlight=False,
        )


def _print_plan(plan: WarmPlan) -> None:
    if plan.models:
        console.print(
            f"{'model':<24} {'state':<5} {'why':<10} {'method':<7} {'yhat/h':>8} "
            f"{'upper/h':>8} {'P(req)':>6}",
            highlight=False,
            soft_wrap=True,
        )
    for m in plan.models:
        console.print(
            f"{m.model:<24} {'warm' if m.warm else 'cold':<5} {m.reason:<10} {m.method:<7} "
            f"{m.yhat:8.1f} {m.upper:8.1f} {m.probability:6.2f}",
            highlight=False,
            soft_wrap=True,
        )
    for p in plan.pools:
        wanted = ", ".join(f"{k}={v}" for k, v in p.desired.items()) or "-"
        note = f"  [{p.error}]" if p.error else ""
        console.print(f"pool {p.pool:<20} desired: {wanted}{note}", highlight=False, soft_wrap=True)
    for a in plan.actions:
        extra = f" ({a.load_ms:.0f} ms)" if a.load_ms is not None else ""
        extra += f": {a.error}" if a.error else ""
        console.print(
            f"{a.action:<6} {a.model}:{a.version} on {a.pool} -> {a.status}{extra}",
            highlight=False,
            soft_wrap=True,
        )
    if not plan.actions:
        console.print("no changes")


def _warn(plan: WarmPlan) -> None:
    for error in plan.errors:
        err_console.print(f"[yellow]warning:[/] {error}", highlight=False, soft_wrap=True)


@app.command("run")
@handle_errors
def run(
    ctx: typer.Context,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the run's summary as JSON")
    ] = False,
) -> None:
    """Run the warmer once: forecast, load/unload through the adapters, write the plan."""
    from mpfn.warm import run_once

    plan = run_once(get_ctx(ctx).store)
    if json_out:
        print_json(plan.summary())
    else:
        _print_plan(plan)
        console.print(f"plan written to {PLAN_KEY} ({plan.duration_s:.2f} s)", highlight=False)
    _warn(plan)


@app.command("plan")
@handle_errors
def plan(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print the plan document")] = False,
    last: Annotated[
        bool, typer.Option("--last", help=f"Show the last applied plan ({PLAN_KEY})")
    ] = False,
) -> None:
    """What the warmer would do now (nothing is loaded, unloaded or written)."""
    from mpfn.warm import WarmPlan, run_once

    c = get_ctx(ctx)
    if last:
        found = c.docs.find(PLAN_KEY, WarmPlan)
        if found is None:
            raise CliError(f"no warm plan yet ({PLAN_KEY}); run `mpfn warm run`")
        result = found
    else:
        result = run_once(c.store, apply=False)
    if json_out:
        print_json(result.model_dump(mode="json"))
    else:
        _print_plan(result)
    _warn(result)


@app.command("report")
@handle_errors
def report(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Directory for one PNG per model")],
    days: Annotated[float, typer.Option(help="Days of history to draw")] = 7.0,
) -> None:
    """Draw forecast vs actual requests per hour, one PNG per model."""
    import time

    from mpfn.registry import Registry
    from mpfn.warm.report import plot_report, read_report
    from mpfn.warm.usage import UsageReader

    if days <= 0:
        raise CliError("--days must be > 0")
    c = get_ctx(ctx)
    names = sorted({m.name for m in Registry(c.store).models()})
    if not names:
        raise CliError("no models registered")
    now = time.time()
    reader = UsageReader(c.store, write_rollups=False)
    for name in names:
        history = reader.history(name, now, days=days)
        path = plot_report(
            name, read_report(c.docs, name), history.start, history.counts, now, out / f"{name}.png"
        )
        console.print(str(path), highlight=False)
