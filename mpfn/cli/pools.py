"""`mpfn pools add|list|rm`: where backends run.

`add` warns (and still adds the pool) when the router could not reach it: a pool of a
kind whose backend does not speak Open Inference Protocol v2 (`tfserving`, `torchserve`)
must be an adapter server in front of that backend (`--adapter-server`).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from mpfn.cli.common import as_json, console, err_console, get_ctx, handle_errors, print_json
from mpfn.documents import Pool
from mpfn.registry import Registry
from mpfn.routing.compat import missing_adapter_server

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
