"""Observability helpers: OpenTelemetry tracing (off by default), Prometheus conventions,
CloudWatch embedded-metric-format lines and Pushgateway pushes."""
