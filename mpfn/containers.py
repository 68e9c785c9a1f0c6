"""Run and stop containers with podman (or docker): the thin shell under
`mpfn up --runtime containers` and the container tests.

Containers share the host's network (ports are the host's, as for processes), run
detached with a name, and are removed when stopped. Nothing needs a daemon with podman.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

RUNTIMES = ("podman", "docker")


class ContainerError(RuntimeError):
    """A container could not be started, or a container command failed."""


def find_runtime(prefer: str | None = None) -> str:
    for tool in (prefer,) if prefer else RUNTIMES:
        if tool and shutil.which(tool):
            return tool
    raise ContainerError(
        f"{prefer or 'podman'} is not installed (e.g. apt-get install podman runc)"
    )


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    volumes: tuple[tuple[str, str], ...] = ()  # (host path, container path)
    user: str | None = None
    entrypoint: tuple[str, ...] | None = None
    tmpfs: tuple[str, ...] = ()
    read_only: bool = False

    def run_argv(self, tool: str, *, detach: bool = True) -> list[str]:
        """`TOOL run -d ...` for this spec (in the foreground without `detach`). Pure."""
        argv = [tool, "run", *(["-d"] if detach else []), "--rm", "--name", self.name]
        argv += ["--network", "host"]
        if self.user:
            argv += ["--user", self.user]
        if self.read_only:
            argv.append("--read-only")
        for key, value in sorted(self.env.items()):
            argv += ["-e", f"{key}={value}"]
        for host, inside in self.volumes:
            argv += ["-v", f"{host}:{inside}"]
        for path in self.tmpfs:
            argv += ["--tmpfs", path]
        if self.entrypoint is not None:
            argv += ["--entrypoint", json.dumps(list(self.entrypoint))]
        return [*argv, self.image, *self.args]


@dataclass
class Container:
    tool: str
    name: str

    def running(self) -> bool:
        done = subprocess.run(
            [self.tool, "inspect", "--format", "{{.State.Running}}", self.name],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.returncode == 0 and done.stdout.strip() == "true"

    def logs(self, tail: int = 40) -> str:
        done = subprocess.run(
            [self.tool, "logs", "--tail", str(tail), self.name],
            capture_output=True,
            text=True,
            check=False,
        )
        return (done.stdout + done.stderr).strip()

    def stop(self, timeout_s: int = 10) -> None:
        with contextlib.suppress(OSError):
            subprocess.run(
                [self.tool, "stop", "-t", str(timeout_s), self.name],
                capture_output=True,
                check=False,
            )
            subprocess.run([self.tool, "rm", "-f", self.name], capture_output=True, check=False)


def run(spec: ContainerSpec, tool: str) -> Container:
    """Start `spec` detached; a stale container of the same name is removed first."""
    subprocess.run([tool, "rm", "-f", spec.name], capture_output=True, check=False)
    done = subprocess.run(spec.run_argv(tool), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ContainerError(f"starting {spec.name} failed: {done.stderr.strip()[-800:]}")
    return Container(tool, spec.name)


def stop_all(containers: Sequence[Container], timeout_s: int = 10) -> None:
    for container in containers:
        container.stop(timeout_s)
