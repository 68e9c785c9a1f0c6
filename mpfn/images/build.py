"""`mpfn build`: base, layers, Containerfile, content tag, build, push, for each image.

An image's tag is `VERSION-DIGEST`, the digest covering its Containerfile, the base
image's ID and both layers' file hashes: when none of them changed the tagged image is
already there and the build is a no-op.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mpfn.images.base import ensure_base, plan_for
from mpfn.images.builder import Builder, registry_of
from mpfn.images.catalog import ImageSpec
from mpfn.images.containerfile import render
from mpfn.images.layers import Layer, build_wheel, ensure_app, ensure_deps
from mpfn.images.platforms import Platform


@dataclass(frozen=True)
class BuildOptions:
    source: Path
    cache_dir: Path
    platform: Platform
    tag: str | None = None
    push: str | None = None
    base: str | None = None
    refresh: bool = False


@dataclass(frozen=True)
class BuiltImage:
    target: str
    ref: str
    size_bytes: int
    seconds: float
    cached: bool
    pushed: str | None = None


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "mpfn" / "images"


def source_url(source: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(source), "config", "--get", "remote.origin.url"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or source.resolve().as_uri()


def wheel_version(wheel: Path) -> str:
    return wheel.name.split("-")[1]


def labels(spec: ImageSpec, version: str, source: str) -> dict[str, str]:
    return {
        "org.opencontainers.image.title": spec.name,
        "org.opencontainers.image.description": spec.description,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.source": source,
        "org.opencontainers.image.licenses": "Apache-2.0",
    }


def content_tag(version: str, containerfile: str, base_id: str, deps: Layer, app: Layer) -> str:
    h = hashlib.sha256()
    for part in (containerfile, base_id, deps.digest, app.digest):
        h.update(part.encode() + b"\0")
    return f"{version}-{h.hexdigest()[:12]}"


def _link_tree(src: Path, dst: Path) -> None:
    """Hard links where the file system allows them (fast, no copy), else copies."""
    try:
        shutil.copytree(src, dst, copy_function=os.link, symlinks=True)
    except OSError:
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst, symlinks=True)


def build_one(
    builder: Builder,
    spec: ImageSpec,
    base: str,
    wheel: Path,
    options: BuildOptions,
    echo: Callable[[str], None],
) -> BuiltImage:
    started = time.monotonic()
    deps = ensure_deps(spec, wheel, options.platform, options.cache_dir, options.refresh)
    app = ensure_app(wheel, options.cache_dir)
    version = wheel_version(wheel)
    text = render(spec, base, labels(spec, version, source_url(options.source)))
    tag = content_tag(version, text, builder.image_id(base), deps, app)
    ref = f"localhost/{spec.name}:{tag}"
    cached = builder.exists(ref) and not options.refresh
    if not cached:
        echo(f"building {spec.name} ...")
        contexts = options.cache_dir / "contexts"
        contexts.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=contexts) as tmp:
            context = Path(tmp)
            _link_tree(deps.path, context / "deps")
            _link_tree(app.path, context / "app")
            (context / "Containerfile").write_text(text)
            builder.build(context / "Containerfile", context, [ref], _platform_flag(options))
    if options.tag:
        builder.tag(ref, f"localhost/{spec.name}:{options.tag}")
    pushed = None
    if options.push:
        registry, plain = registry_of(options.push)
        pushed = f"{registry}/{spec.name}:{options.tag or ref.rsplit(':', 1)[1]}"
        builder.push(ref, pushed, plain)
    return BuiltImage(
        spec.target, ref, builder.size(ref), time.monotonic() - started, cached, pushed
    )


def _platform_flag(options: BuildOptions) -> str | None:
    from mpfn.images.platforms import host_platform

    return None if options.platform == host_platform() else options.platform.name


def build_images(
    builder: Builder,
    specs: Sequence[ImageSpec],
    options: BuildOptions,
    echo: Callable[[str], None] = print,
) -> list[BuiltImage]:
    """Build (or find) every image in `specs`; the base and the mpfn wheel are made once."""
    options.cache_dir.mkdir(parents=True, exist_ok=True)
    base = options.base or ensure_base(builder, plan_for(options.platform), options.cache_dir, echo)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = build_wheel(options.source, Path(tmp))
        return [build_one(builder, spec, base, wheel, options, echo) for spec in specs]
