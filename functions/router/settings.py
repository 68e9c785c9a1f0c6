"""Router settings: timeouts, limits, intervals and routing knobs, read from the environment.

Only plain values live here; nothing in this module opens a connection or reads the store.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from mpfn.routing import STRATEGIES, BreakerConfig, RoutingConfig
from mpfn.routing.admission import AdmissionConfig
from mpfn.routing.tuning import SITE_RULE, is_site_name

AUTH_MODES = ("none", "keys")


@dataclass(frozen=True, slots=True)
class RouterSettings:
    """Tunables of one router instance.

    `refresh_ttl_s`: how old the in-memory state snapshot may get before it is refreshed
    (`stats/` snapshots are re-read at the same pace).
    `usage_flush_s`: how often per-minute usage counts are written to the store.
    `max_body_bytes`: largest request body accepted (413 above it); the Lambda handler
      lowers the default to fit Lambda's invoke payload cap.
    `streaming`: relay OpenAI requests asking for `"stream": true` (SSE); off where
      answers cannot stream (the Lambda handler's default: a buffered Function URL),
      such a request gets a 400 before any pool is contacted.
    `connect_timeout_s`: per-attempt connect timeout towards a backend.
    `request_timeout_s`: whole-request deadline when no policy sets `timeout_ms`.
    `instance_id`: names this router in pushed metrics and usage keys (usage keys add a
      random part per process); random per process when empty.
    `strategy`: `mpfn` (filter -> score -> pick), or a baseline for comparisons:
    `round-robin`, `random`, `least-loaded`.
    `max_attempts`: most pools one request is sent to (failover included).
    `max_error_rate`: pools whose recent failure rate is above this rank after all
    others (1.0: failures only count through failover and the circuit breaker).
    `breaker_failures` / `breaker_cooldown_s`: consecutive failures that open a pool's
    circuit, and how long it stays open before a half-open probe.
    `route_key_header`: request header (lower-case, `x-mpfn-...`) whose value keeps a
    caller on one version of a version split (sticky); without it versions are drawn at
    random by weight.
    `seed`: seeds the router's random choices (version draws, `random` strategy); -1 for
    a fresh seed per process.
    `auth`: `none`, or `keys` (a bearer API key from `keys/` is required on model and
    OpenAI routes). `metrics_auth`: the same for `GET /metrics`.
    `max_elements`: most tensor elements a v2 infer request may declare in its input
    shapes (413 above; 0 = no limit).
    `pushgateway_url`: push metrics to this Prometheus Pushgateway at every flush
    (also read from `MPFN_PUSHGATEWAY_URL`).
    `emf`: write CloudWatch embedded-metric-format lines to stdout at every flush
    (defaults to on under AWS Lambda when no Pushgateway is configured).
    `admission`: bound each pool's in-flight requests with an adaptive limit, queue the
    excess briefly and shed the rest with 503 + Retry-After (`off`: send everything).
    `hold_early_retries`: a connection refused several times in a row, each time sent
    again before the last refusal's `Retry-After`, gets its next refusal once that has
    passed (`mpfn.functions.router.earlyretry`; off: every refusal at once).
    `retry_spread`: a shed request's `retry-after-ms` is drawn evenly from 1 s +- this
    share of it (`Retry-After` says 1), so clients refused together come back apart
    (`mpfn.functions.router.retryafter`; 0: always exactly 1 s).
    `queue_min_ms` / `queue_factor`: a request waits for a slot at most
    max(queue_min_ms, queue_factor x its expected latency), never past its deadline.
    `max_queue`: most requests waiting for a slot at once (each tenant, an API key or
    else a model, may hold its share); `line_per_slot`: most waiting requests per slot of
    the pools they wait for (more are shed at once). `limit_per_capacity`: a pool's first
    limit per unit of its declared `capacity`; `max_limit`: the highest a limit may grow.
    `pool_queue_target`: requests a pool may report waiting behind its running ones
    (`x-mpfn-queued`, less the rows collected for its next batch) before its limit goes
    down; each one waiting there lengthens answers.
    `secret_ttl_s`: how long a resolved pool secret (token, CA, client certificate) is
    used before it is fetched again: a rotated secret is picked up within this time.
    `grpc_port`: also serve the v2 gRPC API (`inference.GRPCInferenceService`) on this
    port, on `grpc_host` (`functions.router.grpc_server`; 0: off). Only where the router
    runs as a server with a lifespan (uvicorn: Cloud Run, Kubernetes, `mpfn up`).
    `processes`: how many processes serve this router's port (set by the entry point's
    `--workers`): each admits its share of every pool (limits, their ceiling and the
    line divided by it). `metrics_dir`: a private directory where each process answers
    for its metrics, so that `/metrics` from any of them covers all
    (`functions.router.siblings`; empty: this process only).
    `wake`: when every pool that could serve a request is at zero replicas, ask one for a
    replica and hold the request within its deadline (`functions.router.wake`);
    `max_waking`: most requests held for waking pools at once (more get 503 at once).
    """

    refresh_ttl_s: float = 5.0
    usage_flush_s: float = 10.0
    max_body_bytes: int = 64 * 1024 * 1024
    streaming: bool = True
    connect_timeout_s: float = 2.0
    request_timeout_s: float = 30.0
    instance_id: str = ""
    strategy: str = "mpfn"
    max_attempts: int = 4
    max_error_rate: float = 0.2
    breaker_failures: int = 5
    breaker_cooldown_s: float = 10.0
    route_key_header: str = "x-mpfn-route-key"
    seed: int = -1
    auth: str = "none"
    metrics_auth: str = "none"
    max_elements: int = 64 * 1024 * 1024
    pushgateway_url: str = ""
    emf: bool = False
    admission: bool = True
    hold_early_retries: bool = True
    retry_spread: float = 0.5
    queue_min_ms: float = 20.0
    queue_factor: float = 4.0
    max_queue: int = 1024
    line_per_slot: float = 0.5
    limit_per_capacity: float = 2.0
    max_limit: float = 256.0
    pool_queue_target: int = 0
    secret_ttl_s: float = 300.0
    site: str = ""
    locality: bool = True
    cross_site_ms: float = 30.0
    cross_site_cost_per_1k: float = 0.0
    wake: bool = True
    max_waking: int = 256
    grpc_port: int = 0
    grpc_host: str = "127.0.0.1"
    processes: int = 1
    metrics_dir: str = ""

    def __post_init__(self) -> None:
        for name in ("refresh_ttl_s", "usage_flush_s", "connect_timeout_s", "request_timeout_s",
                     "secret_ttl_s"):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.max_body_bytes <= 0:
            raise ValueError("max_body_bytes must be > 0")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}")
        if not 0 <= self.grpc_port <= 65535:
            raise ValueError("grpc_port must be a port number (0 = off)")
        if self.processes < 1:
            raise ValueError("processes must be >= 1")
        if self.max_waking < 0:
            raise ValueError("max_waking must be >= 0")
        if self.max_attempts < 1 or self.breaker_failures < 1:
            raise ValueError("max_attempts and breaker_failures must be >= 1")
        if not 0.0 <= self.max_error_rate <= 1.0:
            raise ValueError("max_error_rate must be in [0, 1]")
        if self.breaker_cooldown_s < 0:
            raise ValueError("breaker_cooldown_s must be >= 0")
        key = self.route_key_header
        if not key.startswith("x-mpfn-") or key != key.lower():
            raise ValueError("route_key_header must be a lower-case header name starting x-mpfn-")
        for name in ("auth", "metrics_auth"):
            if getattr(self, name) not in AUTH_MODES:
                raise ValueError(f"{name} must be one of {', '.join(AUTH_MODES)}")
        if self.max_elements < 0:
            raise ValueError("max_elements must be >= 0")
        if min(self.queue_min_ms, self.queue_factor, self.max_queue, self.line_per_slot) < 0:
            raise ValueError("queue_min_ms, queue_factor, max_queue, line_per_slot must be >= 0")
        if self.limit_per_capacity <= 0 or self.max_limit < 1:
            raise ValueError("limit_per_capacity must be > 0 and max_limit >= 1")
        if not 0.0 <= self.retry_spread < 1.0:
            raise ValueError("retry_spread must be in [0, 1)")
        if self.pool_queue_target < 0:
            raise ValueError("pool_queue_target must be >= 0")
        if self.site and not is_site_name(self.site):
            raise ValueError(f"site must be a site name ({SITE_RULE}), not {self.site!r}")
        for name in ("cross_site_ms", "cross_site_cost_per_1k"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0")
        if self.pushgateway_url and not self.pushgateway_url.startswith(("http://", "https://")):
            raise ValueError("pushgateway_url must be an http:// or https:// URL")

    @property
    def needs_keys(self) -> bool:
        """Whether API keys must be read from the store."""
        return "keys" in (self.auth, self.metrics_auth)

    @property
    def routing_config(self) -> RoutingConfig:
        return RoutingConfig(
            max_attempts=self.max_attempts,
            max_error_rate=self.max_error_rate,
            site=self.site or None,
            locality=self.locality,
            cross_site_ms=self.cross_site_ms,
            cross_site_cost_per_1k=self.cross_site_cost_per_1k,
        )

    @property
    def admission_config(self) -> AdmissionConfig:
        share = self.processes
        return AdmissionConfig(
            per_capacity=self.limit_per_capacity / share,
            max_limit=max(self.max_limit / share, 1.0),
            queue_target=self.pool_queue_target,
        )

    @property
    def line_bound(self) -> int:
        """Most requests this process lets wait for a slot: its share of `max_queue`."""
        return -(-self.max_queue // self.processes)

    def queue_wait_s(self, expected_ms: float, remaining_s: float) -> float:
        """How long a request expected to take `expected_ms` may wait for a slot."""
        wait_ms = max(self.queue_min_ms, self.queue_factor * expected_ms)
        return min(wait_ms / 1000.0, remaining_s)

    @property
    def breaker_config(self) -> BreakerConfig:
        return BreakerConfig(
            failure_threshold=self.breaker_failures, cooldown_s=self.breaker_cooldown_s
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RouterSettings:
        """Read `MPFN_ROUTER_<FIELD>` variables (e.g. `MPFN_ROUTER_MAX_BODY_BYTES`)."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f"MPFN_ROUTER_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            try:
                if f.type in ("float", float):
                    values[f.name] = float(raw)
                elif f.type in ("int", int):
                    values[f.name] = int(raw)
                elif f.type in ("bool", bool):
                    values[f.name] = parse_bool(raw)
                else:
                    values[f.name] = raw
            except ValueError:
                raise ValueError(
                    f"MPFN_ROUTER_{f.name.upper()}={raw!r}: expected a {f.type}"
                ) from None
        if "pushgateway_url" not in values and env.get("MPFN_PUSHGATEWAY_URL"):
            values["pushgateway_url"] = env["MPFN_PUSHGATEWAY_URL"]
        if "emf" not in values:
            on_lambda = bool(env.get("AWS_LAMBDA_FUNCTION_NAME"))
            values["emf"] = on_lambda and not values.get("pushgateway_url")
        return cls(**values)  # type: ignore[arg-type]


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)
