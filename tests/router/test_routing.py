"""The router's routing seams: serving index, request matching and `decide` (pure)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from mpfn.documents import ModelFormat, ModelVersion, Policy
from mpfn.functions.router.hotpath import match_route, model_in_body, with_model
from mpfn.routing import NO_FEEDBACK, HintError, RequestHints, RoutingState, Strategy
from mpfn.routing.decide import RouteRequest, decide, default_policy, plain_target
from mpfn.routing.errors import RouteError
from mpfn.routing.serving import backend_url, candidates, infer_path, pool_serves
from mpfn.routing.snapshot import Snapshot, build_snapshot
from tests.factories import pool

FALLBACK = default_policy(30.0)


def mv(name: str, version: str = "1", fmt: ModelFormat = "onnx") -> ModelVersion:
    return ModelVersion(name=name, version=version, format=fmt)


def test_pool_serves_by_protocol_format_and_listing() -> None:
    assert pool_serves(pool("a"), "m", "onnx", "v2")
    assert not pool_serves(pool("a"), "m", "gguf", "v2")
    assert not pool_serves(pool("a"), "m", "onnx", "openai")  # ort speaks v2 only
    assert pool_serves(pool("o", adapter="openai"), "m", "gguf", "openai")
    assert pool_serves(pool("t", adapter="triton"), "m", "other", "v2")
    # Unknown (plug-in) adapters serve only what their pool names, whatever the format.
    assert pool_serves(pool("r", adapter="rocm-x", models=["m"]), "m", "onnx", "v2")
    assert not pool_serves(pool("r", adapter="rocm-x"), "m", "onnx", "v2")
    # A name no document describes is served only by pools listing it.
    assert pool_serves(pool("a", models=["m"]), "m", None, "v2")
    assert not pool_serves(pool("a"), "m", None, "v2")


def test_candidates_filter_by_models_list_and_format() -> None:
    snap = build_snapshot(
        [mv("demo"), mv("demo", "2"), mv("llm", fmt="gguf")],
        [
            pool("a"),
            pool("b", models=["other"]),
            pool("c", models=["demo"]),
            pool("t", adapter="tfserving"),
            pool("o", adapter="openai"),
        ],
        [],
    )
    assert [p.id for p in candidates(snap, "demo").pools] == ["a", "c"]
    assert [p.id for p in candidates(snap, "demo", "2").pools] == ["a", "c"]
    assert [p.id for p in candidates(snap, "other").pools] == ["b"]
    assert [p.id for p in candidates(snap, "llm", protocol="openai").pools] == ["o"]
    assert snap.latest["demo"] == "2"


def test_candidates_errors() -> None:
    snap = build_snapshot([mv("demo"), mv("llm", fmt="gguf")], [pool("a")], [])
    unknown = candidates(snap, "nope")
    assert (unknown.status, unknown.known) == (404, False)
    assert "unknown model" in unknown.error
    assert candidates(snap, "demo", "9").status == 404
    assert "no version" in candidates(snap, "demo", "9").error
    # Known model, no pool of a fitting kind: 503, and it still counts as known.
    no_pool = candidates(snap, "llm")
    assert (no_pool.status, no_pool.known) == (503, True)
    # A tensor model is not an OpenAI model.
    assert candidates(snap, "demo", protocol="openai").status == 404


def test_openai_pools_listing_unregistered_models() -> None:
    snap = build_snapshot([], [pool("o", adapter="openai", models=["smollm"])], [])
    assert [p.id for p in candidates(snap, "smollm", protocol="openai").pools] == ["o"]
    assert candidates(snap, "smollm").status == 404  # not over v2
    assert snap.model_names("openai") == ["smollm"]
    d = decide(
        snap,
        NO_FEEDBACK,
        RouteRequest("openai", "smollm"),
        now=0.0,
        rng=random.Random(0),
        fallback_policy=FALLBACK,
    )
    assert [a.pool.id for a in d.plan] == ["o"]


def route_once(snap: Snapshot, req: RouteRequest, state: RoutingState, seed: int = 0) -> str:
    d = decide(
        snap,
        state.feedback,
        req,
        now=1.0,
        rng=random.Random(seed),
        fallback_policy=FALLBACK,
    )
    state.commit(d)
    return f"{d.plan[0].pool.id}:{d.plan[0].model.name}/{d.plan[0].model.version}"


def test_decide_spreads_equal_pools_and_explains_exclusions() -> None:
    snap = build_snapshot([mv("demo")], [pool("a"), pool("b"), pool("t", adapter="tfserving")], [])
    state = RoutingState()
    firsts = Counter(route_once(snap, RouteRequest("v2", "demo"), state) for _ in range(10))
    assert firsts == {"a:demo/1": 5, "b:demo/1": 5}
    d = decide(
        snap,
        state.feedback,
        RouteRequest("v2", "demo"),
        now=1.0,
        rng=random.Random(0),
        fallback_policy=FALLBACK,
        explain=True,
    )
    assert {e.pool: e.reason for e in d.exclusions} == {
        "t": "adapter tfserving cannot serve format onnx"
    }
    assert d.route_reason.startswith("slo-then-cost:")


def test_decide_version_split_is_sticky_by_key() -> None:
    split = Policy(name="demo", version_weights={"1": 0.5, "2": 0.5})
    snap = build_snapshot([mv("demo"), mv("demo", "2")], [pool("a")], [split])
    state = RoutingState()
    for key in ("alice", "bob", "carol", "dave"):
        seen = {route_once(snap, RouteRequest("v2", "demo", key=key), state, s) for s in range(8)}
        assert len(seen) == 1
    draws = Counter(route_once(snap, RouteRequest("v2", "demo"), state, s) for s in range(200))
    assert set(draws) == {"a:demo/1", "a:demo/2"} and min(draws.values()) > 60
    # A named version is served as named.
    assert route_once(snap, RouteRequest("v2", "demo", "1", key="alice"), state) == "a:demo/1"


def test_decide_falls_back_to_another_model() -> None:
    policies = [Policy(name="big", fallbacks=["small"])]
    snap = build_snapshot(
        [mv("big"), mv("small")], [pool("gpu", models=["big"]), pool("cpu", models=["small"])],
        policies,
    )  # fmt: skip
    state = RoutingState()
    d = decide(snap, state.feedback, RouteRequest("v2", "big"), now=0.0,
               rng=random.Random(0), fallback_policy=FALLBACK)  # fmt: skip
    assert [(a.pool.id, a.model.name) for a in d.plan] == [("gpu", "big"), ("cpu", "small")]
    # With the primary's pool pinned away by a region hint... the pin is checked first.
    with pytest.raises(HintError):
        decide(snap, state.feedback, RouteRequest("v2", "big", hints=RequestHints(pool="cpu")),
               now=0.0, rng=random.Random(0), fallback_policy=FALLBACK)  # fmt: skip
    # When the primary's only pool has an open circuit, the fallback model serves.
    for t in range(5):
        state.started("gpu", float(t))
        state.finished("gpu", mv("big"), 1.0, False, {}, float(t))
    d = decide(snap, state.feedback, RouteRequest("v2", "big"), now=5.0,
               rng=random.Random(0), fallback_policy=FALLBACK)  # fmt: skip
    assert [(a.pool.id, a.model.name) for a in d.plan] == [("cpu", "small")]
    assert "fallback from big" in d.route_reason


def test_decide_unknown_model_and_version() -> None:
    snap = build_snapshot([mv("demo")], [pool("a")], [])
    for req in (RouteRequest("v2", "ghost"), RouteRequest("v2", "demo", "7")):
        with pytest.raises(RouteError) as err:
            decide(snap, NO_FEEDBACK, req, now=0.0, rng=random.Random(0),
                   fallback_policy=FALLBACK)  # fmt: skip
        assert err.value.status == 404


@pytest.mark.parametrize("strategy", ["round-robin", "random", "least-loaded"])
def test_baseline_strategies_try_every_pool(strategy: Strategy) -> None:
    snap = build_snapshot([mv("demo")], [pool("a"), pool("b"), pool("c")], [])
    state = RoutingState()
    firsts: Counter[str] = Counter()
    for turn in range(30):
        d = decide(snap, state.feedback, RouteRequest("v2", "demo"), now=0.0,
                   rng=random.Random(turn), fallback_policy=FALLBACK,
                   strategy=strategy, turn=turn)  # fmt: skip
        assert sorted(a.pool.id for a in d.plan) == ["a", "b", "c"]
        assert d.route_reason.startswith(strategy)
        firsts[d.plan[0].pool.id] += 1
    assert set(firsts) == {"a", "b", "c"}


def test_least_loaded_prefers_idle_pools() -> None:
    snap = build_snapshot([mv("demo")], [pool("a"), pool("b")], [])
    state = RoutingState()
    state.started("a", 0.0)
    for turn in range(4):
        d = decide(snap, state.feedback, RouteRequest("v2", "demo"), now=0.0,
                   rng=random.Random(0), fallback_policy=FALLBACK,
                   strategy="least-loaded", turn=turn)  # fmt: skip
        assert d.plan[0].pool.id == "b"


def test_match_route() -> None:
    r = match_route("POST", "/v2/models/demo/infer")
    assert r is not None and (r.protocol, r.model, r.version) == ("v2", "demo", None)
    r = match_route("POST", "/v2/models/demo/versions/3/infer")
    assert r is not None and (r.model, r.version, r.path) == (
        "demo",
        "3",
        "/v2/models/demo/versions/3/infer",
    )
    r = match_route("POST", "/v1/chat/completions")
    assert r is not None and (r.protocol, r.model) == ("openai", None)
    assert match_route("GET", "/v2/models/demo/infer") is None
    assert match_route("POST", "/v2/models/demo/ready") is None
    assert match_route("POST", "/v2/models//infer") is None
    assert match_route("POST", "/v2/models/a/b/infer") is None
    assert match_route("POST", "/v2/repository/models/demo/load") is None


def test_model_in_body_and_rewrite() -> None:
    assert model_in_body(b'{"model": "m", "messages": []}') == "m"
    for bad in (b"not json", b"[1]", b'{"model": 3}', b"{}"):
        with pytest.raises(RouteError) as err:
            model_in_body(bad)
        assert err.value.status == 400
    assert model_in_body(with_model(b'{"model": "m", "n": 1}', "f")) == "f"


def test_paths_and_urls() -> None:
    assert (
        backend_url(pool("a", "http://127.0.0.1:1/a"), "/v2/models/m/infer")
        == "http://127.0.0.1:1/a/v2/models/m/infer"
    )
    assert infer_path("m", None) == "/v2/models/m/infer"
    assert infer_path("m", "2") == "/v2/models/m/versions/2/infer"


def test_plain_requests_are_resolved_once_per_snapshot_and_decide_alike() -> None:
    policies = [Policy(name="big", fallbacks=["small"], latency_slo_ms=40.0)]
    models = [mv("big"), mv("big", "2"), mv("small")]
    pools = [pool("gpu", models=["big"]), pool("cpu", models=["small"]), pool("b", models=["big"])]
    snap = build_snapshot(models, pools, policies)
    state = RoutingState()
    state.started("gpu", 0.0)
    state.finished("gpu", mv("big", "2"), 3.0, True, {}, 0.0)
    plain = plain_target(snap, "big", "v2", FALLBACK)
    assert plain is not None and plain is plain_target(snap, "big", "v2", FALLBACK)
    assert plain.target.model.version == "2" and plain.fallbacks == ("small",)
    # The memoised path decides exactly like resolving the request from scratch (a
    # pinned-nowhere hint takes the full path and changes nothing else).
    for now in (1.0, 2.0, 3.0):
        fast = decide(snap, state.feedback, RouteRequest("v2", "big"), now=now,
                      rng=random.Random(0), fallback_policy=FALLBACK)  # fmt: skip
        full = decide(snap, state.feedback, RouteRequest("v2", "big", hints=RequestHints()),
                      now=now, rng=random.Random(0), fallback_policy=FALLBACK)  # fmt: skip
        assert fast == full
        state.commit(fast)
    # A new snapshot resolves again; a version split, unknown model or another fallback
    # policy is never taken from the memo.
    assert plain_target(build_snapshot(models, pools, policies), "big", "v2", FALLBACK) is not plain
    split = [Policy(name="big", version_weights={"1": 0.5, "2": 0.5})]
    assert plain_target(build_snapshot(models, pools, split), "big", "v2", FALLBACK) is None
    assert plain_target(snap, "nope", "v2", FALLBACK) is None
    other = default_policy(5.0)
    assert plain_target(snap, "small", "v2", other) is not plain_target(
        snap, "small", "v2", FALLBACK
    )
