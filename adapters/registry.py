"""Find adapter implementations by kind through the `mpfn.adapters` entry-point group.

Third-party packages add backends (ROCm, TPU, Groq, OpenVINO, ...) by declaring, in their
own pyproject.toml:

    [project.entry-points."mpfn.adapters"]
    mykind = "my_package.adapter:MyAdapter"

Nothing in mpfn's core has to change.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

import httpx

from mpfn.adapters.base import Adapter, AdapterConfig, AdapterFactory

GROUP = "mpfn.adapters"


class UnknownAdapter(LookupError):
    """No installed adapter has this kind."""


@cache
def available() -> dict[str, str]:
    """kind -> "module:attr" of every installed adapter plug-in."""
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def load_factory(kind: str) -> AdapterFactory:
    for ep in entry_points(group=GROUP):
        if ep.name == kind:
            factory: AdapterFactory = ep.load()
            return factory
    known = ", ".join(sorted(available())) or "none installed"
    raise UnknownAdapter(f"unknown adapter kind {kind!r} (installed: {known})")


def create(config: AdapterConfig, *, client: httpx.AsyncClient | None = None) -> Adapter:
    """Instantiate the adapter named by `config.pool.adapter`."""
    return load_factory(config.pool.adapter)(config, client=client)
