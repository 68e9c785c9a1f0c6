"""The forwarding routes as a thin raw-ASGI layer: v2 infer, KServe v1 predict and the
OpenAI POSTs.

These requests never go through a web framework. `RouterApp` (the request pipeline) has
normalised the path, matched it here (`match_route`) and refreshed the snapshot when due;
then the API key is checked when keys are on (`RouterRuntime.admit`, before the body is
read), the body read once (bounded by `max_body_bytes`), an OpenAI body parsed once for
its `model` (and, with `streaming` off, refused when it asks for a stream), the tensor
elements a v2 request declares counted from its JSON header (`max_elements`), the
routing hints read from the headers, one routing decision made (`RouterRuntime.decide`)
and the forwarder walks its plan with the body unchanged (only a fallback model changes
the path, or the `model` of an OpenAI body). Each request is counted once in the
metrics and, with tracing on, gets a span. No store I/O happens here. A request refused
before routing, from a connection refused several times in a row, each time again
before the last refusal's `Retry-After`, gets its refusal when that `Retry-After` has
passed (`mpfn.functions.router.earlyretry`).

KServe v1 `POST /v1/models/{m}:predict` is a v2 infer in disguise: its `instances` become
a v2 request on the model's single input (`mpfn.protocol.kserve_v1`), routed like any v2
request, and the answer becomes `{"predictions": [...]}`. Errors the router answers
itself are OpenAI-shaped on OpenAI routes, `{"error": "..."}` elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry.trace import Span
from starlette.types import Message, Receive, Scope, Send

from mpfn.documents import ModelVersion, Pool
from mpfn.functions.router.admission import Admission
from mpfn.functions.router.earlyretry import connection_of
from mpfn.functions.router.errors import (
    PREDICT_SUFFIX,
    ErrorStyle,
    RouteError,
    error_body,
    route_error_body,
    send_json,
)
from mpfn.functions.router.forward import route_headers, split_headers
from mpfn.functions.router.guard import check_model, scoped_plan
from mpfn.functions.router.limits import check_elements
from mpfn.functions.router.runtime import RouterRuntime
from mpfn.functions.router.spans import annotate, request_span
from mpfn.functions.router.usage import TokenTap
from mpfn.routing import NO_HINTS, Attempt, Decision, HintError, parse_hints
from mpfn.routing.decide import ASLEEP, RouteRequest
from mpfn.routing.serving import Protocol, infer_path, valid_name
from mpfn.routing.snapshot import ANY_VERSION, Snapshot
from mpfn.telemetry.metrics import NO_POOL, UNKNOWN

log = logging.getLogger("mpfn.router")

OPENAI_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings"})
STREAMING_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})  # `"stream": true`
NO_STREAMING = (
    "streaming is not available on this deployment (its answers are buffered, as behind an "
    'AWS Lambda Function URL): send "stream": false, or use a router that streams '
    "(Cloud Run, Kubernetes, uvicorn)"
)
LOAD_MS_HEADER = b"x-mpfn-load-ms"
AT_CAPACITY = "at_capacity"  # the rejection of a shed request
V1_MODELS = "/v1/models/"
# Headers of a v2 answer that do not describe the `{"predictions": ...}` made from it.
PREDICT_DROP = frozenset(
    {b"content-type", b"content-length", b"content-encoding", b"inference-header-content-length"}
)


@dataclass(frozen=True, slots=True)
class Route:
    """A forwarding request: protocol, model (None: named in the body), backend path;
    `predict`: a KServe v1 `:predict` request (sent on as a v2 infer on `path`)."""

    protocol: Protocol
    model: str | None
    version: str | None
    path: str
    predict: bool = False

    @property
    def style(self) -> ErrorStyle:
        """The shape of the errors the router answers on this route."""
        return "openai" if self.protocol == "openai" else "v2"

    @property
    def template(self) -> str:
        """The route's low-cardinality name (`POST /v2/models/{model}/infer`), for spans."""
        if self.protocol == "openai":
            return f"POST {self.path}"
        if self.predict:
            return "POST /v1/models/{model}:predict"
        if self.version is None:
            return "POST /v2/models/{model}/infer"
        return "POST /v2/models/{model}/versions/{version}/infer"


