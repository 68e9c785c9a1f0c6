"""Forward one request's raw bytes along a failover plan and relay the answer.

The body is sent exactly as received (JSON or the binary-tensor extension) over the
router's keep-alive connections to its pools (`mpfn.functions.router.poolclient`); the
response is relayed as bytes, streamed chunk by chunk when the
backend streams (SSE, chunked). Connection errors, timeouts and 5xx answers (but 501/505)
fail over to the next attempt of the plan while the request's deadline allows and nothing
has been sent to the client; after that nothing is retried. An attempt that leaves the
router's site for a site the route reason did not explain says so in its reason
(`left site a for b`). Every attempt is reported to the routing state (in-flight
counts, latency, load headers, breakers). A pool's
backpressure (429, or 503 + Retry-After) is not a failure: the request tries the next
pool with room and the breaker is not told. With admission on, every attempt holds a
slot of its pool (`mpfn.functions.router.admission`); a request that finds no slot within
its wait budget, or whose pools all answered busy, is shed with 503 + Retry-After. Every
answer carries `x-mpfn-pool` and `x-mpfn-route-reason`. With tracing on, every attempt
runs in a client span whose `traceparent` the backend receives
(`mpfn.functions.router.spans`). This module never picks pools and never touches the
store.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import Tracer
from starlette.types import Send

from mpfn.documents import ModelVersion, Pool
from mpfn.functions.router.admission import Admission
from mpfn.functions.router.errors import ErrorStyle, encode_error, send_json
from mpfn.functions.router.poolclient import PoolClient, PoolClientError, PoolResponse
from mpfn.functions.router.retryafter import RetryAfter
from mpfn.functions.router.spans import traced_attempt
from mpfn.poolauth.present import CredentialError, PoolCredentials, needs_keys
from mpfn.routing import Attempt, RoutingState
from mpfn.routing.admission import Outcome as AttemptOutcome
from mpfn.routing.admission import classify
from mpfn.routing.failover import is_failure
from mpfn.routing.locality import left_for
from mpfn.routing.serving import backend_url
from mpfn.routing.stats import BATCH_SIZE, QUEUED, read_count

log = logging.getLogger("mpfn.router")

ClientFactory = Callable[[], PoolClient]
# (path, body) to send for one attempt of the plan (fallback models change both)
Rewrite = Callable[[Attempt], tuple[str, bytes]]

# Request headers a backend may need; everything else (cookies, the caller's credentials,
# hop-by-hop headers, routing hints) stays at the router.
FORWARD_REQUEST_HEADERS = frozenset(
    {
        b"content-type",
        b"content-encoding",
        b"accept",
        b"accept-encoding",
        b"inference-header-content-length",
        b"x-request-id",
        b"traceparent",
        b"tracestate",
    }
)
# Response headers the router sets itself or that only make sense on one hop.
DROP_RESPONSE_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"content-length",
        b"date",
        b"server",
        b"proxy-authenticate",
        b"upgrade",
        b"trailer",
        b"x-mpfn-pool",
        b"x-mpfn-route-reason",
    }
)
# A frozen backend accepts connections but never answers: an attempt that is not the plan's
# last waits for the answer's headers at most max(min(ANSWER_WAIT_S, deadline / 3),
# ANSWER_WAIT_MIN_S, ANSWER_WAIT_FACTOR x its expected time), and as long again for a
# buffered answer's body (one frozen between the two), then the request moves on to the
# next pool.
ANSWER_WAIT_S = 10.0
ANSWER_WAIT_MIN_S = 1.0
ANSWER_WAIT_FACTOR = 4.0
POOL_HEADER = b"x-mpfn-pool"
REASON_HEADER = b"x-mpfn-route-reason"
NO_POOL = b"none"


def split_headers(
    headers: Iterable[tuple[bytes, bytes]],
) -> tuple[dict[str, str], dict[str, str]]:
    """(headers a backend gets, `x-mpfn-*` routing headers), from one pass over the
    request's headers (names are lower-case in ASGI scopes)."""
    forward: dict[str, str] = {}
    routing: dict[str, str] = {}
    for k, v in headers:
        if k in FORWARD_REQUEST_HEADERS:
            forward[k.decode("latin-1")] = v.decode("latin-1")
        elif k.startswith(b"x-mpfn-"):
            routing[k.decode("latin-1")] = v.decode("latin-1")
    return forward, routing


