"""Tracing: off by default; with an endpoint, spans reach a real OTLP/HTTP receiver and the
W3C `traceparent` links router and backend spans."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from mpfn.telemetry.tracing import (
    configure_tracing,
    extract_context,
    inject_traceparent,
    otlp_endpoint,
    shutdown_tracing,
    tracer,
)


class _Receiver(BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        type(self).bodies.append(self.rfile.read(length))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    finally:
        server.shutdown()
        server.server_close()


def test_endpoint_resolution() -> None:
    assert otlp_endpoint({}) is None
    assert otlp_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}) == (
        "http://c:4318/v1/traces"
    )
    assert otlp_endpoint({"MPFN_OTLP_ENDPOINT": "http://x/v1/traces"}) == "http://x/v1/traces"


def test_spans_are_exported_and_traceparent_propagates(receiver: str) -> None:
    assert configure_tracing("mpfn-test", receiver)
    incoming = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    with tracer().start_as_current_span(
        "route", context=extract_context(incoming), attributes={"mpfn.model": "demo"}
    ):
        outgoing: dict[str, str] = {}
        inject_traceparent(outgoing)
    shutdown_tracing()
    assert outgoing["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    spans = []
    for body in _Receiver.bodies:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                spans.extend(ss.spans)
    (span,) = [s for s in spans if s.name == "route"]
    assert span.trace_id.hex() == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent_span_id.hex() == "b7ad6b7169203331"
    assert {a.key: a.value.string_value for a in span.attributes}["mpfn.model"] == "demo"
