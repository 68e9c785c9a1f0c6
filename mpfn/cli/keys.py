"""`mpfn keys create|list|revoke`: API keys for the router (stored hashed in the store)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from mpfn.auth import ApiKey, issue_key, keys_prefix
from mpfn.cli.common import CliError, console, get_ctx, handle_errors, print_json
from mpfn.store import KeyNotFound

app = typer.Typer(help="Create, list and revoke router API keys.", no_args_is_help=True)


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@app.command("create")
@handle_errors
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name for the key (who or what uses it)")],
    models: Annotated[str, typer.Option(help="Comma-separated models (empty: all)")] = "",
    pools: Annotated[str, typer.Option(help="Comma-separated pools (empty: all)")] = "",
    rate: Annotated[float, typer.Option(min=0, help="Requests per second (0: unlimited)")] = 0.0,
    burst: Annotated[int, typer.Option(min=0, help="Burst size (0: max(1, rate))")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Create a key. Its secret is printed once and stored only as a hash."""
    plaintext, doc = issue_key(
        name, models=_csv(models), pools=_csv(pools), rate_per_s=rate, burst=burst
    )
    get_ctx(ctx).docs.create(doc.key, doc)
    if json_out:
        print_json({"key": plaintext, **doc.model_dump(mode="json", exclude={"secret_sha256"})})
        return
    console.print(f"created key [bold]{doc.name}[/] ({doc.id}); it is shown only once:")
    print(plaintext)


@app.command("list")
@handle_errors
def list_keys(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """List keys (never their secrets)."""
    docs = get_ctx(ctx).docs.list(keys_prefix(), ApiKey)
    if json_out:
        print_json([d.model_dump(mode="json", exclude={"secret_sha256"}) for d in docs])
        return
    table = Table("id", "name", "models", "pools", "rate/s", "created", "revoked")
    for d in docs:
        table.add_row(
            d.id, d.name, ",".join(d.models) or "*", ",".join(d.pools) or "*",
            f"{d.rate_per_s:g}" if d.rate_per_s else "-", f"{d.created_at:%Y-%m-%d %H:%M}",
            f"{d.revoked_at:%Y-%m-%d %H:%M}" if d.revoked_at else "-",
        )  # fmt: skip
    console.print(table)


@app.command("revoke")
@handle_errors
def revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="Key id (from `mpfn keys list`)")],
) -> None:
    """Revoke a key; routers refuse it once they refresh their state."""
    docs = get_ctx(ctx).docs
    now = datetime.now(UTC)

    def mark(doc: ApiKey | None) -> ApiKey:
        assert doc is not None
        return doc if doc.revoked_at else doc.model_copy(update={"revoked_at": now})

    try:
        docs.update(f"{keys_prefix()}{key_id}.json", ApiKey, mark)
    except KeyNotFound:
        raise CliError(f"key {key_id!r} does not exist") from None
    console.print(f"revoked key {key_id}")
