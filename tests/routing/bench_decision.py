"""Per-decision cost of the routing core: `python -m tests.routing.bench_decision`.

Times `route` + `commit` (one decision), `started` + `finished` (one feedback round
trip) with warm feedback, and the router's whole per-request routing work (reading the
headers, `decide` against a snapshot, `commit`, the route reason), for several
candidate-pool counts.
"""

from __future__ import annotations

import random
import time

from mpfn.functions.router.forward import split_headers
from mpfn.routing import NO_HINTS, RoutingState, Target, parse_hints, route
from mpfn.routing.decide import RouteRequest, decide, default_policy
from mpfn.routing.snapshot import build_snapshot
from tests.factories import pool
from tests.routing.factories import model, policy


def bench(n_pools: int, rounds: int = 20_000) -> tuple[float, float]:
    m = model()
    pools = [pool(f"p{i}", cost=0.5 * i, capacity=4) for i in range(n_pools)]
    target = Target(m, pools, policy(latency_slo_ms=100))
    state = RoutingState()
    for i, p in enumerate(pools):
        for k in range(3):
            state.started(p.id, 0.0)
            state.finished(p.id, m, 5.0 + i, True, {"x-mpfn-inflight": "1"}, 0.001 * k)
    headers = {"x-mpfn-latency-budget-ms": "80"}
    t0 = time.perf_counter()
    for i in range(rounds):
        now = 1.0 + i * 1e-4
        d = route(target, state.feedback, now=now, hints=parse_hints(headers))
        state.commit(d)
    t1 = time.perf_counter()
    for i in range(rounds):
        now = 5.0 + i * 1e-4
        state.started("p0", now)
        state.finished("p0", m, 6.0, True, {"x-mpfn-inflight": "2"}, now)
    t2 = time.perf_counter()
    return (t1 - t0) / rounds * 1e6, (t2 - t1) / rounds * 1e6


def bench_router(n_pools: int, rounds: int = 20_000) -> float:
    m = model()
    pools = [pool(f"p{i}", cost=0.5 * i, capacity=4) for i in range(n_pools)]
    snapshot = build_snapshot([m], pools, [policy(latency_slo_ms=100)])
    state = RoutingState()
    for i, p in enumerate(pools):
        state.started(p.id, 0.0)
        state.finished(p.id, m, 5.0 + i, True, {"x-mpfn-inflight": "1"}, 0.0)
    headers = [(b"host", b"router"), (b"content-type", b"application/json"), (b"accept", b"*/*")]
    rng, fallback = random.Random(0), default_policy(30.0)
    t0 = time.perf_counter()
    for i in range(rounds):
        _forward, hints = split_headers(headers)
        request = RouteRequest("v2", m.name, None, parse_hints(hints) if hints else NO_HINTS)
        d = decide(snapshot, state.feedback, request, now=1.0 + i * 1e-4, rng=rng,
                   fallback_policy=fallback)  # fmt: skip
        state.commit(d)
        _ = d.route_reason
    return (time.perf_counter() - t0) / rounds * 1e6


def main() -> None:
    print("pools  decision_us  feedback_us  router_us")
    for n in (1, 2, 4, 8, 16, 32):
        decision, feedback = min(bench(n) for _ in range(3))
        router = min(bench_router(n) for _ in range(3))
        print(f"{n:5d}  {decision:11.1f}  {feedback:11.1f}  {router:9.1f}")


if __name__ == "__main__":
    main()
