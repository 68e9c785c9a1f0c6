"""`mpfn models push|pull|list|show|rm`: model versions and their OCI artifacts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from mpfn.cli.common import CliError, as_json, console, get_ctx, handle_errors, print_json
from mpfn.documents import ModelVersion
from mpfn.modelinfo import onnx_signature, parse_tensor_arg
from mpfn.registry import Registry, parse_model_ref

app = typer.Typer(help="Push, pull and inspect model versions.", no_args_is_help=True)

FORMATS_BY_SUFFIX = {".onnx": "onnx", ".pt": "torchscript", ".gguf": "gguf", ".mar": "pytorch"}


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
    fmt: Annotated[str | None, typer.Option("--format", help="Model format")] = None,
    inputs: Annotated[list[str] | None, typer.Option("--input", help="NAME:DTYPE:DIMS")] = None,
    outputs: Annotated[list[str] | None, typer.Option("--output", help="NAME:DTYPE:DIMS")] = None,
    memory_mb: Annotated[float | None, typer.Option(help="Memory needed when loaded")] = None,
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
    fmt = fmt or FORMATS_BY_SUFFIX.get(file.suffix.lower(), "other")
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
        }
    )
    reg.add_model(model)
    if json_out:
        print_json(as_json(model))
    else:
        console.print(f"pushed [bold]{name}:{version}[/] {ref.digest} ({ref.size} bytes)")


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
    console.print(f"pulled {model.name}:{model.version} -> {out} ({model.artifact.blob_digest})")


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
    table = Table("name", "version", "format", "hardware", "size", "digest")
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
