"""`mpfn warm`: run the warmer, show its plan, draw its forecasts, simulate warm policies.

`run` applies one warmer pass and writes `plans/warm.json`; `plan` shows what a pass would
do without changing anything; `report` draws forecast vs actual per model; `simulate`
replays a real trace through warm policies and scores them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mpfn.cli.common import (
    CliError,
    console,
    err_console,
    get_ctx,
    handle_errors,
    print_json,
    prog,
)
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
    holdout_days: Annotated[
        float,
        typer.Option(help="Score only the last N days (all of a shorter trace, with a note)"),
    ] = 7.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    plot: Annotated[Path | None, typer.Option(help="Write the Pareto chart (PNG)")] = None,
    no_prophet: Annotated[
        bool, typer.Option("--no-prophet", help="Use the profile estimator instead of Prophet")
    ] = False,
) -> None:
    """Replay TRACE through each POLICY; one JSON object per policy (a list if several)."""
    from mpfn.simulator import load_trace, parse_policy, replay
    from mpfn.simulator.engine import DAY

    if holdout_days <= 0:
        raise CliError("--holdout-days must be > 0")
    requests = load_trace(trace)
    if not requests:
        raise CliError(f"{trace}: no requests")
    span = requests[-1].time - requests[0].time
    scored = f"last {holdout_days:g} days"
    if holdout_days * DAY >= span:
        scored = f"all {describe_span(span)}"
        err_console.print(
            f"note: the trace spans {describe_span(span)}, no more than --holdout-days "
            f"{holdout_days:g}: every request is scored and no history precedes the "
            "scored window",
            highlight=False,
            soft_wrap=True,
        )
    policies = [parse_policy(p, use_prophet=not no_prophet) for p in policy]
    results = []
    for p in policies:
        report = ProgressReport(p.name, len(requests))
        results.append(replay(requests, p, holdout_days, progress=report))
        report.finish()
    if plot is not None:
        from mpfn.simulator.pareto import plot_pareto

        plot_pareto(results, plot, title=f"{trace.name}, {scored} scored")
        if not json_out:
            console.print(f"wrote {plot}", highlight=False)
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


def describe_span(seconds: float) -> str:
    """`45 min`, `5.0 h`, `3.2 days`: a trace's length for a person."""
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


