"""`mpfn pools add|list|rm|scale`: where backends run, and how many replicas they run.

`add` warns (and still adds the pool) when the router could not reach it: a pool of a
kind whose backend does not speak Open Inference Protocol v2 (`tfserving`, `torchserve`)
must be an adapter server in front of that backend (`--adapter-server`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import httpx
import typer
from rich.table import Table

from mpfn.cli.common import (
    CliError,
    as_json,
    console,
    err_console,
    get_ctx,
    handle_errors,
    print_json,
)
from mpfn.documents import Pool
from mpfn.registry import Registry
from mpfn.routing.compat import missing_adapter_server

if TYPE_CHECKING:
    from mpfn.scaling import ScalerClients

app = typer.Typer(
    help="Register the backend pools the router can send requests to.", no_args_is_help=True
)


def _given(**values: str | None) -> dict[str, str]:
    return {k: v for k, v in values.items() if v is not None}


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@app.command("add")
@handle_errors
def add(
    ctx: typer.Context,
    pool_id: Annotated[str, typer.Argument(help="Pool id", show_default=False)],
    endpoint: Annotated[str, typer.Option(help="Adapter endpoint URL")],
    cloud: Annotated[str, typer.Option(help="aws | gcp | azure | onprem | local")] = "local",
    region: Annotated[
        str, typer.Option(help="Region (policies and x-mpfn-region filter by it)")
    ] = "local",
    site: Annotated[
        str | None,
        typer.Option(help="Deployment site (aws-use1, onprem-a); routers prefer their own"),
    ] = None,
    adapter: Annotated[str, typer.Option(help="Adapter kind (ort, triton, openai, ...)")] = "ort",
    hardware: Annotated[str, typer.Option(help="Comma-separated hardware")] = "cpu",
    cost_per_hour: Annotated[float, typer.Option(help="USD per hour")] = 0.0,
    capacity: Annotated[int, typer.Option(help="Concurrent requests it serves")] = 1,
    memory_mb: Annotated[float, typer.Option(help="Model memory budget")] = 0.0,
    models: Annotated[str, typer.Option(help="Comma-separated models (empty: any)")] = "",
    adapter_server: Annotated[
        bool,
        typer.Option(help="The endpoint is an mpfn adapter server in front of the backend"),
    ] = False,
    auth: Annotated[
        str | None, typer.Option(help="bearer | header | sigv4 | google-id-token | mtls")
    ] = None,
    token: Annotated[
        str | None, typer.Option(help="The credential BY REFERENCE: env:, file:, aws-sm:, ...")
    ] = None,
    auth_header: Annotated[str | None, typer.Option(help="auth header: its name")] = None,
    admin_token: Annotated[
        str | None, typer.Option(help="Management API token (warmer), by reference")
    ] = None,
    sigv4_region: Annotated[str | None, typer.Option(help="auth sigv4: signing region")] = None,
    audience: Annotated[str | None, typer.Option(help="auth google-id-token: audience")] = None,
    tls_ca: Annotated[str | None, typer.Option(help="CA bundle to trust, by reference")] = None,
    tls_cert: Annotated[str | None, typer.Option(help="Client certificate, by reference")] = None,
    tls_key: Annotated[str | None, typer.Option(help="Client key, by reference")] = None,
    tls_server_name: Annotated[str | None, typer.Option(help="Name to verify")] = None,
) -> None:
    """Add or replace a pool. Credentials are given by reference, never by value."""
    secure: dict[str, object] = {}
    if auth is not None:
        secure["auth"] = _given(type=auth, token=token, header=auth_header,
                                admin_token=admin_token, region=sigv4_region,
                                audience=audience)  # fmt: skip
    tls = _given(ca=tls_ca, cert=tls_cert, key=tls_key, server_name=tls_server_name)
    if tls:
        secure["tls"] = tls
    pool = Pool.model_validate(
        {
            **secure,
            "id": pool_id,
            "endpoint": endpoint,
            "cloud": cloud,
            "region": region,
            "site": site,
            "adapter": adapter,
            "hardware": _csv(hardware),
            "cost_per_hour": cost_per_hour,
            "capacity": capacity,
            "memory_mb": memory_mb,
            "models": _csv(models),
            "adapter_server": adapter_server,
        }
    )
    Registry(get_ctx(ctx).store).put_pool(pool)
    console.print(f"pool [bold]{pool.id}[/] -> {pool.endpoint}")
    gap = missing_adapter_server(pool.adapter, pool.adapter_server)
    if gap is not None:
        err_console.print(
            f"[yellow]warning:[/] {gap}; the router will not send it requests "
            f"(run python -m mpfn.adapters.{pool.adapter} and pass --adapter-server)",
            highlight=False,
            soft_wrap=True,
        )


@app.command("list")
@handle_errors
def list_pools(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """List pools."""
    pools = Registry(get_ctx(ctx).store).pools()
    if json_out:
        print_json([as_json(p) for p in pools])
        return
    table = Table(
        "id", "cloud", "region", "site", "adapter", "endpoint", "hardware", "$/h", "models"
    )
    for p in pools:
        table.add_row(
            p.id,
            p.cloud,
            p.region,
            p.site or "-",
            p.adapter,
            str(p.endpoint),
            ",".join(p.hardware),
            f"{p.cost_per_hour:g}",
            ",".join(p.models) or "*",
        )
    console.print(table)


@app.command("rm")
@handle_errors
def remove(ctx: typer.Context, pool_id: Annotated[str, typer.Argument(help="Pool id")]) -> None:
    """Remove a pool."""
    Registry(get_ctx(ctx).store).remove_pool(pool_id)
    console.print(f"removed pool {pool_id}")


@app.command("scale")
@handle_errors
def scale(
    ctx: typer.Context,
    pool_id: Annotated[str, typer.Argument(help="Pool id", show_default=False)],
    replicas: Annotated[int, typer.Option("--replicas", help="Replicas to run (0: none)")],
    hold: Annotated[
        str,
        typer.Option(help="Keep this size from the warmer for this long (10m, 1h; 0: not)"),
    ] = "10m",
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Set a pool's replica count through its platform (ECS, Cloud Run, Kubernetes, or the
    local pools of `mpfn up`); routers wake a pool at zero when a request needs it."""
    import asyncio
    import time

    from mpfn.cost import parse_duration
    from mpfn.scaling import ScaleError, record_size, scaler_for

    c = get_ctx(ctx)
    pool = Registry(c.store).pool(pool_id)
    if pool.scaling is None:
        raise CliError(
            f"pool {pool_id} has no scaling settings: its size is fixed where it was deployed"
        )
    bounds = pool.scaling
    if not 0 <= replicas <= bounds.max_replicas:
        raise CliError(f"--replicas {replicas}: pool {pool_id} runs 0 to {bounds.max_replicas}")
    try:
        held_s = 0.0 if hold.strip() in ("0", "0s") else parse_duration(hold)
    except ValueError as exc:
        raise CliError(f"--hold: {exc}") from None

    async def run() -> int:
        async with httpx.AsyncClient(timeout=30.0) as http:
            scaler = scaler_for(pool, scaler_clients(c.config.state, http))
            before = await scaler.get()
            await scaler.set(replicas)
            return before

    try:
        before = asyncio.run(run())
    except ScaleError as exc:
        raise CliError(str(exc)) from None
    now = time.time()
    record_size(c.store, pool_id, replicas, now=now, reason="set by hand", by="cli",
                hold_until=now + held_s if held_s else None, previous=before)  # fmt: skip
    if json_out:
        print_json({"pool": pool_id, "from": before, "replicas": replicas, "hold_s": held_s})
        return
    note = f"; the warmer leaves it for {hold}" if held_s else ""
    console.print(f"pool {pool_id}: {before} -> {replicas} replicas{note}", highlight=False)
    if replicas < bounds.min_replicas:
        err_console.print(
            f"note: below min_replicas {bounds.min_replicas}: the warmer raises it again "
            + ("after the hold" if held_s else "at its next run"),
            highlight=False,
        )


def scaler_clients(state: str, http: httpx.AsyncClient) -> ScalerClients:
    """Scaler clients for the CLI: a local stack's control token is read from its state."""
    from pathlib import Path

    from mpfn.scaling import ScalerClients
    from mpfn.upcontrol import read_token

    clients = ScalerClients(http=http)
    if state.startswith("file://") and clients.local_token is None:
        clients.local_token = read_token(Path(state[len("file://") :]) / "tls")
    return clients
