"""`mpfn state sites|add-site|remove-site|sync`: the sites a replicated state reaches.

The primary (the state the CLI opens) lists each site's replica; every write the CLI or
the warmer makes is copied to them, and `sync` catches up a replica that was away and
gathers its usage. This module only parses options and prints; the protocol is
`mpfn.replication`.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from mpfn.cli.common import console, fail, get_ctx, handle_errors, print_json
from mpfn.replication import Site, Sites, SyncReport, read_sites, sync_sites, write_sites
from mpfn.replication.fanout import ReplicatedStore, behind_sites
from mpfn.routing.tuning import SITE_RULE, is_site_name
from mpfn.store import Store

app = typer.Typer(
    help="Replicated state: the sites' replicas and catching them up.", no_args_is_help=True
)


def _primary(store: Store) -> Store:
    return store.primary if isinstance(store, ReplicatedStore) else store


def _sites(primary: Store) -> Sites:
    return read_sites(primary) or Sites()


@app.command("sites")
@handle_errors
def sites_command(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """List the sites and whether each replica is behind."""
    primary = _primary(get_ctx(ctx).store)
    sites = _sites(primary)
    behind = behind_sites(primary)
    names = sites.names()
    if as_json:
        rows = [{"site": n, "state": sites.sites[n].state, "behind": n in behind} for n in names]
        print_json({"primary": primary.url, "sites": rows})
        return
    table = Table("site", "replica", "behind")
    for n in names:
        table.add_row(n, sites.sites[n].state, "yes: run mpfn state sync" if n in behind else "")
    console.print(f"primary: {primary.url}")
    console.print(table)


@app.command("add-site")
@handle_errors
def add_site(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Site name (lowercase, digits, '-')")],
    state: Annotated[str, typer.Option(help="The site's replica: a state URL")],
    s3_endpoint: Annotated[
        str | None, typer.Option(help="S3 endpoint of the replica (not AWS)")
    ] = None,
    sync: Annotated[bool, typer.Option(help="Copy the state to it now")] = True,
) -> None:
    """Add (or change) a site; its replica is filled from the primary."""
    if not is_site_name(name):
        fail(f"site name {name!r}: use {SITE_RULE} (e.g. aws-use1, onprem-a)")
    primary = _primary(get_ctx(ctx).store)
    options = {"s3": {"endpoint_url": s3_endpoint}} if s3_endpoint else {}
    sites = _sites(primary)
    updated = Sites(sites={**sites.sites, name: Site(state=state, options=options)})
    write_sites(primary, updated)
    console.print(f"site {name}: {state}")
    if sync:
        _report(sync_sites(primary, updated, get_ctx(ctx).config.options, only=[name]), False)


@app.command("remove-site")
@handle_errors
def remove_site(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Stop replicating to a site (its replica is left as it is)."""
    primary = _primary(get_ctx(ctx).store)
    sites = _sites(primary)
    if name not in sites.sites:
        fail(f"no site {name!r}; sites: {', '.join(sites.names()) or 'none'}")
    write_sites(primary, Sites(sites={k: v for k, v in sites.sites.items() if k != name}))
    console.print(f"site {name} removed")


@app.command("sync")
@handle_errors
def sync_command(
    ctx: typer.Context,
    site: Annotated[list[str] | None, typer.Option(help="Only this site (repeatable)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Catch every site's replica up with the primary and gather the usage it holds."""
    primary = _primary(get_ctx(ctx).store)
    sites = _sites(primary)
    if not sites.sites:
        fail(f"{primary.url} lists no sites: add one with `mpfn state add-site NAME --state URL`")
    try:
        reports = sync_sites(primary, sites, get_ctx(ctx).config.options, only=site)
    except ValueError as exc:
        fail(str(exc))
    _report(reports, as_json)
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


def _report(reports: list[SyncReport], as_json: bool) -> None:
    if as_json:
        print_json([r.as_dict() for r in reports])
        return
    for r in reports:
        if r.ok:
            console.print(
                f"{r.site}: {r.copied} copied, {r.deleted} deleted, {r.same} unchanged, "
                f"{r.usage_gathered} usage documents gathered ({r.seconds:.2f} s)"
            )
        else:
            console.print(f"{r.site}: failed: {r.error}")