def wakeable(decision: Decision, snapshot: Snapshot, home: str | None) -> list[Pool]:
    """The asleep pools left out of `decision` that may be woken, best first: the
    router's own site, then the cheapest."""
    asleep = {e.pool for e in decision.exclusions if e.reason == ASLEEP}
    pools = [
        p for p in snapshot.pools if p.id in asleep and p.scaling is not None and p.scaling.wake
    ]
    return sorted(pools, key=lambda p: (home is not None and p.site != home, p.cost_per_hour, p.id))


def shed_early(
    admission: Admission, snapshot: Snapshot, protocol: Protocol, model: str, tenant: str
) -> None:
    """Refuse a request before routing it when admission would shed it anyway: every pool
    serving `model` is full and `tenant` has no place in line (models with fallbacks are
    routed, since a fallback's pools may have room). Shedding costs far less than
    routing, so a flood of requests past capacity does not eat the capacity it is
    refused to protect."""
    pools = snapshot.pools_for(model, protocol)
    if not pools or snapshot.fallbacks(model) or not admission.must_shed(pools, tenant):
        return
    raise RouteError(
        503,
        f"service at capacity, retry later: every pool serving model {model!r} is at the "
        "router's limit",
        f"not routed; shed: at capacity ({len(pools)} of {len(pools)} pools full)",
        rejection=AT_CAPACITY,  # `Forwarder.retry_after` draws its wait when it is sent
    )


def match_route(method: str, path: str) -> Route | None:
    """Recognise a forwarding route; None for anything the FastAPI app answers."""
    if method != "POST":
        return None
    if path in OPENAI_PATHS:
        return Route("openai", None, None, path)
    if path.startswith(V1_MODELS) and path.endswith(PREDICT_SUFFIX):
        name = path[len(V1_MODELS) : -len(PREDICT_SUFFIX)]
        if name and "/" not in name:
            return Route("v2", name, None, f"/v2/models/{name}/infer", predict=True)
        return None
    if not (path.startswith("/v2/models/") and path.endswith("/infer")):
        return None
    parts = path[len("/v2/models/") : -len("/infer")].split("/")
    if len(parts) == 1 and parts[0]:
        return Route("v2", parts[0], None, path)
    if len(parts) == 3 and parts[1] == "versions" and parts[0] and parts[2]:
        return Route("v2", parts[0], parts[2], path)
    return None


def content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                raise RouteError(400, "Content-Length is not a number") from None
            if length < 0:
                raise RouteError(400, "Content-Length is negative")
            return length
    return None


class ClientGone(Exception):
    """The client disconnected before its body arrived."""


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body; 413 as soon as it exceeds `limit` bytes."""
    announced = content_length(scope)
    if announced is not None and announced > limit:
        raise RouteError(413, f"request body of {announced} bytes exceeds the {limit}-byte limit")
    first = b""
    chunks: list[bytes] | None = None
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RouteError(413, f"request body exceeds the {limit}-byte limit")
        if chunks is None and not first:
            first = chunk
        else:
            if chunks is None:
                chunks = [first]
            chunks.append(chunk)
        if not message.get("more_body", False):
            return first if chunks is None else b"".join(chunks)


def model_in_body(body: bytes, *, stream_ok: bool = True) -> str:
    """The `model` of an OpenAI request body; 400 when the body has none, or when it asks
    for a stream (`"stream": true`) and `stream_ok` is false."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RouteError(400, "request body is not valid JSON", code="invalid_json") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("model"), str):
        raise RouteError(
            400,
            "request body must be a JSON object with a string 'model'",
            param="model",
            code="missing_required_parameter",
        )
    if not stream_ok and payload.get("stream") is True:
        raise RouteError(400, NO_STREAMING, "rejected: streaming not available", param="stream")
    return payload["model"]


