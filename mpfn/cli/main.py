"""The `mpfn` command: global `--state` handling and the top-level commands.

Sub-command groups live in their own modules (models, pools, policy, ...); this module
only wires them together and implements `init`, `schema` and `status`.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from mpfn.cli import build, deploy, keys, models, policy, pools, route, run, state, stats, warm
from mpfn.cli.common import (
    DEBUG_ENV,
    CliError,
    Ctx,
    console,
    get_ctx,
    handle_errors,
    print_json,
)
from mpfn.config import CONFIG_FILE
from mpfn.documents import SCHEMAS
from mpfn.registry import Registry

app = typer.Typer(
    name="mpfn",
    help="Serverless, hardware- and cloud-agnostic control plane for model inference.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(models.app, name="models")
app.add_typer(pools.app, name="pools")
app.add_typer(policy.app, name="policy")
app.add_typer(warm.app, name="warm")
app.add_typer(keys.app, name="keys")
app.add_typer(route.app, name="route")
app.add_typer(stats.app, name="stats")
app.add_typer(state.app, name="state")
app.command("up")(run.up)
app.command("invoke")(run.invoke)
app.command("build")(build.build)
deploy.register(app)


@app.callback()
def root(
    ctx: typer.Context,
    state: Annotated[
        str | None,
        typer.Option(
            "--state",
            help="State URL: a path, file://DIR, s3://BUCKET/PREFIX or gs://BUCKET/PREFIX "
            "(default: $MPFN_STATE, then mpfn.yaml, then ./.mpfn)",
        ),
    ] = None,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            help=f"On an error, print the full traceback with its causes (also ${DEBUG_ENV}=1)",
        ),
    ] = False,
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"  # also reaches the processes a command starts
    ctx.obj = Ctx(state_flag=state)


@app.command()
@handle_errors
def init(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="Project directory")] = Path("."),
    force: Annotated[bool, typer.Option(help="Overwrite existing files")] = False,
) -> None:
    """Scaffold mpfn.yaml and an example policy, and create the local state."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in (CONFIG_FILE, "policy.yaml"):
        target = directory / name
        if target.exists() and not force:
            console.print(f"kept existing {target}")
            continue
        target.write_text(resources.files("mpfn.templates").joinpath(name).read_text())
        written.append(str(target))
    c = get_ctx(ctx)
    if c.state_flag is None and c.config.source in ("default", "file"):
        c.state_flag = str(directory / ".mpfn")
    store = c.store
    for path in written:
        console.print(f"wrote {path}")
    console.print(f"state: {store.url}")


@app.command()
@handle_errors
def schema(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory for the .schema.json files")
    ] = Path("schemas"),
) -> None:
    """Write the JSON Schemas of every state document."""
    out.mkdir(parents=True, exist_ok=True)
    for name, model in SCHEMAS.items():
        path = out / f"{name}.schema.json"
        path.write_text(json.dumps(model.model_json_schema(), indent=2) + "\n")
        console.print(f"wrote {path}")


@app.command()
@handle_errors
def status(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Show where the state lives and what it holds."""
    c = get_ctx(ctx)
    reg = Registry(c.store)
    info = {
        "state": c.store.url,
        "state_source": c.config.source,
        "config_file": str(c.config.path) if c.config.path else None,
        "models": len(reg.models()),
        "pools": len(reg.pools()),
        "policies": len(reg.policies()),
    }
    if json_out:
        print_json(info)
        return
    for key, value in info.items():
        console.print(f"{key:>13}: {value}")


def main() -> None:
    try:
        app()
    except CliError as exc:  # pragma: no cover - handle_errors catches these first
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