def relay_headers(
    raw: Iterable[tuple[bytes, bytes]], pool_id: str, reason: str
) -> list[tuple[bytes, bytes]]:
    """The backend's response headers a client gets, plus who answered and why."""
    out = [(name, v) for k, v in raw if (name := k.lower()) not in DROP_RESPONSE_HEADERS]
    out.append((POOL_HEADER, pool_id.encode()))
    out.append((REASON_HEADER, reason.encode("ascii", "replace")))
    return out


def route_headers(reason: str) -> list[tuple[bytes, bytes]]:
    """The routing headers of an answer no pool gave (errors)."""
    return [(POOL_HEADER, NO_POOL), (REASON_HEADER, reason.encode("ascii", "replace"))]


def streams(content_type: str, content_length: int | None) -> bool:
    """Relay chunk by chunk (SSE, or no announced length) rather than buffered?"""
    return content_length is None or content_type.startswith("text/event-stream")


def with_attempts(
    reason: str, failed: Sequence[str], causes: Sequence[str] = (), left: str = ""
) -> str:
    """The route reason after failing over from the pools in `failed` (`causes`: each
    failure as `pool: why`, shortened into the header), and `left`, the clause of an
    attempt that left the router's site."""
    if failed:
        why = f" ({header_safe('; '.join(causes))})" if causes else ""
        reason = f"{reason}; attempt {len(failed) + 1} after {','.join(failed)}{why}"
    return f"{reason}; {left}" if left else reason