def with_model(body: bytes, model: str) -> bytes:
    """An OpenAI request body asking for `model` instead (for a fallback model)."""
    payload = json.loads(body)
    payload["model"] = model
    return json.dumps(payload, separators=(",", ":")).encode()


class PredictAnswer:
    """Sends the v2 answer of a `:predict` request on as KServe v1 `{"predictions": ...}`
    (any other status unchanged); a body that is not a v2 response becomes a 502."""

    def __init__(self, send: Send) -> None:
        self.downstream = send
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            if message["status"] == 200:
                self.start = message  # held until the whole body is here
                return
        elif self.start is not None:
            self.chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                await self._translate(self.start, b"".join(self.chunks))
            return
        await self.downstream(message)

    async def _translate(self, start: Message, body: bytes) -> None:
        raw: list[tuple[bytes, bytes]] = start["headers"]
        length = next((v for k, v in raw if k == b"inference-header-content-length"), None)
        status = 200
        from mpfn.protocol.errors import ProtocolError  # numpy: this route only
        from mpfn.protocol.kserve_v1 import infer_to_predictions

        try:
            out = infer_to_predictions(body, length)
        except ProtocolError as exc:
            status = 502
            out = error_body(f"the backend's answer is not a v2 inference response: {exc}")
        headers = [(k, v) for k, v in raw if k not in PREDICT_DROP]
        headers += [(b"content-type", b"application/json"),
                    (b"content-length", str(len(out)).encode())]  # fmt: skip
        await self.downstream({"type": "http.response.start", "status": status, "headers": headers})
        await self.downstream({"type": "http.response.body", "body": out})


def predict_body(
    body: bytes, model: str, versions: Mapping[str, ModelVersion], latest: str
) -> bytes:
    """The v2 infer body of a `:predict` request for `model` (its single input)."""
    doc = versions.get(latest) or next(iter(versions.values()))
    if len(doc.inputs) != 1:
        raise RouteError(
            400,
            f"KServe v1 predict needs a model with exactly one input; {model!r} has "
            f"{len(doc.inputs)}: use /v2/models/{model}/infer",
        )
    try:  # numpy: this route only
        from mpfn.protocol.errors import ProtocolError
        from mpfn.protocol.kserve_v1 import predict_to_infer
    except ImportError:  # a router package without numpy (the Lambda zip)
        raise RouteError(501, "KServe v1 predict is not served here: use the v2 route") from None
    try:
        return predict_to_infer(body, doc.inputs[0])
    except ProtocolError as exc:
        raise RouteError(exc.status, exc.message) from None


class Exchange:
    """What one routed request became, for its metrics and span (one per request)."""

    __slots__ = ("answered", "attempts", "failed", "load_ms", "model", "pool", "queued_s",
                 "reason", "relay", "requested", "send_downstream", "status",
                 "version")  # fmt: skip

    def __init__(self, send: Send, requested: str | None) -> None:
        self.send_downstream = send
        self.requested = requested or ""  # the name asked for (spans only)
        self.model = UNKNOWN  # metric label: a name the registry knows, else _unknown
        self.pool = NO_POOL
        self.status = 0  # 0: no answer started
        self.load_ms: str | None = None
        self.failed: tuple[str, ...] = ()
        self.version: str | None = None
        self.reason = ""
        self.attempts = 0
        self.answered: str | None = None  # the model whose version answered
        self.relay: Send = self.send  # where the forwarder sends a pool's answer
        self.queued_s = 0.0

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            for name, value in message["headers"]:
                if name == LOAD_MS_HEADER:
                    self.load_ms = value.decode("latin-1")
        await self.send_downstream(message)


