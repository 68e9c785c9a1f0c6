"""`mpfn warm simulate`: replay a real trace through warm policies and score them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mpfn.cli.common import CliError, console, handle_errors, print_json

app = typer.Typer(help="Predictive pre-warming: simulate warm policies.", no_args_is_help=True)


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
