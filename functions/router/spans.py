"""Traces of routed requests: one server span per request, one client span per attempt.

Used only when tracing is configured (`mpfn.telemetry.tracing`, off by default); with it
off the hot path tests one attribute and creates nothing. The request's span continues
the caller's W3C trace (`traceparent`/`tracestate`), and carries the routing outcome
(model, version, pool, route reason, attempts, status). Each attempt is a child span, and
its `traceparent` replaces the caller's on the forwarded request, so the backend's spans
hang under the attempt that reached it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from mpfn.routing import Attempt
from mpfn.telemetry.tracing import extract_context, inject_traceparent

_TRACE_HEADERS = (b"traceparent", b"tracestate")

R = TypeVar("R")


@contextmanager
def request_span(
    tracer: Tracer, name: str, headers: Iterable[tuple[bytes, bytes]]
) -> Iterator[Span]:
    """The server span of one routed request, current while the request is served."""
    carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k in _TRACE_HEADERS}
    context = extract_context(carrier) if carrier else None
    with tracer.start_as_current_span(
        name, context=context, kind=SpanKind.SERVER, attributes={"http.request.method": "POST"}
    ) as span:
        yield span


def annotate(
    span: Span,
    *,
    model: str,
    version: str | None,
    pool: str,
    reason: str,
    attempts: int,
    status: int,
) -> None:
    """Record how the request was routed and answered on its span."""
    span.set_attribute("mpfn.model", model[:200])
    if version is not None:
        span.set_attribute("mpfn.model.version", version)
    span.set_attribute("mpfn.pool", pool)
    span.set_attribute("mpfn.route.reason", reason)
    span.set_attribute("mpfn.attempts", attempts)
    if status:
        span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))


async def traced_attempt(
    tracer: Tracer,
    attempt: Attempt,
    url: str,
    headers: dict[str, str],
    call: Callable[[dict[str, str]], Awaitable[R]],
) -> R:
    """Run one attempt (`call` with the headers to send) inside its own client span;
    the headers sent carry that span's `traceparent`. `call` returns the HTTP status
    (recorded), an error message (the span's error) or another outcome (not recorded)."""
    model = attempt.model
    attributes: dict[str, str] = {
        "mpfn.pool": attempt.pool.id,
        "mpfn.model": model.name,
        "mpfn.model.version": model.version,
        "url.full": url,
        "http.request.method": "POST",
    }
    with tracer.start_as_current_span(
        f"POST {attempt.pool.id}", kind=SpanKind.CLIENT, attributes=attributes
    ) as span:
        sent = dict(headers)
        inject_traceparent(sent)
        result = await call(sent)
        if isinstance(result, str):
            span.set_attribute("mpfn.error", result[:200])
            span.set_status(Status(StatusCode.ERROR, result[:200]))
        elif isinstance(result, int):
            span.set_attribute("http.response.status_code", result)
        return result
