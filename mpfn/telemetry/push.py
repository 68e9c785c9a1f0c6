"""Push a process's metrics to a Prometheus Pushgateway (for hosts nothing scrapes).

`Pusher.push` replaces the metrics of its group (`job` + grouping key, e.g. the
instance) with the registry's current values (HTTP PUT), so repeating a push never
double counts. It blocks: async callers run it in a worker thread. A failed push is
logged and reported, never raised: metrics must not break serving. The HTTP call goes
through prometheus-client's injectable `handler`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import default_handler, push_to_gateway

log = logging.getLogger("mpfn.telemetry")

Handler = Callable[..., Callable[[], None]]


class Pusher:
    """Pushes one registry to one Pushgateway group."""

    def __init__(
        self,
        registry: CollectorRegistry,
        url: str,
        *,
        job: str,
        grouping_key: Mapping[str, str] | None = None,
        timeout_s: float = 5.0,
        handler: Handler = default_handler,
    ) -> None:
        self.registry = registry
        self.url = url
        self.job = job
        self.grouping_key = dict(grouping_key or {})
        self.timeout_s = timeout_s
        self.handler = handler
        self.pushed = 0
        self.failed = 0

    def push(self) -> bool:
        """Send the registry now; False (and a log line) when the gateway did not take it."""
        try:
            push_to_gateway(
                self.url,
                job=self.job,
                registry=self.registry,
                grouping_key=self.grouping_key,
                timeout=self.timeout_s,
                handler=self.handler,
            )
        except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
            self.failed += 1
            log.warning("metrics push to %s failed: %s", self.url, exc)
            return False
        self.pushed += 1
        return True
