"""`mpfn build`: OCI images of the router, warmer, worker and adapter servers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mpfn.cli.common import CliError, console, err_console, handle_errors, print_json


def default_source() -> Path | None:
    """The source tree this mpfn runs from, when it runs from one."""
    import mpfn

    root = Path(mpfn.__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "functions").is_dir() else None


@handle_errors
def build(
    targets: Annotated[
        list[str] | None,
        typer.Argument(
            help="router, warmer, worker, adapter:tfserving, adapter:torchserve, worker-cuda "
            "or all (default)",
            show_default=False,
        ),
    ] = None,
    tag: Annotated[str | None, typer.Option(help="Also tag each image NAME:TAG")] = None,
    push: Annotated[
        str | None,
        typer.Option(
            help="Push to this registry: HOST, HOST:PORT or HOST/PATH; http://... for plain HTTP"
        ),
    ] = None,
    platform: Annotated[
        str | None, typer.Option(help="linux/amd64 or linux/arm64 (default: this machine's)")
    ] = None,
    builder: Annotated[
        str | None, typer.Option(help="podman, buildah or docker (default: the first found)")
    ] = None,
    base: Annotated[
        str | None,
        typer.Option(help="Base image with Python 3.11 (default: Debian bookworm, built here)"),
    ] = None,
    source: Annotated[
        Path | None, typer.Option(help="mpfn source tree (default: the one mpfn runs from)")
    ] = None,
    refresh: Annotated[
        bool, typer.Option(help="Re-resolve packages and rebuild even when unchanged")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON")] = False,
) -> None:
    """Build OCI images with the builder this machine has (no daemon needed)."""
    from mpfn.images.build import BuildOptions, build_images, default_cache_dir
    from mpfn.images.builder import Builder, BuilderError, detect
    from mpfn.images.catalog import CUDA_WORKER, resolve
    from mpfn.images.platforms import parse_platform

    specs = resolve(targets or ["all"])
    if CUDA_WORKER in specs and base is None:
        raise CliError("worker-cuda needs --base: a CUDA runtime image with Python 3.11")
    tree = source or default_source()
    if tree is None or not (tree / "pyproject.toml").is_file():
        raise CliError("mpfn build needs mpfn's source tree: pass --source DIR")
    options = BuildOptions(
        source=tree,
        cache_dir=default_cache_dir(),
        platform=parse_platform(platform),
        tag=tag,
        push=push,
        base=base,
        refresh=refresh,
    )
    try:
        tool = Builder(detect(builder))
        progress = err_console if json_out else console  # --json keeps stdout JSON only
        built = build_images(tool, specs, options, echo=lambda s: progress.print(s))
    except BuilderError as exc:
        raise CliError(str(exc)) from exc
    if json_out:
        print_json([b.__dict__ for b in built])
        return
    for b in built:
        state = "unchanged" if b.cached else f"built in {b.seconds:.1f}s"
        pushed = f"  pushed {b.pushed}" if b.pushed else ""
        console.print(
            f"{b.target:20} {b.ref}  {b.size_bytes / 1e6:,.0f} MB  {state}{pushed}",
            highlight=False,
            soft_wrap=True,
        )