class ProgressReport:
    """Progress of one long replay on stderr: quiet for the first seconds, then a line
    every `every_s` seconds, and how long it took."""

    def __init__(self, policy: str, total: int, *, after_s: float = 3.0, every_s: float = 10.0):
        self.policy, self.total = policy, total
        self.after_s, self.every_s = after_s, every_s
        self.started = time.monotonic()
        self.next_at = self.started + after_s
        self.spoke = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now < self.next_at:
            return
        self.next_at = now + self.every_s
        self.spoke = True
        err_console.print(
            f"simulate {self.policy}: {100 * done / max(total, 1):.0f} % of {total:,} "
            f"requests replayed ({now - self.started:.0f} s)",
            highlight=False,
            soft_wrap=True,
        )

    def finish(self) -> None:
        elapsed = time.monotonic() - self.started
        if self.spoke or elapsed >= self.after_s:
            err_console.print(
                f"simulate {self.policy}: done in {elapsed:.1f} s", highlight=False, soft_wrap=True
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
            raise CliError(f"no warm plan yet ({PLAN_KEY}); run `{prog()} warm run`")
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
    """Draw forecast vs actual requests per hour, one PNG per model (models without
    usage or a forecast are skipped, with a note)."""

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
    drawn, empty = 0, []
    for name in names:
        history = reader.history(name, now, days=days)
        forecast = read_report(c.docs, name)
        if not history.counts.any() and (forecast is None or not forecast.points):
            empty.append(name)
            continue
        path = plot_report(name, forecast, history.start, history.counts, now, out / f"{name}.png")
        console.print(str(path), highlight=False)
        drawn += 1
    if drawn and empty:
        err_console.print(
            f"not drawn (no requests in the last {days:g} days, no forecast yet): "
            + ", ".join(empty),
            highlight=False,
            soft_wrap=True,
        )
    if not drawn:
        raise CliError(
            f"no usage or forecasts to draw in the last {days:g} days: routers record usage "
            f"as requests arrive (try `{prog()} invoke ...`), and `{prog()} warm run` writes "
            "forecasts"
        )


@app.command("replay")
@handle_errors
def replay_cmd(
    ctx: typer.Context,
    trace: Annotated[Path, typer.Option("--trace", help="Trace CSV (as for `warm simulate`)")],
    speedup: Annotated[float, typer.Option(help="Time compression: trace seconds per second")],
    router: Annotated[
        str | None,
        typer.Option(
            help="Router URL (default: $MPFN_ROUTER, else the running `mpfn up`, else the "
            "first router the state records)"
        ),
    ] = None,
    policy: Annotated[
        str,
        typer.Option(
            help="Warm settings during the replay: current | none | keepalive:SECONDS | "
            "forecast[:budget=HOURS] | warmer:KEY=VALUE,..."
        ),
    ] = "current",
    scale_to_zero: Annotated[
        bool | None,
        typer.Option(
            "--scale-to-zero/--no-scale-to-zero",
            help="Pools with scaling at min 0 (or at least 1) during the replay; "
            "default: as they are",
            show_default=False,
        ),
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(help="Registered models to replay onto, comma-separated (default: all)"),
    ] = None,
    max_requests: Annotated[int, typer.Option(min=1, help="Send at most this many")] = 2000,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight at most")] = 32,
    max_seconds: Annotated[float, typer.Option(help="Wall-clock cap of the replay")] = 120.0,
    start_at: Annotated[
        float, typer.Option(help="Start this many trace seconds after its first request")
    ] = 0.0,
    api_key: Annotated[
        str | None,
        typer.Option(help="mpfn API key (default: $MPFN_API_KEY)", show_default=False),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Drive a running stack with TRACE's arrivals, time-compressed by SPEEDUP, and report
    as `warm simulate` does: cold starts, latency, errors, replica-hours and cost.
    Ctrl-C stops early and still reports; settings changed for the replay are restored."""
    import os

    from mpfn.up import read_router_url
    from mpfn.warm.replay_run import ReplayError, ReplayOptions, run_replay

    if speedup <= 0 or max_seconds <= 0:
        raise CliError("--speedup and --max-seconds must be > 0")
    c = get_ctx(ctx)
    url = router or os.environ.get("MPFN_ROUTER")
    notes: list[str] = []
    if not url and c.config.state.startswith("file://"):
        url = read_router_url(Path(c.config.state[len("file://") :]))
        if url and policy != "current":
            notes.append(
                "under `mpfn up` the warm loop runs every 30 s and its --keep-alive "
                "overrides the policy's keep_alive_s"
            )
    if not url:
        from mpfn.entrypoints import read_routers

        try:
            entries = read_routers(c.store)
        except Exception:
            entries = []
        url = str(entries[0].url) if entries else None
    if not url:
        raise CliError(f"no router: start `{prog()} up`, pass its --state DIR, or --router URL")
    options = ReplayOptions(
        trace=trace,
        router=url.rstrip("/"),
        speedup=speedup,
        policy=policy,
        scale_to_zero=scale_to_zero,
        models=tuple(m.strip() for m in (models or "").split(",") if m.strip()),
        max_requests=max_requests,
        concurrency=concurrency,
        max_seconds=max_seconds,
        start_at=start_at,
        api_key=api_key or os.environ.get("MPFN_API_KEY") or None,
        notes=tuple(notes),
    )
    started = time.monotonic()
    next_note = [started + 10.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now >= next_note[0]:
            next_note[0] = now + 10.0
            err_console.print(
                f"replay: {done:,} of {total:,} requests done ({now - started:.0f} s)",
                highlight=False,
            )

    try:
        result = run_replay(c.store, options, progress=progress)
    except ReplayError as exc:
        raise CliError(str(exc)) from None
    data = result.as_dict()
    if json_out:
        print_json(data)
        return
    lat = data["latency_ms"]
    console.print(
        f"{data['policy']:<20} sent={data['requests']} answered={data['answered']} "
        f"cold={data['cold_starts']} shed={data['shed']} errors={sum(data['errors'].values())} "
        f"p50={lat.get('p50')} p99={lat.get('p99')} ms replica_hours={data['replica_hours']} "
        f"cost={data['cost']} ({data['stopped']})",
        highlight=False,
        soft_wrap=True,
    )
