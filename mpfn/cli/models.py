"""`mpfn models push|register|pull|list|show|rm`: model versions and their OCI artifacts.

`push` stores a model file as an OCI artifact; `register` records a model that a server
already holds (an LLM behind an OpenAI-compatible pool), without a file. An artifact has
two digests: the manifest's (what `list` shows and the OCI reference pins) and the model
file's (what `pull` verifies and writes); both are printed by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, get_args

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from mpfn.cli.common import CliError, as_json, console, get_ctx, handle_errors, print_json
from mpfn.documents import ArtifactRef, ModelFormat, ModelVersion
from mpfn.modelinfo import onnx_signature, parse_tensor_arg
from mpfn.registry import Registry, parse_model_ref

app = typer.Typer(help="Push, pull and inspect model versions.", no_args_is_help=True)

FORMATS_BY_SUFFIX = {".onnx": "onnx", ".pt": "torchscript", ".gguf": "gguf", ".mar": "pytorch"}
FORMATS: tuple[str, ...] = get_args(ModelFormat)
#: Formats served by a server that holds the model itself: `register`, no file.
REGISTERED_FORMATS = ("openai",)

LabelOpt = Annotated[
    list[str] | None,
    typer.Option("--label", metavar="KEY=VALUE", help="A label (repeatable), e.g. team=search"),
]


def parse_labels(items: list[str] | None) -> dict[str, str]:
    """`k=v` strings -> a mapping; CliError naming the flag for anything else."""
    labels: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--label {item!r}: expected KEY=VALUE, e.g. served_model=llama-3")
        labels[key.strip()] = value.strip()
    return labels


def _format_for(file: Path, fmt: str | None) -> str:
    """The format given, else the one the file's suffix names; unknown suffixes are refused."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise CliError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
        return fmt
    found = FORMATS_BY_SUFFIX.get(file.suffix.lower())
    if found is None:
        raise CliError(
            f"{file}: not a model file mpfn recognises ({', '.join(FORMATS_BY_SUFFIX)}); "
            f"pass --format ({', '.join(FORMATS)}) to push it anyway"
        )
    return found


def _digests(ref: ArtifactRef) -> str:
    return f"manifest {ref.digest}, file {ref.blob_digest}"


@contextmanager
def transfer_progress(label: str, quiet: bool) -> Iterator[Callable[[int, int], None] | None]:
    if quiet:
        yield None
        return
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total or None)

        yield update


def _hardware(value: str) -> list[str]:
    return [h.strip() for h in value.split(",") if h.strip()]


@app.command("push")
@handle_errors
def push(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Model file to upload", show_default=False)],
    name: Annotated[str, typer.Option("--name", "-n", help="Model name")],
    version: Annotated[str, typer.Option("--version", "-v", help="Model version")],
    hardware: Annotated[str, typer.Option(help="Comma-separated: cpu,nvidia,amd,...")] = "cpu",
    registry: Annotated[
        str | None, typer.Option(help="OCI registry HOST[:PORT]/REPO (default: local layout)")
    ] = None,
    insecure: Annotated[bool, typer.Option(help="Plain-HTTP registry (loopback/dev only)")] = False,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Model format (default: from the file's suffix; other files need it)",
        ),
    ] = None,
    inputs: Annotated[
        list[str] | None, typer.Option("--input", help="NAME:DTYPE:DIMS (repeatable)")
    ] = None,
    outputs: Annotated[
        list[str] | None, typer.Option("--output", help="NAME:DTYPE:DIMS (repeatable)")
    ] = None,
    memory_mb: Annotated[float | None, typer.Option(help="Memory needed when loaded")] = None,
    labels: LabelOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the document as JSON")] = False,
) -> None:
    """Store FILE as an OCI artifact and register it as model NAME:VERSION."""
    from mpfn.artifacts import push_model

    c = get_ctx(ctx)
    if not file.is_file():
        raise CliError(f"{file}: no such file")
    reg = Registry(c.store)
    if version in reg.versions(name):
        raise CliError(f"model {name}:{version} already exists; versions are immutable")
    fmt = _format_for(file, fmt)
    label_map = parse_labels(labels)
    ins = [parse_tensor_arg(t) for t in inputs or []]
    outs = [parse_tensor_arg(t) for t in outputs or []]
    if fmt == "onnx" and not (ins and outs):
        found_in, found_out = onnx_signature(file)
        ins, outs = ins or found_in, outs or found_out
    with transfer_progress(f"push {file.name}", json_out) as progress:
        ref = push_model(
            c.store,
            file,
            name=name,
            version=version,
            fmt=fmt,
            registry=registry,
            insecure=insecure,
            progress=progress,
        )
    size_mb = file.stat().st_size / 2**20
    model = ModelVersion.model_validate(
        {
            "name": name,
            "version": version,
            "format": fmt,
            "artifact": ref.model_dump(),
            "inputs": [i.model_dump() for i in ins],
            "outputs": [o.model_dump() for o in outs],
            "hardware": _hardware(hardware),
            "memory_mb": memory_mb if memory_mb is not None else round(size_mb * 1.5 + 1, 3),
            "labels": label_map,
        }
    )
    reg.add_model(model)
    if json_out:
        print_json(as_json(model))
    else:
        console.print(
            f"pushed [bold]{name}:{version}[/] ({ref.size} bytes; {_digests(ref)})",
            highlight=False,
            soft_wrap=True,
        )


