from __future__ import annotations

from mpfn.documents import ModelVersion, Pool
from mpfn.routing import DEFAULT_FORMATS, Limits, adapter_serves, filter_pools, with_formats
from mpfn.routing.breaker import Breaker, BreakerConfig
from tests.factories import pool
from tests.routing.factories import model

BREAKERS = BreakerConfig(failure_threshold=1, cooldown_s=10.0)


def reasons(
    pools: list[Pool],
    m: ModelVersion | None = None,
    limits: Limits | None = None,
    breakers: dict[str, Breaker] | None = None,
    now: float = 0.0,
) -> tuple[list[str], dict[str, str]]:
    kept, excluded = filter_pools(
        m or model(), pools, limits or Limits(), breakers or {}, now, BREAKERS
    )
    return [p.id for p in kept], {e.pool: e.reason for e in excluded}


def test_format_table() -> None:
    assert adapter_serves("triton", "onnx", listed=False)
    assert adapter_serves("ort", "onnx", listed=False)
    assert not adapter_serves("ort", "pytorch", listed=False)
    assert adapter_serves("torchserve", "torchscript", listed=False)
    assert adapter_serves("tfserving", "tensorflow", listed=False)
    assert adapter_serves("openai", "gguf", listed=False)
    assert not adapter_serves("rocm", "onnx", listed=False)
    assert adapter_serves("rocm", "onnx", listed=True)
    table = with_formats(DEFAULT_FORMATS, "onnx", ["rocm"])
    assert adapter_serves("rocm", "onnx", listed=False, table=table)
    assert not adapter_serves("rocm", "onnx", listed=False)  # the default is untouched


def test_every_exclusion_has_a_reason() -> None:
    pools = [
        pool("ok"),
        pool("gpu", hardware=["nvidia"]),
        pool("ts", adapter="tfserving"),
        pool("other", models=["x"]),
        pool("gcp", cloud="gcp"),
        pool("far", region="eu"),
        pool("zero", capacity=0),
        pool("tripped"),
    ]
    limits = Limits(clouds=["local"], regions=["local"])
    breakers = {"tripped": Breaker("open", 1, 0.0, 0)}
    kept, why = reasons(pools, limits=limits, breakers=breakers, now=1.0)
    assert kept == ["ok"]
    assert why == {
        "gpu": "hardware nvidia not in cpu",
        "ts": "adapter tfserving cannot serve format onnx",
        "other": "does not serve model m",
        "gcp": "cloud gcp not allowed by policy default",
        "far": "region eu not allowed",
        "zero": "no capacity",
        "tripped": "circuit open",
    }


def test_any_shared_hardware_qualifies() -> None:
    m = model(hardware=["nvidia", "amd"])
    kept, _ = reasons([pool("a", hardware=["cpu", "amd"]), pool("b")], m=m)
    assert kept == ["a"]


def test_half_open_breaker_admits_after_cooldown() -> None:
    breakers = {"p": Breaker("open", 1, 0.0, 0)}
    assert reasons([pool("p")], breakers=breakers, now=9.0)[0] == []
    assert reasons([pool("p")], breakers=breakers, now=10.0)[0] == ["p"]


def test_pin_excludes_the_rest() -> None:
    kept, why = reasons([pool("a"), pool("b")], limits=Limits(pool="b"))
    assert kept == ["b"]
    assert why == {"a": "not the pinned pool b"}
