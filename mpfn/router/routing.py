"""Routing decisions as pure functions: which pools can serve a request, in what order.

Nothing here does I/O or keeps state; the forwarder and the (future) scheduler call these.
The seam is `candidates` (filter) followed by `attempt_order` (pick): a scorer can later
sit between the two without touching either.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from mpfn.documents import NAME_PATTERN, ModelVersion, Pool

if TYPE_CHECKING:
    from mpfn.router.snapshot import Snapshot

Protocol = Literal["v2", "openai"]

# Which model formats each known adapter kind can load. Adapter kinds not listed here
# (third-party plug-ins) serve only the models their pool names explicitly.
ADAPTER_FORMATS: Mapping[str, frozenset[str]] = {
    "ort": frozenset({"onnx"}),
    "onnxruntime": frozenset({"onnx"}),
    "triton": frozenset({"onnx", "torchscript", "pytorch", "tensorflow", "other"}),
    "torchserve": frozenset({"torchscript", "pytorch", "other"}),
    "tfserving": frozenset({"tensorflow"}),
    "openai": frozenset({"gguf", "openai"}),
}
OPENAI_ADAPTER = "openai"

_NAME_RE = re.compile(NAME_PATTERN)


def valid_name(name: str) -> bool:
    """True when `name` could be a model or version name at all."""
    return bool(_NAME_RE.match(name))


def adapter_fits(adapter: str, model_format: str | None, *, listed: bool) -> bool:
    """Can a pool of kind `adapter` serve a model of `model_format`?

    `model_format` is None for a name only known from a pool's `models` list.
    `listed`: the pool names the model explicitly.
    """
    formats = ADAPTER_FORMATS.get(adapter)
    if formats is None or model_format is None:
        return listed
    return model_format in formats


def speaks(adapter: str, protocol: Protocol) -> bool:
    """OpenAI routes go to `openai` pools only; v2 routes to every other kind."""
    return (adapter == OPENAI_ADAPTER) == (protocol == "openai")


def pool_serves(pool: Pool, model: str, model_format: str | None, protocol: Protocol) -> bool:
    """The filter step for one pool."""
    if not speaks(pool.adapter, protocol):
        return False
    listed = model in pool.models
    if pool.models and not listed:
        return False
    return adapter_fits(pool.adapter, model_format, listed=listed)


def model_format(versions: Mapping[str, ModelVersion] | None) -> str | None:
    """The format of a model (of its default version); None when it is not registered."""
    if not versions:
        return None
    return versions[default_version(versions.keys())].format


def serving_pools(
    pools: Sequence[Pool], model: str, fmt: str | None, protocol: Protocol
) -> tuple[Pool, ...]:
    return tuple(p for p in pools if pool_serves(p, model, fmt, protocol))


def _version_sort_key(version: str) -> tuple[int, int, str]:
    return (1, int(version), "") if version.isdigit() else (0, 0, version)


def default_version(versions: Collection[str]) -> str:
    """The version a version-less request means: the highest (numeric before lexical)."""
    return max(versions, key=_version_sort_key)


@dataclass(frozen=True, slots=True)
class Resolution:
    """The outcome of the filter step: pools to try, or why there are none."""

    pools: tuple[Pool, ...] = ()
    status: int = 200
    error: str = ""

    @property
    def known(self) -> bool:
        """True when the model is known, whether or not a pool can serve it now."""
        return self.status != 404


def candidates(
    snapshot: Snapshot, model: str, version: str | None = None, protocol: Protocol = "v2"
) -> Resolution:
    """Pools that can serve `model` (and `version`, if given) over `protocol`.

    404 for unknown models or versions; 503 when the model is known but no pool serves it.
    """
    versions = snapshot.models.get(model)
    if version is not None and (versions is None or version not in versions):
        if versions is None and not snapshot.listed_by_pools(model, protocol):
            return Resolution(status=404, error=f"unknown model {model!r}")
        return Resolution(status=404, error=f"model {model!r} has no version {version!r}")
    pools = snapshot.pools_for(model, protocol)
    if pools is None:
        return Resolution(status=404, error=f"unknown model {model!r}")
    if not pools:
        return Resolution(
            status=503, error=f"no pool serves model {model!r} over the {protocol} protocol"
        )
    return Resolution(pools=pools)


def attempt_order(pools: Sequence[Pool], turn: int, down: Collection[str] = ()) -> list[Pool]:
    """The pick step: round-robin rotation by `turn`, pools recently down moved last.

    Every candidate stays in the list so a request still has somewhere to go when all
    pools were marked down.
    """
    n = len(pools)
    if n == 0:
        return []
    start = turn % n
    rotated = [*pools[start:], *pools[:start]]
    if not down:
        return rotated
    up = [p for p in rotated if p.id not in down]
    return up + [p for p in rotated if p.id in down]


def should_fail_over(status: int) -> bool:
    """A backend answered `status`: try the next pool instead of relaying it?

    Only "I can't serve this right now" answers (502/503/504) fail over; 4xx and every
    other status are relayed unchanged.
    """
    return status in (502, 503, 504)


def backend_url(pool: Pool, path: str) -> str:
    """The URL of `path` on `pool`; `path` is always one the router built itself."""
    return str(pool.endpoint).rstrip("/") + path
