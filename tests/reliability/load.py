"""A bounded load generator for fault tests: a fixed number of requests from a few clients.

`run_load` sends at most `total` requests over `concurrency` keep-alive connections and
records every answer (status, answering pool, route reason). Faults are injected by
`triggers`: a callable runs (in a thread, while the load goes on) once a given number of
answers has arrived, so injection points are counted in requests, never in seconds. The
run may end early once `stop_when` holds (after `min_requests` answers). Everything goes to
127.0.0.1; `max_seconds` only bounds a run that hangs, it is not a performance threshold.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.reliability.stack import DEMO_BODY, DEMO_PATH

Trigger = Callable[[], object]


@dataclass(frozen=True, slots=True)
class Answer:
    """One request's outcome; `status` 0 means no HTTP answer at all (transport error)."""

    seq: int
    status: int
    pool: str
    reason: str
    error: str = ""


@dataclass
class LoadReport:
    answers: list[Answer] = field(default_factory=list)

    @property
    def failures(self) -> list[Answer]:
        return [a for a in self.answers if a.status != 200]

    @property
    def ok(self) -> int:
        return sum(1 for a in self.answers if a.status == 200)

    def by_pool(self, answers: list[Answer] | None = None) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self.answers if answers is None else answers:
            out[a.pool] = out.get(a.pool, 0) + 1
        return out

    def describe_failures(self, limit: int = 5) -> str:
        shown = [f"#{a.seq}: {a.status} {a.pool} {a.error[:200]}" for a in self.failures[:limit]]
        return f"{len(self.failures)} of {len(self.answers)} failed: " + "; ".join(shown)


async def run_load(
    base_url: str,
    *,
    total: int,
    concurrency: int = 4,
    path: str = DEMO_PATH,
    body: Mapping[str, Any] = DEMO_BODY,
    headers: Mapping[str, str] | None = None,
    triggers: Mapping[int, Trigger] | None = None,
    stop_when: Callable[[], bool] | None = None,
    min_requests: int = 0,
    max_seconds: float = 120.0,
    request_timeout_s: float = 60.0,
) -> LoadReport:
    """Send up to `total` POSTs of `body` to `path`; see the module docstring."""
    report = LoadReport()
    seq = itertools.count()
    pending = dict(triggers or {})
    fired: list[asyncio.Task[object]] = []
    stopped = False

    def after_answer() -> None:
        nonlocal stopped
        done = len(report.answers)
        for at in sorted(k for k in pending if k <= done):
            fired.append(asyncio.create_task(asyncio.to_thread(pending.pop(at))))
        if stop_when is not None and done >= min_requests and done % 5 == 0 and stop_when():
            stopped = True

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not stopped:
            n = next(seq)
            if n >= total:
                return
            try:
                reply = await client.post(path, json=dict(body), headers=dict(headers or {}))
            except httpx.HTTPError as exc:
                report.answers.append(Answer(n, 0, "", "", f"{type(exc).__name__}: {exc}"))
            else:
                error = "" if reply.status_code == 200 else reply.text
                report.answers.append(
                    Answer(
                        n,
                        reply.status_code,
                        reply.headers.get("x-mpfn-pool", ""),
                        reply.headers.get("x-mpfn-route-reason", ""),
                        error,
                    )
                )
            after_answer()

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(request_timeout_s)
    async with (
        asyncio.timeout(max_seconds),
        httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client,
    ):
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        await asyncio.gather(*fired)
    assert not pending, f"the load ended before triggers at {sorted(pending)} answers"
    return report


def load(base_url: str, **kwargs: Any) -> LoadReport:
    """`run_load` from synchronous code."""
    return asyncio.run(run_load(base_url, **kwargs))