@app.command("register")
@handle_errors
def register(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name (what clients ask for)")],
    version: Annotated[str, typer.Option("--version", "-v", help="Model version")] = "1",
    fmt: Annotated[
        str, typer.Option("--format", help="Model format: openai (an OpenAI-compatible server)")
    ] = "openai",
    served_model: Annotated[
        str | None,
        typer.Option(
            "--served-model",
            help="The name the server knows the model by (default: NAME); sets the "
            "served_model label",
        ),
    ] = None,
    labels: LabelOpt = None,
    hardware: Annotated[str, typer.Option(help="Comma-separated: cpu,nvidia,amd,...")] = "cpu",
    json_out: Annotated[bool, typer.Option("--json", help="Print the document as JSON")] = False,
) -> None:
    """Register model NAME:VERSION that a server already holds, e.g. an LLM (no file).

    Serve it with a pool of that server: `pools add ID --adapter openai --models NAME`.
    """
    if fmt not in REGISTERED_FORMATS:
        raise CliError(
            f"--format {fmt!r}: register records models a server already holds "
            f"({', '.join(REGISTERED_FORMATS)}); store a model file with `models push FILE`"
        )
    label_map = parse_labels(labels)
    if served_model is not None:
        label_map["served_model"] = served_model
    reg = Registry(get_ctx(ctx).store)
    if version in reg.versions(name):
        raise CliError(f"model {name}:{version} already exists; versions are immutable")
    model = ModelVersion.model_validate(
        {
            "name": name,
            "version": version,
            "format": fmt,
            "hardware": _hardware(hardware),
            "labels": label_map,
        }
    )
    reg.add_model(model)
    if json_out:
        print_json(as_json(model))
        return
    served = label_map.get("served_model", name)
    console.print(f"registered [bold]{name}:{version}[/] ({fmt}; served as {served})")


@app.command("pull")
@handle_errors
def pull(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME[:VERSION] (default: latest version)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the model file")],
    insecure: Annotated[bool, typer.Option(help="Plain-HTTP registry (loopback/dev only)")] = False,
) -> None:
    """Fetch a model's artifact, verifying its digest."""
    from mpfn.artifacts import pull_model

    c = get_ctx(ctx)
    name, version = parse_model_ref(ref)
    model = Registry(c.store).model(name, version)
    if model.artifact is None:
        raise CliError(f"model {model.name}:{model.version} has no artifact")
    with transfer_progress(f"pull {model.name}:{model.version}", False) as progress:
        pull_model(c.store, model.artifact, out, progress=progress, insecure=insecure)
    console.print(
        f"pulled {model.name}:{model.version} -> {out} ({_digests(model.artifact)})",
        highlight=False,
        soft_wrap=True,
    )


@app.command("list")
@handle_errors
def list_models(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """List every registered model version."""
    models = Registry(get_ctx(ctx).store).models()
    if json_out:
        print_json([as_json(m) for m in models])
        return
    table = Table("name", "version", "format", "hardware", "size", "manifest digest")
    for m in models:
        art = m.artifact
        table.add_row(
            m.name,
            m.version,
            m.format,
            ",".join(m.hardware),
            str(art.size) if art else "-",
            art.digest[:19] if art else "-",
        )
    console.print(table)


@app.command("show")
@handle_errors
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME[:VERSION]")],
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Show one model version's document."""
    name, version = parse_model_ref(ref)
    model = Registry(get_ctx(ctx).store).model(name, version)
    if json_out:
        print_json(as_json(model))
    else:
        console.print_json(model.model_dump_json())


@app.command("rm")
@handle_errors
def remove(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME:VERSION")],
) -> None:
    """Remove a model version's document (its artifact blobs stay content-addressed)."""
    name, version = parse_model_ref(ref)
    if version is None:
        raise CliError("give the exact version to remove: NAME:VERSION")
    Registry(get_ctx(ctx).store).remove_model(name, version)
    console.print(f"removed {name}:{version}")