class ForwardingRoutes:
    """Serves the forwarding routes; `RouterApp` has normalised the path and refreshed
    the snapshot when due."""

    def __init__(self, runtime: RouterRuntime) -> None:
        self.runtime = runtime

    async def handle(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        tracer = self.runtime.tracer
        if tracer is None:
            await self._serve(route, scope, receive, send, None)
            return
        with request_span(tracer, route.template, scope["headers"]) as span:
            await self._serve(route, scope, receive, send, span)

    async def _serve(
        self, route: Route, scope: Scope, receive: Receive, send: Send, span: Span | None
    ) -> None:
        metrics = self.runtime.metrics
        ex = Exchange(send, route.model)
        if route.predict:  # the v2 answer is translated before Exchange counts its status
            ex.relay = PredictAnswer(ex.send).send
        tap = TokenTap(ex.relay) if route.protocol == "openai" else None  # usage's tokens
        if tap is not None:
            ex.relay = tap.send
        metrics.inflight += 1
        started = time.perf_counter()
        try:
            await self._handle(route, scope, receive, ex)
        except RouteError as exc:
            if exc.rejection:
                metrics.reject(exc.rejection)
            ex.reason = exc.reason
            early = self.runtime.early_retries
            shed = exc.rejection == AT_CAPACITY
            wait = self.runtime.forwarder.retry_after.draw() if shed else None
            connection = connection_of(scope.get("client")) if shed and early is not None else None
            if early is not None and connection is not None:
                hold_s = early.refusing(connection)
                if hold_s > 0:  # in a row, each sent before the last one's Retry-After
                    metrics.held_refusals.inc()
                    ex.reason += f"; held {hold_s * 1000:.0f} ms: sent before Retry-After"
                    await asyncio.sleep(hold_s)
            headers = route_headers(ex.reason)
            headers.extend(exc.headers)
            if wait is not None:
                headers.extend(wait.headers)
            await send_json(ex.send, exc.status, route_error_body(route.style, exc), headers)
            if early is not None:
                early.refused(connection, None if wait is None else wait.early_s)
        except ClientGone:
            return
        except Exception:
            ex.status = ex.status or 502  # RouterApp answers 502 if nothing was sent
            raise
        finally:
            metrics.inflight -= 1
            if ex.status:
                seconds = time.perf_counter() - started
                metrics.observe(ex.model, ex.pool, ex.status, seconds, ex.failed, ex.load_ms)
                if route.protocol == "v2" and ex.model != UNKNOWN:
                    self._count(route, ex, seconds)
                if ex.pool != NO_POOL and ex.model != UNKNOWN:
                    tokens = (tap.prompt_tokens, tap.completion_tokens) if tap else (0, 0)
                    self.runtime.usage.served(ex.model, ex.pool, *tokens)
            if span is not None:
                annotate(span, model=ex.requested, version=ex.version, pool=ex.pool,
                         reason=ex.reason, attempts=ex.attempts, status=ex.status)  # fmt: skip

    def _count(self, route: Route, ex: Exchange, seconds: float) -> None:
        """Count a finished v2 request of a registered model in the per-version stats."""
        model = ex.model
        version = ex.version if ex.answered == model else route.version
        if version is None:
            version = self.runtime.snapshot.latest.get(model)
        if version is not None:
            ok = 200 <= ex.status < 300
            self.runtime.stats.record(model, version, ok, seconds, ex.queued_s)

    async def _handle(self, route: Route, scope: Scope, receive: Receive, ex: Exchange) -> None:
        runtime = self.runtime
        settings = runtime.settings
        key = await runtime.admit(route.path, scope["headers"])
        body = await read_body(scope, receive, settings.max_body_bytes)
        if route.model is not None:
            model = route.model
        else:
            stream_ok = settings.streaming or route.path not in STREAMING_PATHS
            model = model_in_body(body, stream_ok=stream_ok)
        ex.requested = model
        snapshot = runtime.snapshot
        if not snapshot.loaded:
            reason = runtime.store_error or "not loaded yet"
            raise RouteError(503, f"model registry unavailable: {reason}")
        if key is not None and route.model is None:
            check_model(key, model)  # the model an OpenAI body names
        if not valid_name(model) or (route.version is not None and not valid_name(route.version)):
            raise RouteError(404, f"unknown model {model!r}", param="model", code="model_not_found")
        versions = snapshot.versions_for(model, route.protocol)
        if versions is None:
            raise RouteError(404, f"unknown model {model!r}", param="model", code="model_not_found")
        ex.model = model
        if route.version is not None and route.version not in versions:
            raise RouteError(404, f"model {model!r} has no version {route.version!r}")
        runtime.usage.add(model)  # demand, whether served or shed
        tenant = key.id if key is not None else model  # the waiting line's tenant
        if runtime.admission is not None:
            shed_early(runtime.admission, snapshot, route.protocol, model, tenant)
        headers, hint_headers = split_headers(scope["headers"])
        if route.predict:
            body = predict_body(body, model, versions, snapshot.latest.get(model, ""))
            headers.pop("accept-encoding", None)  # the answer is read here, not relayed
            headers.pop("content-encoding", None)
            headers.pop("inference-header-content-length", None)
            headers["content-type"] = "application/json"
        if settings.max_elements and route.protocol == "v2":
            check_elements(body, headers, settings.max_elements, settings.max_body_bytes)
        route_key = None
        hints = NO_HINTS
        if hint_headers:
            route_key = hint_headers.get(settings.route_key_header)
            try:
                hints = parse_hints(hint_headers)
            except HintError as exc:
                raise RouteError(400, str(exc), "rejected: malformed routing hint") from None
        request = RouteRequest(route.protocol, model, route.version, hints, route_key)
        try:
            decision = runtime.decide(request)
        except HintError as exc:
            raise RouteError(400, str(exc), "rejected: routing hint not allowed") from None
        timeout_s = decision.limits.timeout_ms / 1000.0
        woke = ""
        if not decision.plan and runtime.waker is not None:
            sleeping = wakeable(decision, snapshot, runtime.routing_config.home)
            if sleeping:  # nothing awake can serve it: wake a pool, hold the request
                woken = await runtime.waker.wait(sleeping, timeout_s)
                timeout_s = max(timeout_s - woken.wait_ms / 1000.0, 0.001)
                woke = f"; woke pool {woken.pool} ({woken.wait_ms:.0f} ms)"
                decision = runtime.decide(request)
        runtime.routing.commit(decision)
        ex.reason = reason = decision.route_reason + woke  # a property: built once
        if not decision.plan:
            excluded = "; ".join(f"{e.pool}: {e.reason}" for e in decision.exclusions)
            raise RouteError(
                503,
                f"no pool can serve model {model!r} now" + (f" ({excluded})" if excluded else ""),
                reason,
            )
        plan = decision.plan if key is None else scoped_plan(key, decision.plan, model)
        policy = snapshot.policy_for(model)
        split = route.version is None and policy is not None and bool(policy.version_weights)
        path = route.path

        def rewrite(attempt: Attempt) -> tuple[str, bytes]:
            mv = attempt.model
            if route.protocol == "openai":  # the pool knows the model by its served name
                served = mv.labels.get("served_model", mv.name)
                return path, (body if served == model else with_model(body, served))
            if mv.name == model:
                if split and mv.version != ANY_VERSION:
                    return infer_path(model, mv.version), body
                return path, body
            other = snapshot.policy_for(mv.name)
            pinned = other is not None and bool(other.version_weights)
            return infer_path(mv.name, mv.version if pinned else None), body

        outcome = await runtime.forwarder.forward(
            ex.relay,
            plan,
            rewrite,
            headers,
            timeout_s,
            reason,
            tenant,
            style=route.style,
            patient=bool(woke),
        )
        if runtime.admission is not None:
            runtime.metrics.queue_seconds.observe(outcome.queued_s)
        early = runtime.early_retries
        if outcome.shed:
            runtime.metrics.reject(AT_CAPACITY)
            ex.reason = f"{reason}; shed: at capacity"
            if early is not None:
                connection = connection_of(scope.get("client"))
                early.refusing(connection)  # counted, not held: it waited for a slot
                early.refused(connection, outcome.early_s)
        elif early is not None and len(early):
            early.served(connection_of(scope.get("client")))
        ex.pool = outcome.pool or NO_POOL
        ex.failed = outcome.failed
        ex.attempts = outcome.attempts
        ex.queued_s = outcome.queued_s
        if outcome.model is not None:
            ex.version = outcome.model.version
            ex.answered = outcome.model.name