def header_safe(text: str, limit: int = 300) -> str:
    """`text` as a header value: printable ASCII on one line, at most `limit` characters."""
    clean = "".join(c if " " <= c <= "~" else " " for c in text)
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a forwarded request ended: who answered (if anyone), with what status, after
    how many attempts, which pools failed before, and which model version answered."""

    pool: str | None
    status: int
    attempts: int
    failed: tuple[str, ...] = ()
    model: ModelVersion | None = None
    shed: bool = False  # refused for want of capacity: no pool had room
    queued_s: float = 0.0  # time spent waiting for a slot
    early_s: float = 0.0  # shed: how soon a client honoring its wait may send again


@dataclass(frozen=True, slots=True)
class Busy:
    """An attempt the pool refused for want of room (429, 503 + Retry-After)."""

    message: str


QueueWait = Callable[[float, float], float]  # (expected ms, seconds left) -> longest wait
# One attempt, called like `Forwarder._attempt` (and reporting to the routing state like it).
AttemptCall = Callable[..., Awaitable["int | str | Busy"]]
# Another way to reach some pools, for the requests of one context: the gRPC front door
# (`mpfn.functions.router.grpc_server`) forwards over gRPC to pools that speak it. None for
# an attempt (or no value): the attempt is an HTTP POST.
ATTEMPT_VIA: ContextVar[Callable[[Attempt], AttemptCall | None] | None] = ContextVar(
    "mpfn_attempt_via", default=None
)
# A pool answering these refused the router's own credentials (a caller's never reach a
# pool): a failure of that pool, so the request goes on to the next one.
REFUSED = frozenset({401, 403})


class Forwarder:
    """Sends requests to pools through one lazily created, shared `PoolClient`."""

    def __init__(
        self,
        state: RoutingState,
        *,
        connect_timeout_s: float,
        client_factory: ClientFactory | None = None,
        clock: Callable[[], float] = time.time,
        tracer: Tracer | None = None,
        admission: Admission | None = None,
        queue_wait: QueueWait | None = None,
        credentials: PoolCredentials | None = None,
        site: str | None = None,
        retry_after: RetryAfter | None = None,
    ) -> None:
        self.state = state
        self.retry_after = retry_after or RetryAfter()  # a shed request's wait
        self.site = site  # the router's site (None: none, or locality off)
        self.credentials = credentials or PoolCredentials()
        self.admission = admission  # None: no router-side limits
        self.queue_wait = queue_wait or (lambda expected_ms, left_s: left_s)
        self.clock = clock
        self.tracer = tracer  # None: tracing off, no span is made
        # connecting is bounded by the client; everything after by one timer per attempt
        self._factory = client_factory or (lambda: PoolClient(connect_timeout_s=connect_timeout_s))
        self._client: PoolClient | None = None

    @property
    def client(self) -> PoolClient:
        if self._client is None:
            self._client = self._factory()
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        self._client = None
        await self.credentials.aclose()

    async def forward(
        self,
        send: Send,
        plan: Sequence[Attempt],
        rewrite: Rewrite,
        headers: dict[str, str],
        timeout_s: float,
        reason: str,
        tenant: str = "",
        *,
        style: ErrorStyle = "v2",
        patient: bool = False,
    ) -> Outcome:
        """Take a slot (waiting briefly, or shedding), then walk `plan` until an attempt
        answers; relay that answer on `send`. `tenant` shares the waiting line fairly;
        `style` shapes the errors the router answers itself. A `patient` request (one
        held while its pool woke up, which meets a cold pool) waits for its first slot
        as long as its deadline allows."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        admission = self.admission
        queued_s = 0.0
        granted: Pool | None = None
        first = plan[0].pool if plan else None  # the pool the route reason explains
        if admission is not None and plan:
            begun = loop.time()
            head = plan[0].pool
            if admission.try_take(head):  # what `acquire` does first, without a coroutine
                granted = head
            else:
                wait_s = timeout_s if patient else self.queue_wait(plan[0].expected_ms, timeout_s)
                granted = await admission.acquire([a.pool for a in plan], tenant, wait_s)
            queued_s = loop.time() - begun
            if granted is None:
                return await self._shed(send, reason, [], queued_s, style=style)
            if granted is not head:
                plan = _granted_first(plan, granted)
        failures: list[str] = []
        failed: list[str] = []
        busy: list[str] = []
        state, clock = self.state, self.clock
        call = self._attempt if self.tracer is None else self._traced_attempt
        via = ATTEMPT_VIA.get()
        for index, attempt in enumerate(plan):
            pool = attempt.pool
            pool_id = pool.id
            remaining = deadline - loop.time()
            if remaining <= 0:
                if index == 0 and admission is not None:
                    admission.release(pool, None, 0.0)
                break
            if admission is not None and index > 0:
                wait = self.queue_wait(attempt.expected_ms, remaining)
                if await admission.acquire([pool], tenant, wait) is None:
                    busy.append(f"{pool_id}: at the router's limit")
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    admission.release(pool, None, 0.0)
                    break
            path, body = rewrite(attempt)
            answer_s = answer_wait_s(attempt, timeout_s, remaining, index == len(plan) - 1)
            left = left_for(self.site, first, pool) if first is not None else ""
            state.started(pool_id, clock())
            started = time.perf_counter()
            # set once the attempt's outcome was reported: the queue the pool reported
            reported: list[int | None] = []
            outcome: AttemptOutcome | None = None
            answered: int | str | Busy | None = None
            try:
                through = call if via is None else via(attempt) or call
                answered = await through(send, attempt, path, body, headers, remaining,
                                         started, failed, reason, reported,
                                         answer_s, failures, left)  # fmt: skip
            except (PoolClientError, TimeoutError, CredentialError) as exc:
                # Connection and TLS errors, timeouts, credentials that could not be had, a
                # buffered read that broke off: nothing reached the client yet, so the
                # next pool may answer instead.
                error = describe(exc)
                state.finished(pool_id, attempt.model, _ms(started), False, {}, clock(), error)
                answered = None
                outcome = "failure"
                failures.append(f"{pool_id}: {error}")
            except BaseException:
                if not reported:  # cancelled (client gone) or a bug: count nothing
                    state.abandoned(pool_id)
                raise
            finally:
                if admission is not None:
                    kind = outcome or _outcome_of(answered if reported else None)
                    admission.release(pool, kind, _ms(started), reported[0] if reported else None)
            if answered is None:
                failed.append(pool_id)
                continue
            if isinstance(answered, Busy):  # not a failure: no failover is counted
                busy.append(f"{pool_id}: {answered.message}")
                continue
            if isinstance(answered, str):
                failures.append(f"{pool_id}: {answered}")
                failed.append(pool_id)
                continue
            return Outcome(pool_id, answered, len(failed) + 1, tuple(failed), attempt.model,
                           queued_s=queued_s)  # fmt: skip
        if busy and not failures and loop.time() < deadline:
            return await self._shed(send, reason, busy, queued_s, tuple(failed), style=style)
        failures.extend(busy)
        return await self._give_up(send, failures, failed, reason, timeout_s, deadline, style)

    async def _shed(
        self,
        send: Send,
        reason: str,
        busy: list[str],
        queued_s: float,
        failed: tuple[str, ...] = (),
        *,
        style: ErrorStyle = "v2",
    ) -> Outcome:
        """Answer 503 + Retry-After: every pool that could serve the request is full."""
        message = "service at capacity, retry later"
        if busy:
            message += ": " + "; ".join(busy)
        headers = route_headers(f"{reason}; shed: at capacity")
        wait = self.retry_after.draw()
        headers.extend(wait.headers)
        await send_json(send, 503, encode_error(style, 503, message), headers)
        return Outcome(
            None, 503, len(failed), failed, shed=True, queued_s=queued_s, early_s=wait.early_s
        )

    async def _traced_attempt(
        self,
        send: Send,
        attempt: Attempt,
        path: str,
        body: bytes,
        headers: dict[str, str],
        *rest: Any,
    ) -> int | str | Busy:
        """`_attempt` inside a client span whose `traceparent` the backend receives."""
        assert self.tracer is not None
        return await traced_attempt(
            self.tracer,
            attempt,
            backend_url(attempt.pool, path),
            headers,
            lambda sent: self._attempt(send, attempt, path, body, sent, *rest),
        )

    async def _attempt(
        self,
        send: Send,
        attempt: Attempt,
        path: str,
        body: bytes,
        headers: dict[str, str],
        remaining: float,
        started: float,
        failed: list[str],
        reason: str,
        reported: list[int | None],
        wait_s: float | None = None,
        causes: Sequence[str] = (),
        left: str = "",
    ) -> int | str | Busy:
        """One attempt, given `remaining` seconds of the request's deadline: the status
        relayed to the client, why it failed (a retryable answer), or `Busy` when the
        pool answered that it is full. Connection errors, timeouts and credentials that
        cannot be had raise; `reported` gets an entry once the outcome went to the
        routing state.

        One timer bounds the attempt: `wait_s` (or `remaining`) for the answer's headers,
        as long again for a buffered body; a streamed body then waits at most
        `remaining` for each chunk."""
        pool = attempt.pool
        pool_id = pool.id
        state, clock = self.state, self.clock
        context: ssl.SSLContext | None = None
        server_name: str | None = None
        if needs_keys(pool):
            keys = await self.credentials.keys(pool)
            headers = keys.request_headers("POST", backend_url(pool, path), body, headers)
            context, server_name = keys.ssl, keys.server_name or None
        limit = remaining if wait_s is None else wait_s
        async with asyncio.timeout(limit) as guard:
            resp = await self.client.post(
                str(pool.endpoint), path, body, headers, ssl_context=context,
                server_hostname=server_name,
            )  # fmt: skip
            try:
                status = resp.status
                if not 200 <= status < 300:  # a 2xx is neither refused, busy nor failed
                    if status in REFUSED:
                        await resp.read()
                        error = f"HTTP {status}: the pool refused the router's credentials"
                        state.finished(pool_id, attempt.model, _ms(started), False,
                                       resp.headers, clock(), error)  # fmt: skip
                        reported.append(None)
                        return error
                    if classify(status, resp.headers) == "busy":
                        await resp.read()
                        state.abandoned(pool_id)  # backpressure: the pool is healthy, and full
                        reported.append(None)
                        return Busy(f"busy (HTTP {status})")
                    if is_failure(status):
                        text = (await resp.read())[:200].decode("utf-8", "replace")
                        error = f"HTTP {status} {text}".strip()
                        state.finished(pool_id, attempt.model, _ms(started), False,
                                       resp.headers, clock(), error)  # fmt: skip
                        reported.append(None)
                        return error
                payload = None
                if streams(resp.content_type, resp.content_length):
                    guard.reschedule(None)  # each chunk has its own wait
                else:  # a pool that stalls mid-answer: the next one
                    guard.reschedule(asyncio.get_running_loop().time() + limit)
                    payload = await resp.read()
            except BaseException:
                resp.release()
                raise
        try:
            why = with_attempts(reason, failed, causes, left) if failed or left else reason
            if payload is None:
                state.finished(pool_id, attempt.model, _ms(started), True, resp.headers, clock())
                reported.append(queued_of(resp.headers))
                await self._relay_stream(send, resp, pool_id, why, remaining)
            else:  # the answer first, then the bookkeeping
                latency_ms = _ms(started)
                try:
                    await self._relay_buffered(send, resp, pool_id, why, payload)
                finally:
                    state.finished(pool_id, attempt.model, latency_ms, True, resp.headers, clock())
                    reported.append(queued_of(resp.headers))
            return status
        finally:
            resp.release()

    async def _give_up(
        self,
        send: Send,
        failures: list[str],
        failed: list[str],
        reason: str,
        timeout_s: float,
        deadline: float,
        style: ErrorStyle = "v2",
    ) -> Outcome:
        if asyncio.get_running_loop().time() >= deadline:
            status = 504
            message = f"request deadline of {timeout_s * 1000:.0f} ms passed"
            if failures:
                message += ": " + "; ".join(failures)
        else:
            status = 503
            message = "no healthy backend: " + "; ".join(failures or ["no pool to try"])
        why = reason
        if failed:
            causes = header_safe("; ".join(failures))
            why = f"{reason}; all {len(failed)} attempts failed ({causes})"
        await send_json(send, status, encode_error(style, status, message), route_headers(why))
        return Outcome(None, status, len(failed), tuple(failed))

    async def _relay_buffered(
        self,
        send: Send,
        resp: PoolResponse,
        pool_id: str,
        reason: str,
        payload: bytes,
    ) -> None:
        headers = relay_headers(resp.raw_headers, pool_id, reason)
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _relay_stream(
        self, send: Send, resp: PoolResponse, pool_id: str, reason: str, gap_s: float
    ) -> None:
        """Relay a streamed answer chunk by chunk, waiting at most `gap_s` for each."""
        headers = relay_headers(resp.raw_headers, pool_id, reason)
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        try:
            while True:
                async with asyncio.timeout(gap_s):
                    chunk = await resp.readany()
                if not chunk:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (PoolClientError, TimeoutError) as exc:
            # The status is already on the wire: end the body, never retry.
            log.warning("stream from pool %s broke off: %s", pool_id, describe(exc))
            resp.close()
        await send({"type": "http.response.body", "body": b""})


