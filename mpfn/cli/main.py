"""The `mpfn` command: global options (`--state`, `--debug`, `--version`) and the
top-level commands.

Sub-command groups live in their own modules (models, pools, policy, ...); this module
only wires them together and implements `init`, `schema` and `status`. Global options
are accepted before or after the sub-command (`mpfn.cli.options`).
"""

from __future__ import annotations

import json
import os
import sys
from importlib import metadata, resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from mpfn.cli import (
    build,
    cost,
    deploy,
    keys,
    models,
    policy,
    pools,
    route,
    run,
    state,
    stats,
    warm,
)
from mpfn.cli.common import (
    CLICK_EXCEPTION,
    DEBUG_ENV,
    CliError,
    Ctx,
    console,
    debug_enabled,
    err_console,
    full_traceback,
    get_ctx,
    handle_errors,
    print_json,
    prog,
    unexpected,
)
from mpfn.cli.options import GlobalOptionsGroup, clean_help_metavars
from mpfn.config import CONFIG_FILE
from mpfn.documents import SCHEMAS
from mpfn.registry import Registry
from mpfn.store.local import LocalStore

clean_help_metavars()

app = typer.Typer(
    cls=GlobalOptionsGroup,
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
app.add_typer(cost.app, name="cost")
app.command("up")(run.up)
app.command("invoke")(run.invoke)
app.command("build")(build.build)
deploy.register(app)


def _version() -> str:
    try:
        return metadata.version("mpfn")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a bare tree
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        console.print(f"mpfn {_version()}", highlight=False)
        raise typer.Exit()


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
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print mpfn's version"
        ),
    ] = False,
) -> None:
    """Global options go before or after the command: `mpfn models list --state DIR`."""
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
    if isinstance(store, LocalStore):
        store.root.mkdir(parents=True, exist_ok=True)
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


# Click's exceptions, from whichever copy of Click this Typer uses.
UsageError: type[Any] = typer.BadParameter.__mro__[1]
ClickException: type[Any] = CLICK_EXCEPTION


def main() -> None:
    """The console script: every error is one line on stderr unless `--debug`."""
    if "--debug" in sys.argv[1:]:
        os.environ[DEBUG_ENV] = "1"  # also for errors raised before the callback runs
    try:
        result = app(standalone_mode=False)
    except UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help is already printed
            raise SystemExit(exc.exit_code) from None
        where = ""  # the subcommand, after the root's name (`python -m mpfn` is one)
        if exc.ctx is not None:
            where = exc.ctx.command_path[len(exc.ctx.find_root().command_path) :].strip()
        see = " ".join(filter(None, (prog(), where, "--help")))
        err_console.print(
            f"[bold red]error:[/] {escape(exc.format_message())} (see `{escape(see)}`)",
            highlight=False,
            soft_wrap=True,
        )
        raise SystemExit(exc.exit_code) from None
    except ClickException as exc:
        err_console.print(f"[bold red]error:[/] {escape(exc.format_message())}", soft_wrap=True)
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        raise SystemExit("error: aborted") from None
    except CliError as exc:  # pragma: no cover - handle_errors catches these first
        raise SystemExit(f"error: {exc}") from None
    except Exception as exc:  # anything a command did not turn into one line itself
        if debug_enabled():
            sys.stderr.write(full_traceback(exc))
        raise SystemExit(f"error: {unexpected(exc)}") from None
    raise SystemExit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
