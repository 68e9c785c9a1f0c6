"""Observability helpers: OpenTelemetry tracing (off by default)."""
