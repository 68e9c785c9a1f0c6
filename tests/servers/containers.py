"""mpfn's images, built once per test run, and containers of them on loopback ports.

`test_images()` builds (or finds: tags are content digests) the router, warmer, worker and
TF Serving adapter images with `mpfn.images`, plus a test-only image of the TF Serving
stand-in (NOT TensorFlow Serving): the worker's and adapter's packages and
`tests/servers/tfserving_standin`. Containers run on the host network with podman; each
is started on a free port (again on another one if that was taken) and removed when
stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import ssl
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from mpfn.containers import Container, ContainerError, ContainerSpec, find_runtime
from mpfn.containers import run as run_container
from mpfn.images.build import BuildOptions, build_images, build_one, default_cache_dir
from mpfn.images.builder import Builder
from mpfn.images.catalog import CATALOG, ImageSpec, resolve
from mpfn.images.layers import build_wheel
from mpfn.images.platforms import host_platform
from tests.servers.ports import BIND_CONFLICT, unused_port
from tests.servers.process import ROOT

TARGETS = tuple(CATALOG)  # every image CI builds
STANDIN = ImageSpec(
    target="tfserving-standin",
    name="mpfn-test-tfserving-standin",
    description="TF Serving stand-in for tests (NOT TensorFlow Serving)",
    extras=("worker", "tfserving"),
    requirements=("aiohttp>=3.9",),  # the stand-in's HTTP server; mpfn itself needs none
    entrypoint=("python3", "-m", "tests.servers.tfserving_standin"),
    cmd=(),
    port=None,
)
_STANDIN_FILES = ("tests/__init__.py", "tests/servers/__init__.py")


def runtime() -> str:
    return find_runtime("podman")


def test_images(cache_dir: Path | None = None) -> dict[str, str]:
    """target -> image reference for TARGETS and `tfserving-standin`."""
    builder = Builder(runtime())
    options = BuildOptions(ROOT, cache_dir or default_cache_dir(), host_platform())
    built = build_images(builder, resolve(TARGETS), options, echo=lambda _: None)
    images = {b.target: b.ref for b in built}
    images[STANDIN.target] = _standin_image(builder, options)
    return images


def _standin_image(builder: Builder, options: BuildOptions) -> str:
    """The stand-in's packages (built like any image) plus the stand-in's own code."""
    from mpfn.images.base import ensure_base, plan_for

    base = ensure_base(builder, plan_for(options.platform), options.cache_dir, lambda _: None)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = build_wheel(options.source, Path(tmp))
        packages = build_one(builder, STANDIN, base, wheel, options, lambda _: None).ref
    code = sorted((ROOT / "tests/servers/tfserving_standin").glob("*.py"))
    h = hashlib.sha256(packages.encode())
    for path in [*code, *(ROOT / f for f in _STANDIN_FILES)]:
        h.update(path.read_bytes())
    ref = f"localhost/mpfn-test-tfserving-standin:{h.hexdigest()[:12]}"
    if builder.exists(ref):
        return ref
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp)
        (context / "tests/servers/tfserving_standin").mkdir(parents=True)
        for path in code:
            (context / "tests/servers/tfserving_standin" / path.name).write_bytes(path.read_bytes())
        for name in _STANDIN_FILES:
            (context / name).write_bytes((ROOT / name).read_bytes())
        (context / "Containerfile").write_text(
            f"FROM {packages}\nCOPY tests/ /opt/mpfn/tests/tests/\n"
            'ENV PYTHONPATH="/opt/mpfn/app:/opt/mpfn/deps:/opt/mpfn/tests"\n'
        )
        builder.build(context / "Containerfile", context, [ref], None)
    return ref


@dataclass
class RunningContainer:
    container: Container
    port: int
    ports: tuple[int, ...]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.container.logs(80)

    def stop(self) -> None:
        self.container.stop(timeout_s=5)


def start_container(
    make: Callable[[tuple[int, ...]], ContainerSpec],
    *,
    ready: Callable[[tuple[int, ...]], str],
    ports: int = 1,
    timeout: float = 90.0,
) -> RunningContainer:
    """Run `make(ports)` with free loopback ports until `ready(ports)` answers below 500
    (again on other ports when the container could not bind one)."""
    for _attempt in range(5):
        chosen = tuple(unused_port() for _ in range(ports))
        spec = make(chosen)
        container = run_container(spec, runtime())
        running = RunningContainer(container, chosen[0], chosen)
        try:
            _wait(running, ready(chosen), timeout)
            return running
        except ContainerError as exc:
            running.stop()
            if not BIND_CONFLICT.search(str(exc)):
                raise
    raise ContainerError("no free ports after 5 attempts")


def _wait(
    running: RunningContainer, url: str, timeout: float, verify: ssl.SSLContext | bool = True
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running.container.running():
            raise ContainerError(f"{running.container.name} exited:\n{running.logs()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0, verify=verify).status_code < 500:
                return
        time.sleep(0.2)
    logs = running.logs()
    running.stop()
    raise ContainerError(f"{running.container.name} not ready after {timeout}s:\n{logs}")


def run_ready(
    spec: ContainerSpec,
    ready_url: str,
    timeout: float = 90.0,
    verify: ssl.SSLContext | bool = True,
) -> RunningContainer:
    """Run `spec` as it is (its ports chosen by the caller) until `ready_url` answers
    (`verify`: the TLS context to ask an https URL with)."""
    running = RunningContainer(run_container(spec, runtime()), 0, ())
    try:
        _wait(running, ready_url, timeout, verify)
    except Exception:
        running.stop()
        raise
    return running


@contextlib.contextmanager
def started(running: RunningContainer) -> Iterator[RunningContainer]:
    try:
        yield running
    finally:
        running.stop()


def name(prefix: str) -> str:
    return f"mpfn-test-{prefix}-{os.getpid()}-{unused_port()}"


def as_me(spec: ContainerSpec) -> ContainerSpec:
    """Run as this user, so that bind-mounted test directories are writable."""
    return replace(spec, user=f"{os.getuid()}:{os.getgid()}")
