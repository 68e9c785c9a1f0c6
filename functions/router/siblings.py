"""One router, several processes: `/metrics` of all of them, from whichever answers.

Under `python -m mpfn.functions.router --workers N` the kernel hands each connection to
one of N processes, each with its own counters; a scrape reaches one of them. Each
process therefore also answers on a Unix socket of its own in a private directory
(`MPFN_ROUTER_METRICS_DIR`, made by the entry point), and the one a scrape reaches
renders its siblings' metrics with its own as one router's: counters and histograms
add up, as do in-flight requests, admission limits and waiting lines; a circuit's state
and the state's age are the worst any process reports, a series' creation time the
earliest. `merge` is pure; `Siblings` is the thin shell (a socket per process, read
with a timeout; a process that is gone is skipped and its socket removed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

log = logging.getLogger("mpfn.router")

WORST = frozenset({"mpfn_router_circuit_state", "mpfn_router_state_age_seconds"})
READ_TIMEOUT_S = 1.0
SUFFIX = ".sock"


def combine(name: str, a: float, b: float) -> float:
    """Two processes' values of one series of family `name`, as one router's."""
    if name in WORST:
        return max(a, b)
    if name.endswith("_created"):
        return min(a, b)
    return a + b


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def merge(texts: Sequence[bytes]) -> bytes:
    """Several processes' Prometheus text expositions as one (family order of the first
    text, then of the others' new families)."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text.decode("utf-8")):
            if family.name not in families:
                families[family.name] = Metric(family.name, family.documentation, family.type)
                values[family.name] = {}
            series = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                old = series.get(key)
                series[key] = (
                    sample.value if old is None else combine(family.name, old, sample.value)
                )
    out = []
    for name, family in families.items():
        for (sample_name, labels), value in values[name].items():
            family.add_sample(sample_name, dict(labels), value)
        out.append(family)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(out))
    return generate_latest(registry)


class Siblings:
    """This process's metrics socket in `directory`, and its siblings' metrics."""

    def __init__(
        self, directory: str | Path, render: Callable[[], bytes], name: str | None = None
    ) -> None:
        self.directory = Path(directory)
        self.render = render
        self.path = self.directory / f"{name or os.getpid()}{SUFFIX}"
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._answer, path=str(self.path))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.path.unlink(missing_ok=True)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(self.render())
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _read(self, path: Path) -> bytes | None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                reader, writer = await asyncio.open_unix_connection(str(path))
                try:
                    return await reader.read()
                finally:
                    writer.close()
        except ConnectionRefusedError:  # nothing listens: the process is gone
            path.unlink(missing_ok=True)
        except (OSError, TimeoutError) as exc:
            log.warning("router process metrics at %s not read: %s", path, exc)
        return None

    async def render_all(self) -> bytes:
        """This process's metrics merged with every sibling's that answers."""
        others = sorted(p for p in self.directory.glob(f"*{SUFFIX}") if p != self.path)
        texts = [self.render()]
        for text in await asyncio.gather(*(self._read(p) for p in others)):
            if text:
                texts.append(text)
        if len(texts) == 1:
            return texts[0]
        with contextlib.suppress(ValueError):
            return merge(texts)
        log.warning("router process metrics could not be merged; serving this process's")
        return texts[0]
