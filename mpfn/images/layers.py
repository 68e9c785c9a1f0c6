"""The two Python layers of an image, installed on the host for the image's platform.

`app` is mpfn itself (its wheel, built from the source tree, unpacked); `deps` is every
third-party package the image needs, installed with pip `--target` from binary wheels for
the image's platform and Python, so nothing is compiled and nothing runs inside a build.
`deps` is cached by what decides it (requirements, mpfn's declared dependencies, platform,
Python); each layer's digest comes from the hashes pip records for every installed file,
so the same inputs give the same image tag however often they are rebuilt.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from mpfn.images.builder import BuilderError
from mpfn.images.catalog import ImageSpec
from mpfn.images.platforms import Platform

PYTHON = "3.11"  # the Python of the Debian base


@dataclass(frozen=True)
class Layer:
    path: Path
    digest: str


def _pip(args: list[str], what: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr or done.stdout).splitlines() if "WARNING" not in ln]
        raise BuilderError(f"{what} failed:\n" + "\n".join(lines[-15:]))


# Left out of the copy the wheel is built from: nothing of these goes into the wheel.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".mpfn", "tests"
)


def build_wheel(source: Path, out: Path) -> Path:
    """mpfn's wheel from the source tree at `source`, built from a copy in `out` so the
    tree itself gets no build directories."""
    out.mkdir(parents=True, exist_ok=True)
    tree = out / "src"
    shutil.rmtree(tree, ignore_errors=True)
    shutil.copytree(source, tree, ignore=_NOT_SOURCE)
    for old in out.glob("mpfn-*.whl"):
        old.unlink()
    args = ["wheel", "-q", "--no-deps", "-w", str(out), str(tree)]
    try:
        _pip([*args[:2], "--no-build-isolation", *args[2:]], "building the mpfn wheel")
    except BuilderError:
        _pip(args, "building the mpfn wheel")
    wheels = sorted(out.glob("mpfn-*.whl"))
    if not wheels:
        raise BuilderError(f"no mpfn wheel was built from {source}")
    return wheels[-1]


def _requires(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode()
    return [ln for ln in text.splitlines() if ln.startswith("Requires-Dist:")]


def records_digest(root: Path) -> str:
    """sha256 over the RECORD of every distribution installed under `root`."""
    h = hashlib.sha256()
    for record in sorted(root.glob("*.dist-info/RECORD")):
        h.update(record.parent.name.encode() + b"\0" + record.read_bytes())
    return h.hexdigest()


def deps_key(spec: ImageSpec, wheel: Path, platform: Platform) -> str:
    text = "\n".join(
        [platform.name, PYTHON, *spec.extras, "--", *spec.requirements, "--", *_requires(wheel)]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure_deps(
    spec: ImageSpec, wheel: Path, platform: Platform, cache_dir: Path, refresh: bool = False
) -> Layer:
    """The third-party layer of `spec`, from the cache unless `refresh`."""
    target = cache_dir / "deps" / deps_key(spec, wheel, platform)
    if refresh and target.exists():
        shutil.rmtree(target)
    if not target.exists():
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        extras = f"[{','.join(spec.extras)}]" if spec.extras else ""
        args = ["install", "-q", "--target", str(partial), "--only-binary=:all:"]
        args += ["--python-version", PYTHON, "--implementation", "cp", "--abi", "cp311"]
        for tag in platform.wheel_tags:
            args += ["--platform", tag]
        _pip([*args, f"{wheel}{extras}", *spec.requirements], f"installing {spec.name}'s packages")
        for path in [*partial.glob("mpfn"), *partial.glob("mpfn-*.dist-info"), partial / "bin"]:
            shutil.rmtree(path, ignore_errors=True)
        partial.rename(target)
    return Layer(target, records_digest(target))


def ensure_app(wheel: Path, cache_dir: Path) -> Layer:
    """mpfn's own layer: its wheel unpacked, named by the wheel's content."""
    h = hashlib.sha256()
    with zipfile.ZipFile(wheel) as zf:
        for name in sorted(zf.namelist()):
            if name.endswith(".dist-info/RECORD"):
                continue
            h.update(name.encode() + b"\0" + zf.read(name))
        digest = h.hexdigest()
        target = cache_dir / "app" / digest[:16]
        if not target.exists():
            partial = target.with_name(target.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            zf.extractall(partial)
            partial.rename(target)
    return Layer(target, digest)
