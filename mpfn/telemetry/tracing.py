"""OpenTelemetry tracing for mpfn processes: off by default, OTLP/HTTP when configured.

`configure_tracing()` makes an SDK tracer provider with a batching OTLP exporter only
when an endpoint is configured (`MPFN_OTLP_ENDPOINT`, or the standard
`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); otherwise every span
is OpenTelemetry's no-op span and costs next to nothing. `tracer()` hands out tracers of
the provider configured now; the process-wide OpenTelemetry provider is left alone (it
can be set only once), so tracing can be configured again after `shutdown_tracing()`.
`inject_traceparent` and `extract_context` carry W3C `traceparent` across the router ->
backend hop.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, MutableMapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from mpfn.extras import install_hint

log = logging.getLogger("mpfn.telemetry")
_PROPAGATOR = TraceContextTextMapPropagator()
_configured: dict[str, Any] = {}


def otlp_endpoint(env: Mapping[str, str] | None = None) -> str | None:
    """The traces endpoint from the environment, or None (tracing off)."""
    env = os.environ if env is None else env
    explicit = env.get("MPFN_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if explicit:
        return explicit
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return f"{base.rstrip('/')}/v1/traces" if base else None


def configure_tracing(service_name: str, endpoint: str | None = None) -> bool:
    """Install the OTLP exporter once per process; returns whether tracing is on."""
    endpoint = endpoint or otlp_endpoint()
    if not endpoint:
        return False
    if _configured.get("endpoint") == endpoint:
        return True
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:  # tracing must never stop a process from serving
        log.warning("tracing to %s is off: %s (%s)", endpoint, exc, install_hint("tracing"))
        return False

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    shutdown_tracing()  # a different endpoint: the previous exporter flushes and stops
    _configured.update(endpoint=endpoint, provider=provider)
    return True


def flush_tracing(timeout_ms: int = 5000) -> None:
    """Export finished spans now (hosts frozen between requests, such as Lambda)."""
    provider = _configured.get("provider")
    if provider is not None:
        provider.force_flush(timeout_ms)


def shutdown_tracing() -> None:
    """Flush and stop the exporter (call on process shutdown)."""
    provider = _configured.pop("provider", None)
    _configured.pop("endpoint", None)
    if provider is not None:
        provider.shutdown()


def tracer(name: str = "mpfn") -> trace.Tracer:
    """A tracer of the configured provider; OpenTelemetry's global one (no-op unless the
    application installed its own) when tracing is off."""
    provider = _configured.get("provider")
    if provider is not None:
        tracer_: trace.Tracer = provider.get_tracer(name)
        return tracer_
    return trace.get_tracer(name)


def extract_context(headers: Mapping[str, str]) -> Context:
    """The parent context from an incoming `traceparent` header (if any)."""
    return _PROPAGATOR.extract(carrier=dict(headers))


def inject_traceparent(carrier: MutableMapping[str, str], context: Context | None = None) -> None:
    """Write the current span's `traceparent` (and `tracestate`) into `carrier`."""
    _PROPAGATOR.inject(carrier, context=context)
