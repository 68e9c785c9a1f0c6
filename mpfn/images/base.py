"""The base every mpfn image starts from: Debian bookworm with Python, built offline.

No public registry has to be reachable: the base is made from Debian packages with
`mmdebstrap` (from the Debian archive, or the mirror in `MPFN_DEBIAN_MIRROR`) and imported
into the builder. It is named by a digest of what goes in, cached as a tarball, and made
once per machine: a second build finds the image (or the tarball) and reuses it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mpfn.images.builder import Builder, BuilderError
from mpfn.images.platforms import Platform, host_platform

SUITE = "bookworm"
PACKAGES = ("python3", "ca-certificates", "tzdata")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Documentation, manuals and translations are left out of the tree; apt's lists too.
_EXCLUDE = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")


@dataclass(frozen=True)
class BasePlan:
    platform: Platform
    mirror: str
    packages: tuple[str, ...] = PACKAGES
    suite: str = SUITE

    @property
    def key(self) -> str:
        text = "\n".join([self.suite, self.platform.debian, self.mirror, *self.packages])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def ref(self) -> str:
        return f"localhost/mpfn-base:{self.suite}-{self.platform.debian}-{self.key}"

    def mmdebstrap_argv(self, tar: Path) -> list[str]:
        security = self.mirror.rstrip("/") + "-security"
        argv = [
            "mmdebstrap",
            "--variant=minbase",
            f"--architectures={self.platform.debian}",
            f"--include={','.join(self.packages)}",
            '--aptopt=Acquire::Check-Valid-Until "false"',
            *(f"--dpkgopt=path-exclude={path}" for path in _EXCLUDE),
            '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*',
            self.suite,
            str(tar),
            f"deb {self.mirror} {self.suite} main",
            f"deb {self.mirror} {self.suite}-updates main",
        ]
        if self.mirror == DEFAULT_MIRROR:
            argv.append(f"deb {security} {self.suite}-security main")
        return argv


def plan_for(platform: Platform, env: dict[str, str] | None = None) -> BasePlan:
    env = dict(os.environ) if env is None else env
    return BasePlan(platform, env.get("MPFN_DEBIAN_MIRROR", DEFAULT_MIRROR))


def ensure_base(
    builder: Builder,
    plan: BasePlan,
    cache_dir: Path,
    echo: Callable[[str], None] = print,
) -> str:
    """The base image's reference, building and importing it first if needed."""
    if builder.exists(plan.ref):
        return plan.ref
    tar = cache_dir / f"base-{plan.suite}-{plan.platform.debian}-{plan.key}.tar"
    if not tar.exists():
        if shutil.which("mmdebstrap") is None:
            raise BuilderError(
                "building the Debian base needs mmdebstrap (apt-get install mmdebstrap), or "
                "pass --base IMAGE with Python 3.11 on it"
            )
        echo(f"building the base image from Debian packages ({plan.suite}, {plan.platform.name})")
        tar.parent.mkdir(parents=True, exist_ok=True)
        # mmdebstrap reads the output format off the file name
        partial = tar.with_name(tar.stem + ".partial.tar")
        done = subprocess.run(
            plan.mmdebstrap_argv(partial),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if done.returncode != 0:
            partial.unlink(missing_ok=True)
            tail = "\n".join((done.stderr or "").strip().splitlines()[-12:])
            raise BuilderError(f"mmdebstrap failed:\n{tail}{_foreign_hint(plan)}")
        partial.rename(tar)
    builder.import_tar(tar, plan.ref, plan.platform.name)
    return plan.ref


def _foreign_hint(plan: BasePlan) -> str:
    """What to do when the base is for another architecture than this machine's."""
    if plan.platform == host_platform():
        return ""
    return (
        f"\n{plan.platform.name} is not this machine's architecture: the base needs its"
        " packages' scripts run under emulation (install qemu-user-static and binfmt-support),"
        f" or pass --base with a {plan.platform.name} image that has Python 3.11"
    )
