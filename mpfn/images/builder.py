"""The image builder this machine has: podman, buildah or docker, none needing a daemon
but docker. Pure argv construction plus a thin runner, so tests can see every command."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

TOOLS = ("podman", "buildah", "docker")
Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]


class BuilderError(RuntimeError):
    """No usable builder, or a builder command failed."""


def run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


def registry_of(destination: str) -> tuple[str, bool]:
    """`http://HOST:PORT/path` -> ("HOST:PORT/path", plain HTTP); `HOST/path` -> TLS."""
    for scheme, plain in (("http://", True), ("https://", False)):
        if destination.startswith(scheme):
            return destination[len(scheme) :].rstrip("/"), plain
    return destination.rstrip("/"), False


_UNITS = {"B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3}


def parse_size(text: str) -> int:
    """`495 MB` (as buildah prints sizes) -> bytes; 0 when unreadable."""
    number, _, unit = text.strip().partition(" ")
    try:
        return int(float(number) * _UNITS.get(unit.upper() or "B", 1))
    except ValueError:
        return 0


@dataclass(frozen=True)
class Builder:
    tool: str
    run: Runner = run_command

    # -- argv (pure) ------------------------------------------------------------------
    def build_argv(
        self, containerfile: Path, context: Path, tags: Sequence[str], platform: str | None
    ) -> list[str]:
        argv = [self.tool, "build"]
        if self.tool != "docker":
            # one commit at the end: with the vfs storage driver every intermediate layer
            # is a full copy of the tree (the content tag already makes rebuilds no-ops)
            argv.append("--layers=false")
        argv += ["-f", str(containerfile)]
        for tag in tags:
            argv += ["-t", tag]
        if platform:
            argv += ["--platform", platform]
        return [*argv, str(context)]

    def exists_argv(self, ref: str) -> list[str]:
        if self.tool == "buildah":
            return ["buildah", "inspect", "--type", "image", ref]
        return [self.tool, "image", "inspect", ref]

    def push_argv(self, ref: str, destination: str, plain_http: bool) -> list[str]:
        if self.tool == "docker":
            return ["docker", "push", destination]
        tls = ["--tls-verify=false"] if plain_http else []
        return [self.tool, "push", *tls, ref, f"docker://{destination}"]

    def pull_argv(self, ref: str, plain_http: bool) -> list[str]:
        tls = ["--tls-verify=false"] if plain_http and self.tool != "docker" else []
        return [self.tool, "pull", *tls, ref]

    # -- commands ---------------------------------------------------------------------
    def _check(self, argv: Sequence[str], what: str) -> str:
        done = self.run(argv)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout or "").strip().splitlines()[-12:]
            raise BuilderError(f"{what} failed ({' '.join(argv[:3])} ...):\n" + "\n".join(tail))
        return done.stdout

    def exists(self, ref: str) -> bool:
        return self.run(self.exists_argv(ref)).returncode == 0

    def image_id(self, ref: str) -> str:
        out = self._check(self.exists_argv(ref), f"inspect {ref}")
        data = json.loads(out)
        item = data[0] if isinstance(data, list) else data
        return str(item.get("Id") or item.get("FromImageID") or item.get("FromImageDigest"))

    def size(self, ref: str) -> int:
        """Uncompressed size in bytes (0 when the builder does not say)."""
        if self.tool == "buildah":
            out = self._check(["buildah", "images", "--json", ref], f"size of {ref}")
            return parse_size(str(json.loads(out)[0].get("size", "0")))
        out = self._check([self.tool, "image", "inspect", "--format", "{{.Size}}", ref], "size")
        return int(out.strip() or 0)

    def build(
        self, containerfile: Path, context: Path, tags: Sequence[str], platform: str | None
    ) -> None:
        self._check(self.build_argv(containerfile, context, tags, platform), f"build {tags[0]}")

    def tag(self, ref: str, other: str) -> None:
        self._check([self.tool, "tag", ref, other], f"tag {other}")

    def import_tar(self, tar: Path, ref: str, platform: str | None = None) -> None:
        if self.tool == "buildah":
            # buildah has no import: make a container from scratch with the tree, commit it
            script = ["buildah", "from", "scratch"]
            container = self._check(script, "buildah from scratch").strip()
            self._check(["buildah", "add", container, str(tar), "/"], "buildah add")
            self._check(["buildah", "commit", "--rm", container, ref], "buildah commit")
            return
        argv = [self.tool, "import"]
        if platform and self.tool == "podman":
            argv += ["--arch", platform.split("/")[1]]
        self._check([*argv, str(tar), ref], f"import {ref}")

    def push(self, ref: str, destination: str, plain_http: bool) -> None:
        if self.tool == "docker":
            self.tag(ref, destination)
        self._check(self.push_argv(ref, destination, plain_http), f"push {destination}")


def detect(prefer: str | None = None, which: Callable[[str], str | None] = shutil.which) -> str:
    """The builder tool to use: `prefer` if given (and present), else the first found."""
    if prefer is not None:
        if prefer not in TOOLS:
            raise BuilderError(f"unknown builder {prefer!r}; choose from: {', '.join(TOOLS)}")
        if which(prefer) is None:
            raise BuilderError(f"{prefer} is not installed")
        return prefer
    for tool in TOOLS:
        if which(tool):
            return tool
    raise BuilderError(
        "no image builder found: install podman or buildah (no daemon needed), or docker "
        "(e.g. apt-get install podman buildah runc)"
    )
