"""Binary wheels for another platform: what the router package bundles when it is built on a
machine that is not the Lambda it targets (macOS, Windows, or x86_64 for arm64).

A distribution with extension modules cannot be copied from this environment then; its
wheel for the target (`manylinux` for the function's architecture and Python version, the
same version as installed here) is fetched with `pip download` into a cache directory and
read from there. A wheel already in the cache is used as is, so a rebuild downloads
nothing and gives the same bytes.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from mpfn.deploy.errors import DeployFailure

# Lambda's architecture name -> the machine name in wheel tags and `platform.machine()`
MACHINES = {"x86_64": "x86_64", "arm64": "aarch64"}
# glibc of the Lambda Python runtimes: Amazon Linux 2 up to 3.11, Amazon Linux 2023 after
_GLIBC_MINOR = {(3, 9): 26, (3, 10): 26, (3, 11): 26}
_AL2023_GLIBC_MINOR = 34


class WheelError(DeployFailure, RuntimeError):
    """A wheel for the target platform could not be fetched or read."""


def platforms(architecture: str, python: tuple[int, int]) -> list[str]:
    """The manylinux platform tags the Lambda runtime for `python` on `architecture` runs."""
    machine = MACHINES[architecture]
    top = _GLIBC_MINOR.get(python, _AL2023_GLIBC_MINOR)
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(top, 16, -1)]
    tags.append(f"manylinux2014_{machine}")
    if machine == "x86_64":
        tags += ["manylinux2010_x86_64", "manylinux1_x86_64"]
    return tags


def compatible_tags(platform_tags: Iterable[str], python: tuple[int, int]) -> set[Tag]:
    cp = f"cp{python[0]}{python[1]}"
    out = {Tag(cp, abi, p) for p in platform_tags for abi in (cp, "abi3", "none")}
    out |= {Tag(f"py{python[0]}", "none", p) for p in platform_tags}
    return out


def find_cached(directory: Path, name: str, version: str, tags: set[Tag]) -> Path | None:
    """A wheel of `name==version` in `directory` with one of `tags`, if there is one."""
    if not directory.is_dir():
        return None
    want = canonicalize_name(name)
    for path in sorted(directory.glob("*.whl")):
        try:
            wname, wversion, _build, wtags = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            continue
        if wname == want and str(wversion) == version and wtags & tags:
            return path
    return None


Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=600, check=False)


def fetch(
    name: str,
    version: str,
    architecture: str,
    python: tuple[int, int],
    cache: Path,
    *,
    run: Runner | None = None,
) -> Path:
    """The target wheel of `name==version`, from `cache` or downloaded into it by pip."""
    tags = platforms(architecture, python)
    accepted = compatible_tags(tags, python)
    found = find_cached(cache, name, version, accepted)
    if found is not None:
        return found
    cache.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    argv += ["--only-binary=:all:", "--dest", str(cache), "--implementation", "cp"]
    argv += ["--python-version", f"{python[0]}.{python[1]}"]
    for tag in tags:
        argv += ["--platform", tag]
    argv.append(f"{name}=={version}")
    done = (run or _run)(argv)
    found = find_cached(cache, name, version, accepted)
    if done.returncode != 0 or found is None:
        lines = [line for line in (done.stderr or done.stdout or "").splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"pip exited with {done.returncode}"
        raise WheelError(
            f"no {architecture} wheel of {name}=={version} for Python "
            f"{python[0]}.{python[1]} ({reason})"
        )
    return found


def wheel_files(path: Path) -> dict[str, bytes]:
    """Archive name -> bytes of every member of the wheel at `path`."""
    try:
        with zipfile.ZipFile(path) as zf:
            return {info.filename: zf.read(info) for info in zf.infolist() if not info.is_dir()}
    except (OSError, zipfile.BadZipFile) as exc:
        raise WheelError(f"{path.name}: not a readable wheel ({exc})") from exc
