"""`mpfn policy set|show`: routing policies (per model, or `default`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
import yaml

from mpfn.cli.common import CliError, as_json, console, get_ctx, handle_errors, print_json
from mpfn.documents import Policy
from mpfn.registry import Registry

app = typer.Typer(help="Set and inspect routing policies.", no_args_is_help=True)


def read_policy_file(path: Path) -> Policy:
    try:
        text = path.read_text()
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise CliError(f"{path}: not valid JSON/YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise CliError(f"{path}: expected a mapping")
    return Policy.model_validate(data)


@app.command("set")
@handle_errors
def set_policy(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Policy file (YAML or JSON)")],
) -> None:
    """Validate FILE and store it as the policy it names."""
    policy = read_policy_file(file)
    Registry(get_ctx(ctx).store).put_policy(policy)
    console.print(f"policy [bold]{policy.name}[/] set")


@app.command("show")
@handle_errors
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Policy name")] = "default",
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Show a policy."""
    policy = Registry(get_ctx(ctx).store).policy(name)
    if json_out:
        print_json(as_json(policy))
    else:
        console.print(yaml.safe_dump(as_json(policy), sort_keys=False).rstrip())


@app.command("list")
@handle_errors
def list_policies(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """List policies."""
    policies = Registry(get_ctx(ctx).store).policies()
    if json_out:
        print_json([as_json(p) for p in policies])
    else:
        for p in policies:
            console.print(f"{p.name}: objective={p.objective} slo={p.latency_slo_ms}ms")
