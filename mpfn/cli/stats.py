"""`mpfn stats refresh|show`: the pool latency/health snapshots routers start from.

`refresh` probes every pool (health, loaded models, a few timed requests) and writes
`stats/<pool>.json`; `show` prints what is stored. The probing itself lives in
`mpfn.routing.probe`; this module only parses options and prints.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import typer
from rich.table import Table

from mpfn.cli.common import console, get_ctx, handle_errors, print_json
from mpfn.routing import PoolStatsDocument
from mpfn.state import parse_document

app = typer.Typer(
    help="Pool latency and health snapshots (stats/) that routers start from.",
    no_args_is_help=True,
)


def _table(docs: list[PoolStatsDocument], now: float) -> Table:
    table = Table("pool", "latency ms", "samples", "errors", "error rate", "loaded", "age s")
    for d in docs:
        table.add_row(
            d.pool,
            "-" if d.latency is None else f"{d.latency.ms:.2f}",
            "-" if d.latency is None else str(d.latency.samples),
            f"{d.errors}/{d.requests}",
            f"{d.error_rate:.2f}",
            "?" if d.loaded is None else ",".join(d.loaded) or "-",
            f"{max(0.0, now - d.written_at):.0f}",
        )
    return table


@app.command("refresh")
@handle_errors
def refresh(
    ctx: typer.Context,
    pool: Annotated[
        list[str] | None, typer.Option("--pool", help="Only this pool (repeatable)")
    ] = None,
    samples: Annotated[int, typer.Option(min=1, max=100, help="Timed requests per model")] = 3,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per request")] = 5.0,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Probe pools and write their stats/<pool>.json snapshots."""
    # imported here: the router pulls in its web stack, which other commands do not need
    from mpfn.routing.probe import refresh_stats
    from mpfn.routing.snapshot import SnapshotLoader

    store = get_ctx(ctx).store
    snapshot = SnapshotLoader(store).load()
    docs = asyncio.run(
        refresh_stats(store, snapshot, pools=pool or (), samples=samples, timeout_s=timeout)
    )
    if json_out:
        print_json([d.model_dump(mode="json") for d in docs])
        return
    console.print(_table(docs, time.time()))
    console.print(f"wrote {len(docs)} snapshot(s) under stats/")


@app.command("show")
@handle_errors
def show(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Print the stored snapshots."""
    store = get_ctx(ctx).store
    docs = []
    for key in store.list("stats/"):
        blob = store.get(key)
        if key.endswith(".json") and blob is not None:
            docs.append(parse_document(key, blob.body, PoolStatsDocument))
    if json_out:
        print_json([d.model_dump(mode="json") for d in docs])
        return
    console.print(_table(docs, time.time()))