def queued_of(headers: Mapping[str, str]) -> int | None:
    """The queue a pool reported with its answer (`x-mpfn-queued`), if it reports one,
    less the rows that ride in one batch with this answer's (`x-mpfn-batch-size` - 1): a
    batching worker collects the next batch while one runs, by design, and only what
    waits beyond that is a queue that lengthens answers."""
    raw = headers.get(QUEUED)
    if raw is None:
        return None
    try:
        queued = int(raw)
    except ValueError:
        return None
    batch = read_count(headers.get(BATCH_SIZE)) or 1
    return max(0, queued - (batch - 1))


def _granted_first(plan: Sequence[Attempt], granted: Pool) -> Sequence[Attempt]:
    """`plan` with the attempt on the pool admission granted first (order otherwise kept)."""
    if plan[0].pool.id == granted.id:
        return plan
    first = next(a for a in plan if a.pool.id == granted.id)
    return [first, *(a for a in plan if a is not first)]


def _outcome_of(answered: int | str | Busy | None) -> AttemptOutcome | None:
    """What an attempt's result tells the admission limit (None: nothing, abandoned)."""
    if answered is None:
        return None
    if isinstance(answered, Busy):
        return "busy"
    return "failure" if isinstance(answered, str) else "ok"


def answer_wait_s(attempt: Attempt, timeout_s: float, remaining: float, last: bool) -> float | None:
    """How long an attempt may wait for its answer to start (see ANSWER_WAIT_S); None for
    the plan's last attempt, which waits as long as the request's deadline allows."""
    if last:
        return None
    wait = max(
        min(ANSWER_WAIT_S, timeout_s / 3),
        ANSWER_WAIT_MIN_S,
        ANSWER_WAIT_FACTOR * attempt.expected_ms / 1000,
    )
    return min(remaining, wait)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
