"""`mpfn cost report`: what serving cost, per pool, model or site, over a recent period.

The numbers come from `mpfn.cost` (replica-time from `scaling/`, requests and tokens from
`usage/`, prices from each pool's `cost_per_hour`); this module only parses options and
prints.
"""

from __future__ import annotations

import time
from typing import Annotated, cast

import typer
from rich import box
from rich.table import Column, Table

from mpfn.cli.common import CliError, console, get_ctx, handle_errors, print_json
from mpfn.cost import GROUPINGS, CostReport, Group, GroupBy, iso, parse_duration, report

app = typer.Typer(help="What serving costs: replica-time priced, per request and token.",
                  no_args_is_help=True)  # fmt: skip


def _money(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"${value:,.0f}"
    return f"${value:.2f}" if value >= 0.1 or value == 0 else f"${value:.4f}"


def _row(g: Group) -> list[str]:
    j = g.to_json()
    return [
        g.name,
        _money(g.cost),
        f"{j['requests']:,}",
        _money(j["cost_per_1m_requests"]),
        f"{j['tokens']:,}" if j["tokens"] else "-",
        _money(j["cost_per_1m_tokens"]),
        _money(g.idle_cost),
        f"{g.idle_cost / g.cost:.0%}" if g.cost > 0 else "-",
    ]


def _table(rep: CostReport) -> Table:
    heads = ("cost", "requests", "$/1M req", "tokens", "$/1M tok", "idle", "idle %")
    table = Table(
        Column(rep.by, no_wrap=True),
        *(Column(h, justify="right", no_wrap=True) for h in heads),
        title=f"{iso(rep.start)} to {iso(rep.end)}, by {rep.by}",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for g in rep.groups:
        table.add_row(*_row(g))
    table.add_section()
    table.add_row(*_row(rep.total), style="bold")
    return table


@app.command("report")
@handle_errors
def report_cmd(
    ctx: typer.Context,
    since: Annotated[
        str, typer.Option("--since", help="The period up to now: 90m, 24h, 7d, 2w")
    ] = "24h",
    by: Annotated[str, typer.Option("--by", help="Group by pool, model or site")] = "pool",
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Cost, requests, tokens and idle cost of serving over the last --since."""
    try:
        since_s = parse_duration(since)
    except ValueError as exc:
        raise CliError(f"--since: {exc}") from None
    if by not in GROUPINGS:
        raise CliError(f"--by {by!r}: expected one of {', '.join(GROUPINGS)}")
    rep = report(get_ctx(ctx).store, since_s, time.time(), cast(GroupBy, by))
    if json_out:
        print_json({"since": since, **rep.to_json()})
        return
    console.print(_table(rep))
    for note in rep.notes:
        console.print(f"- {note}", highlight=False, soft_wrap=True)
