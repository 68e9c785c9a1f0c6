"""The router's Lambda package: a small, reproducible zip built from the installed project.

Contents: the mpfn modules the Lambda handler imports (found by scanning imports from
`mpfn.functions.router.lambda_handler`, so it follows the code as it changes) and the
installed distributions it needs (the requirement closure of mangum, fastapi,
pydantic, PyYAML, orjson, prometheus-client and opentelemetry-api, minus what the Lambda
Python runtime already provides: boto3 and its dependencies). Only `.py` sources,
extension modules and the metadata files imports read go in; no caches, stubs, tests or
scripts. Entries are sorted with fixed timestamps, so
the same inputs give the same bytes and the same `CodeSha256`: redeploying unchanged
code is a no-op.

The function's architecture (`x86_64` or `arm64`) decides where binary code comes from:
built on Linux on that architecture, everything is copied from this environment; anywhere
else (macOS, Windows, the other architecture), distributions with extension modules come
from their manylinux wheels for the target, fetched once with `pip download` into
`<out_dir>/wheels/` (`mpfn.deploy.wheels`). The Lambda runtime is this interpreter's
Python version either way.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import io
import platform
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from importlib.machinery import ModuleSpec
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from mpfn.deploy import wheels
from mpfn.deploy.errors import DeployFailure
from mpfn.extras import install_hint

HANDLER = "mpfn.functions.router.lambda_handler.handler"
ROOT_MODULES = ("mpfn.functions.router.lambda_handler", "mpfn.store.s3")
ROOT_DISTRIBUTIONS = (
    "mangum",
    "fastapi",
    "pydantic",
    "PyYAML",
    "orjson",
    "prometheus-client",
    "opentelemetry-api",
)
# Shipped with the Lambda Python runtime: never packaged.
RUNTIME_PROVIDED = frozenset(
    canonicalize_name(n)
    for n in ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3")
)
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_SKIP_PARTS = frozenset({"__pycache__", "tests", "test", "testing"})
_KEEP_METADATA = ("METADATA", "entry_points.txt", "top_level.txt")


class PackagingError(DeployFailure, RuntimeError):
    """The router package cannot be built from this environment."""


@dataclass(frozen=True)
class RouterPackage:
    path: Path
    code_sha256: str  # base64 SHA-256, as Lambda reports `CodeSha256`
    size: int
    files: int
    distributions: tuple[str, ...]
    runtime: str  # e.g. python3.11
    architecture: str = "x86_64"  # Lambda's name: x86_64 or arm64

    def describe(self) -> str:
        return (
            f"router package {self.path.name}: {self.size / 1e6:.1f} MB, {self.files} files, "
            f"{len(self.distributions)} distributions, {self.runtime} {self.architecture}"
        )


def _find_spec(name: str, cache: dict[str, ModuleSpec | None]) -> ModuleSpec | None:
    """Locate a module the way `import` would, without executing any package."""
    if name in cache:
        return cache[name]
    parent = name.rpartition(".")[0]
    path: list[str] | None = None
    spec: ModuleSpec | None = None
    if parent:
        parent_spec = _find_spec(parent, cache)
        locations = parent_spec.submodule_search_locations if parent_spec else None
        path = list(locations) if locations is not None else None
    if not parent or path is not None:
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            try:
                spec = find(name, path)
            except (ImportError, ValueError):
                spec = None
            if spec is not None:
                break
    cache[name] = spec
    return spec


def _module_file(name: str, cache: dict[str, ModuleSpec | None]) -> Path | None:
    spec = _find_spec(name, cache)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _imports_of(name: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m == "mpfn" or m.startswith("mpfn.")}


def module_closure(roots: Iterable[str] = ROOT_MODULES) -> dict[str, Path]:
    """Every mpfn module (and parent package) reachable by imports from `roots`."""
    todo = list(roots)
    found: dict[str, Path] = {}
    cache: dict[str, ModuleSpec | None] = {}
    while todo:
        name = todo.pop()
        if name in found:
            continue
        path = _module_file(name, cache)
        if path is None:
            continue  # `from pkg import name` where name is not a module
        found[name] = path
        parent = name.rpartition(".")[0]
        if parent:
            todo.append(parent)
        todo.extend(_imports_of(name, path))
    return found


def target_environment(architecture: str) -> dict[str, str]:
    """Marker environment of the Lambda runtime: Linux on `architecture`, this Python."""
    env = {k: str(v) for k, v in default_environment().items()}
    return env | {
        "extra": "",
        "os_name": "posix",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": wheels.MACHINES[architecture],
    }


def distribution_closure(
    roots: Iterable[str] = ROOT_DISTRIBUTIONS, architecture: str = "x86_64"
) -> list[metadata.Distribution]:
    """Installed distributions the roots need on the target (no extras)."""
    env = target_environment(architecture)
    todo = [canonicalize_name(r) for r in roots]
    seen: dict[str, metadata.Distribution] = {}
    while todo:
        name = todo.pop()
        if name in seen or name in RUNTIME_PROVIDED:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise PackagingError(
                f"the router package needs {name!r}, which is not installed here: "
                + install_hint("aws")
            ) from None
        seen[name] = dist
        for line in dist.requires or ():
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate(env):
                todo.append(canonicalize_name(req.name))
    return [seen[n] for n in sorted(seen)]


def _archive_name(parts: tuple[str, ...]) -> str | None:
    """Where an installed or wheel file goes in the package; None to leave it out."""
    if parts and parts[0].endswith(".data"):  # a wheel's purelib/platlib data directories
        if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
            return None
        parts = parts[2:]
    if not parts or parts[0] in ("..", "bin") or _SKIP_PARTS.intersection(parts):
        return None
    if parts[0].endswith(".dist-info"):
        return "/".join(parts) if len(parts) == 2 and parts[1] in _KEEP_METADATA else None
    if parts[-1].endswith((".py", ".so")) or parts[-1] == "py.typed":
        return "/".join(parts)
    return None


def _dist_files(dist: metadata.Distribution) -> Iterable[tuple[str, Path]]:
    for entry in dist.files or ():
        arcname = _archive_name(entry.parts)
        if arcname is not None:
            yield arcname, Path(str(dist.locate_file(entry)))


def _wheel_entries(path: Path) -> Iterable[tuple[str, bytes]]:
    for name, data in wheels.wheel_files(path).items():
        arcname = _archive_name(tuple(name.split("/")))
        if arcname is not None:
            yield arcname, data


def is_native(architecture: str) -> bool:
    """Whether this machine is Linux on `architecture` (binary code can be copied)."""
    machine = platform.machine().lower()
    names = {architecture, wheels.MACHINES[architecture]} | (
        {"amd64"} if architecture == "x86_64" else set()
    )
    return sys.platform.startswith("linux") and machine in names


def has_binary_code(dist: metadata.Distribution) -> bool:
    wheel = dist.read_text("WHEEL") or ""
    return "Root-Is-Purelib: false" in wheel or any(
        str(f).endswith((".so", ".pyd", ".dylib")) for f in dist.files or ()
    )


Entries = dict[str, Path | bytes]


def package_entries(
    architecture: str,
    wheel_cache: Path,
    run: wheels.Runner | None = None,
    wheels_only: bool = False,
) -> tuple[Entries, list[str]]:
    """Archive name -> source file (or bytes, from a target wheel in `wheel_cache`) for the
    whole package, and the distribution names."""
    entries: Entries = {}
    for name, path in module_closure().items():
        arcname = name.replace(".", "/") + ("/__init__.py" if path.name == "__init__.py" else ".py")
        entries[arcname] = path
    dists = distribution_closure(architecture=architecture)
    native = is_native(architecture) and not wheels_only
    python = (sys.version_info.major, sys.version_info.minor)
    for dist in dists:
        if native or not has_binary_code(dist):
            for arcname, path in _dist_files(dist):
                entries.setdefault(arcname, path)
            continue
        found = wheels.fetch(
            dist.metadata["Name"], dist.version, architecture, python, wheel_cache, run=run
        )
        for arcname, data in _wheel_entries(found):
            entries.setdefault(arcname, data)
    return entries, [f"{dist.metadata['Name']}=={dist.version}" for dist in dists]


def lambda_runtime() -> str:
    return f"python{sys.version_info.major}.{sys.version_info.minor}"


def zip_bytes(entries: Entries) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for arcname in sorted(entries):
            info = zipfile.ZipInfo(arcname, FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            source = entries[arcname]
            zf.writestr(info, source.read_bytes() if isinstance(source, Path) else source)
    return buf.getvalue()


def build(
    out_dir: Path,
    architecture: str = "x86_64",
    *,
    wheels_only: bool = False,
    run: wheels.Runner | None = None,
) -> RouterPackage:
    """Build (or reuse the identical) router zip for `architecture` in `out_dir`.

    `wheels_only` takes binary distributions from their target wheels even on a matching
    machine: the package then does not depend on how this environment was installed."""
    if architecture not in wheels.MACHINES:
        raise PackagingError(
            f"unknown architecture {architecture!r} (expected one of {sorted(wheels.MACHINES)})"
        )
    try:
        entries, dists = package_entries(architecture, out_dir / "wheels", run, wheels_only)
    except wheels.WheelError as exc:
        raise PackagingError(f"router package: {exc}") from exc
    data = zip_bytes(entries)
    digest = hashlib.sha256(data).digest()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "router.zip"
    if not path.exists() or path.read_bytes() != data:
        tmp = path.with_suffix(".zip.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return RouterPackage(
        path=path,
        code_sha256=base64.b64encode(digest).decode(),
        size=len(data),
        files=len(entries),
        distributions=tuple(dists),
        runtime=lambda_runtime(),
        architecture=architecture,
    )
