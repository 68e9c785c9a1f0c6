"""`mpfn route explain MODEL`: what the router would do with a request, and why.

Loads the registry and the `stats/` snapshots from the store, then runs the router's own
decision (`mpfn.routing.decide.explain_request`) with the given headers: candidates with
their expected latency (base, queue, load), cost, SLO verdict, error rate and weight;
excluded pools with the reason; the choice and the failover plan. Routing knobs come
from the same `MPFN_ROUTER_*` variables the router reads; `--site` explains the decision
of a router in that site. A live router also knows its own recent measurements, which
this command cannot see.
"""

from __future__ import annotations

import dataclasses
import random
import time
from typing import Annotated, Any, cast

import typer
from rich.table import Table

from mpfn.cli.common import CliError, console, get_ctx, handle_errors, print_json

app = typer.Typer(help="Inspect routing decisions.", no_args_is_help=True)


def parse_headers(items: list[str]) -> dict[str, str]:
    """`K=V` (or `K: V`) items -> lower-case header names."""
    headers: dict[str, str] = {}
    for item in items:
        sep = "=" if "=" in item else ":" if ":" in item else None
        if sep is None:
            raise CliError(f"--header {item!r}: expected NAME=VALUE")
        name, _, value = item.partition(sep)
        if not name.strip():
            raise CliError(f"--header {item!r}: empty header name")
        headers[name.strip().lower()] = value.strip()
    return headers


def _print(out: dict[str, Any]) -> None:
    slo = out["latency_slo_ms"]
    console.print(
        f"model [bold]{out['model']}[/]  strategy {out['strategy']}  objective {out['objective']}"
        f"  SLO {'-' if slo is None else f'{slo:g} ms'}  timeout {out['timeout_ms']:g} ms"
        f"  site {out['site'] or '-'}"
    )
    table = Table(
        "pool", "site", "expected ms", "base", "queue", "load", "$/1k", "SLO", "errors", "weight"
    )
    for c in out["candidates"]:
        table.add_row(
            c["pool"],
            c["site"] or "-",
            f"{c['expected_ms']:.2f}",
            f"{c['base_ms']:.2f}",
            f"{c['queue_ms']:.2f}",
            f"{c['load_ms']:.0f}",
            f"{c['cost_per_1k']:.4g}",
            "meets" if c["meets_slo"] else "misses",
            f"{c['error_rate']:.2f}",
            f"{c['weight']:.2f}",
        )
    console.print(table)
    if out["excluded"]:
        excluded = Table("excluded pool", "reason")
        for e in out["excluded"]:
            excluded.add_row(e["pool"], e["reason"])
        console.print(excluded)
    if out["skipped_models"]:
        console.print(f"fallback models without a candidate: {', '.join(out['skipped_models'])}")
    plan = " -> ".join(f"{a['pool']} ({a['model']})" for a in out["plan"]) or "none"
    console.print(f"choice: [bold]{out['choice'] or 'none'}[/]   plan: {plan}")
    console.print(f"x-mpfn-route-reason: {out['route_reason']}", highlight=False)


@app.command("explain")
@handle_errors
def explain(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name", show_default=False)],
    version: Annotated[str | None, typer.Option(help="Model version (default: as routed)")] = None,
    protocol: Annotated[str, typer.Option(help="v2 | openai")] = "v2",
    header: Annotated[
        list[str] | None,
        typer.Option("--header", "-H", help="Request header NAME=VALUE (repeatable)"),
    ] = None,
    site: Annotated[
        str | None,
        typer.Option(
            help="Explain as a router of this site would decide (default: MPFN_ROUTER_SITE)"
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Show candidates, exclusions with reasons, scores and the choice for MODEL."""
    # imported here: the router pulls in its web stack, which other commands do not need
    from mpfn.functions.router.settings import RouterSettings
    from mpfn.routing import RoutingState, Strategy, parse_hints
    from mpfn.routing.decide import RouteRequest, default_policy, explain_request
    from mpfn.routing.errors import RouteError
    from mpfn.routing.snapshot import SnapshotLoader
    from mpfn.routing.tuning import SITE_RULE, is_site_name

    if protocol not in ("v2", "openai"):
        raise CliError(f"--protocol must be v2 or openai, not {protocol!r}")
    if site is not None and not is_site_name(site):
        raise CliError(f"--site {site!r} is not a site name ({SITE_RULE})")
    settings = RouterSettings.from_env()
    if site is not None:
        settings = dataclasses.replace(settings, site=site)
    headers = parse_headers(header or [])
    hints = parse_hints(headers)
    loader = SnapshotLoader(get_ctx(ctx).store)
    snapshot = loader.load()
    state = RoutingState(settings.routing_config, settings.breaker_config)
    state.load(loader.load_stats())
    request = RouteRequest(
        "openai" if protocol == "openai" else "v2",
        model,
        version,
        hints,
        headers.get(settings.route_key_header),
    )
    try:
        out = explain_request(
            snapshot,
            state.feedback,
            request,
            now=time.time(),
            rng=random.Random(0 if settings.seed < 0 else settings.seed),
            fallback_policy=default_policy(settings.request_timeout_s),
            strategy=cast(Strategy, settings.strategy),
            cfg=settings.routing_config,
            breaker_cfg=settings.breaker_config,
        )
    except RouteError as exc:
        raise CliError(exc.message) from None
    if json_out:
        print_json(out)
        return
    _print(out)
