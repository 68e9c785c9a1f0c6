"""Container platforms mpfn builds for, and their names in Debian and in wheel tags."""

from __future__ import annotations

import platform as _platform
from dataclasses import dataclass


@dataclass(frozen=True)
class Platform:
    name: str  # linux/amd64
    debian: str  # amd64
    machine: str  # x86_64, as in wheel tags

    @property
    def wheel_tags(self) -> list[str]:
        """manylinux tags a bookworm (glibc 2.36) system on this machine runs, best first."""
        tags = [f"manylinux_2_{minor}_{self.machine}" for minor in range(36, 16, -1)]
        tags.append(f"manylinux2014_{self.machine}")
        if self.machine == "x86_64":
            tags += ["manylinux2010_x86_64", "manylinux1_x86_64"]
        return tags


PLATFORMS = {
    "linux/amd64": Platform("linux/amd64", "amd64", "x86_64"),
    "linux/arm64": Platform("linux/arm64", "arm64", "aarch64"),
}
_BY_MACHINE = {p.machine: p for p in PLATFORMS.values()} | {"amd64": PLATFORMS["linux/amd64"]}


class UnknownPlatform(ValueError):
    """A platform mpfn cannot build for."""


def host_platform(machine: str | None = None) -> Platform:
    machine = machine or _platform.machine()
    try:
        return _BY_MACHINE[machine]
    except KeyError:
        raise UnknownPlatform(f"no container platform for this machine ({machine})") from None


def parse_platform(name: str | None) -> Platform:
    """`linux/amd64` | `linux/arm64` | None (this machine's)."""
    if name is None:
        return host_platform()
    try:
        return PLATFORMS[name]
    except KeyError:
        raise UnknownPlatform(
            f"unknown platform {name!r}; choose from: {', '.join(PLATFORMS)}"
        ) from None
