"""The `local` target: the `mpfn up` stack (workers, router, warm loop) in the background,
as processes or as containers (`deploy.local.runtime`).

Deploy starts `mpfn up` as a detached process on the local state directory and waits until
its router answers; destroy sends it SIGTERM, and `mpfn up` stops every process it
started. The stack is one resource: its settings (port, keep-alive) are written beside
`mpfn up`'s own runtime file, so a changed setting restarts it and a stack whose process
died is started again. `mpfn deploy status` / `logs` report on it. A running `mpfn up`
that deploy did not start (its pid in `up.json` is alive and is not the one in deploy's
settings file) owns the state directory: deploy refuses rather than take it over.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import httpx

from mpfn.deploy.errors import DeployFailure
from mpfn.deploy.k8s import project_records
from mpfn.deploy.models import Action, Change, Resource, ResourceKey, observed_only
from mpfn.deploy.planner import Planner, PlanOptions
from mpfn.deploy.record import RecordStore
from mpfn.deploy.spec import DeployConfig, DeployConfigError
from mpfn.deploy.targets import Project
from mpfn.up import RUNTIME_FILE, read_router_url

SETTINGS_FILE = "deploy-local.json"
STACK = "stack"


class LocalStackError(DeployFailure, RuntimeError):
    pass


@dataclass(frozen=True)
class LocalStack(Resource):
    kind: ClassVar[str] = "local.stack"
    port: int = 8080  # as requested; 0 picks a free port
    keep_alive_s: float = 600.0
    runtime: str = "processes"
    pid: int = observed_only(0)
    url: str = observed_only("")

    def outputs(self) -> dict[str, str]:
        return {"router_url": self.url} if self.url else {}


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalTarget:
    name = "local"

    def __init__(
        self, config: DeployConfig, project: Project, *, ready_timeout_s: float = 120.0
    ) -> None:
        self.config = config
        self.project = project
        state = config.local.state or project.state
        if not state.startswith("file://"):
            raise DeployConfigError(
                f"--target local runs on a local state directory, not {state}; "
                "set deploy.local.state"
            )
        self.state_dir = Path(state[len("file://") :])
        self.ready_timeout_s = ready_timeout_s

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    def resource_keys(self) -> list[ResourceKey]:
        return [(LocalStack.kind, STACK)]

    def foreign_up(self) -> int | None:
        """The pid of a running `mpfn up` on this state that this target did not start."""
        try:
            pid = int(json.loads((self.state_dir / RUNTIME_FILE).read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not _alive(pid):
            return None
        try:
            own = int(json.loads((self.state_dir / SETTINGS_FILE).read_text()).get("pid", 0))
        except (OSError, ValueError, TypeError, AttributeError):
            own = 0
        return None if pid == own else pid

    def _refuse_foreign_up(self) -> None:
        pid = self.foreign_up()
        if pid is not None:
            raise LocalStackError(
                f"`mpfn up` (pid {pid}) is running on {self.state_dir} and deploy did not "
                f"start it: stop it (Ctrl-C, or kill {pid}), or set deploy.local.state to "
                "another directory"
            )

    def desired(self) -> Sequence[Resource]:
        self._refuse_foreign_up()
        local = self.config.local
        return [
            LocalStack(
                STACK, port=local.port, keep_alive_s=local.keep_alive_s, runtime=local.runtime
            )
        ]

    def observe(self, keys: Sequence[ResourceKey]) -> dict[ResourceKey, Resource | None]:
        return {key: self._observe() for key in keys if key[0] == LocalStack.kind}

    def _observe(self) -> LocalStack | None:
        try:
            saved = json.loads((self.state_dir / SETTINGS_FILE).read_text())
        except (OSError, ValueError):
            return None
        pid = int(saved.get("pid", 0))
        if not _alive(pid):
            return None
        return LocalStack(
            STACK,
            port=int(saved["port"]),
            keep_alive_s=float(saved["keep_alive_s"]),
            runtime=str(saved.get("runtime", "processes")),
            pid=pid,
            url=read_router_url(self.state_dir) or "",
        )

    def apply(self, change: Change) -> dict[str, str]:
        if change.action in (Action.UPDATE, Action.DELETE) and change.current is not None:
            current = change.current
            assert isinstance(current, LocalStack)
            self._stop(current.pid)
        if change.action is Action.DELETE:
            return {}
        desired = change.desired
        assert isinstance(desired, LocalStack)
        return {"router_url": self._start(desired)}

    def _start(self, stack: LocalStack) -> str:
        self._refuse_foreign_up()
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / RUNTIME_FILE).unlink(missing_ok=True)
        argv = [
            sys.executable, "-m", "mpfn", "--state", str(self.state_dir), "up",
            "--port", str(stack.port), "--keep-alive", str(stack.keep_alive_s),
            "--runtime", stack.runtime, *self._site_args(),
        ]  # fmt: skip
        with (self.logs_dir / "up.log").open("ab") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.project.directory,  # its mpfn.yaml: how to reach the primary
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )
        settings = {
            "pid": proc.pid,
            "port": stack.port,
            "keep_alive_s": stack.keep_alive_s,
            "runtime": stack.runtime,
        }
        (self.state_dir / SETTINGS_FILE).write_text(json.dumps(settings))
        # containers may need their images built first
        timeout_s = self.ready_timeout_s * (5 if stack.runtime == "containers" else 1)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LocalStackError(
                    f"mpfn up exited with code {proc.returncode}; see {self.logs_dir / 'up.log'}"
                )
            url = read_router_url(self.state_dir)
            if url:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/v2/health/ready", timeout=2.0).status_code == 200:
                        return url
            time.sleep(0.2)
        self._stop(proc.pid)
        raise LocalStackError(f"the local stack was not ready after {timeout_s:.0f}s")

    def _site_args(self) -> list[str]:
        """One site of a deployment: its router knows the site; registrations go to the
        primary when the site's state is a replica."""
        site = self.config.site
        if site is None:
            return []
        primary = self.project.state
        replica = f"file://{self.state_dir.expanduser().resolve()}"
        return ["--site", site] + (["--primary", primary] if primary != replica else [])

    def _stop(self, pid: int, timeout_s: float = 30.0) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap it when this process started it
            time.sleep(0.1)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        (self.state_dir / SETTINGS_FILE).unlink(missing_ok=True)

    def records(self) -> RecordStore:
        state = f"file://{self.state_dir}"  # the stack's own state: a site's is its replica
        return project_records(
            replace(self.project, state=state), self.name, self.config.record_stage()
        )

    def planner(self, options: PlanOptions) -> Planner:
        return Planner(options)

    def notes(self) -> list[str]:
        return [f"local stack on {self.state_dir} (logs in {self.logs_dir})"]

    def status(self) -> dict[str, Any]:
        stack = self._observe()
        info: dict[str, Any] = {"running": stack is not None, "state": str(self.state_dir)}
        if stack is not None:
            info |= {"pid": stack.pid, "router_url": stack.url}
            with contextlib.suppress(httpx.HTTPError):
                health = httpx.get(f"{stack.url}/v2/health/ready", timeout=2.0)
                info["router_ready"] = health.status_code == 200
        return info

    def logs(self, lines: int) -> list[str]:
        out: list[str] = []
        for path in sorted(self.logs_dir.glob("*.log")):
            out.append(f"==> {path} <==")
            text = path.read_text(errors="replace").splitlines()
            out.extend(text[-lines:])
        return out or [f"no logs in {self.logs_dir}"]
