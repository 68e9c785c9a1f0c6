"""Pure routing decisions: which pools serve a model, in which order, when to fail over."""

from __future__ import annotations

from pydantic import HttpUrl

from mpfn.documents import ModelVersion, Pool
from mpfn.router import (
    adapter_fits,
    attempt_order,
    build_snapshot,
    candidates,
    default_version,
    should_fail_over,
)
from mpfn.router.hotpath import match_route, model_in_body
from mpfn.router.routing import backend_url


def pool(pid: str, adapter: str = "ort", models: list[str] | None = None) -> Pool:
    return Pool(
        id=pid,
        cloud="local",
        adapter=adapter,
        endpoint=HttpUrl(f"http://127.0.0.1:1/{pid}"),
        models=models or [],
    )


def mv(name: str, version: str = "1", fmt: str = "onnx") -> ModelVersion:
    return ModelVersion(name=name, version=version, format=fmt)  # type: ignore[arg-type]


def test_adapter_fits_format() -> None:
    assert adapter_fits("ort", "onnx", listed=False)
    assert not adapter_fits("ort", "gguf", listed=True)
    assert adapter_fits("openai", "gguf", listed=False)
    # Unknown (plug-in) adapters serve only what their pool names.
    assert adapter_fits("rocm-x", "onnx", listed=True)
    assert not adapter_fits("rocm-x", "onnx", listed=False)


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


def test_round_robin_and_down_pools_last() -> None:
    pools = [pool("a"), pool("b"), pool("c")]
    assert [p.id for p in attempt_order(pools, 0)] == ["a", "b", "c"]
    assert [p.id for p in attempt_order(pools, 1)] == ["b", "c", "a"]
    assert [p.id for p in attempt_order(pools, 5)] == ["c", "a", "b"]
    assert [p.id for p in attempt_order(pools, 0, {"a"})] == ["b", "c", "a"]
    assert [p.id for p in attempt_order(pools, 0, {"a", "b", "c"})] == ["a", "b", "c"]
    assert attempt_order([], 3) == []


def test_round_robin_spreads_evenly() -> None:
    pools = [pool("a"), pool("b")]
    firsts = [attempt_order(pools, turn)[0].id for turn in range(10)]
    assert firsts.count("a") == firsts.count("b") == 5


def test_default_version_prefers_highest_numeric() -> None:
    assert default_version(["1", "10", "2"]) == "10"
    assert default_version(["beta", "3"]) == "3"
    assert default_version(["a", "b"]) == "b"


def test_fail_over_only_on_unavailable_answers() -> None:
    assert [s for s in (200, 400, 404, 413, 500, 502, 503, 504) if should_fail_over(s)] == [
        502,
        503,
        504,
    ]


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


def test_model_in_body() -> None:
    assert model_in_body(b'{"model": "m", "messages": []}') == "m"
    for bad in (b"not json", b"[1]", b'{"model": 3}', b"{}"):
        try:
            model_in_body(bad)
        except Exception as exc:
            assert getattr(exc, "status", None) == 400
        else:
            raise AssertionError(f"{bad!r} accepted")


def test_backend_url_joins_endpoint_prefix() -> None:
    assert backend_url(pool("a"), "/v2/models/m/infer") == "http://127.0.0.1:1/a/v2/models/m/infer"
