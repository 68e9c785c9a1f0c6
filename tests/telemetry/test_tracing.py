"""Tracing: off by default; with an endpoint, spans reach a real OTLP/HTTP receiver and the
W3C `traceparent` links router and backend spans."""

from __future__ import annotations

from mpfn.telemetry.tracing import (
    configure_tracing,
    extract_context,
    inject_traceparent,
    otlp_endpoint,
    shutdown_tracing,
    tracer,
)
from tests.servers.otlp import Receiver
from tests.servers.otlp import otlp_receiver as otlp_receiver_at_another_port


def test_endpoint_resolution() -> None:
    assert otlp_endpoint({}) is None
    assert otlp_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}) == (
        "http://c:4318/v1/traces"
    )
    assert otlp_endpoint({"MPFN_OTLP_ENDPOINT": "http://x/v1/traces"}) == "http://x/v1/traces"


def test_spans_are_exported_and_traceparent_propagates(otlp_receiver: Receiver) -> None:
    assert configure_tracing("mpfn-test", otlp_receiver.url)
    incoming = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    with tracer().start_as_current_span(
        "route", context=extract_context(incoming), attributes={"mpfn.model": "demo"}
    ):
        outgoing: dict[str, str] = {}
        inject_traceparent(outgoing)
    shutdown_tracing()
    assert outgoing["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    spans = otlp_receiver.spans()
    (span,) = [s for s in spans if s.name == "route"]
    assert span.trace_id.hex() == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent_span_id.hex() == "b7ad6b7169203331"
    assert {a.key: a.value.string_value for a in span.attributes}["mpfn.model"] == "demo"


def test_tracing_can_be_configured_again_after_shutdown(otlp_receiver: Receiver) -> None:
    with otlp_receiver_at_another_port() as second:
        assert configure_tracing("mpfn-test", otlp_receiver.url)
        with tracer().start_as_current_span("first"):
            pass
        shutdown_tracing()
        assert configure_tracing("mpfn-test", second.url)
        with tracer().start_as_current_span("second"):
            pass
        shutdown_tracing()
        assert [s.name for s in otlp_receiver.spans()] == ["first"]
        assert [s.name for s in second.spans()] == ["second"]
