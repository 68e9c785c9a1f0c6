"""Pure decisions of the worker: execution provider, LRU eviction, version order, admission."""

from __future__ import annotations

import asyncio

import pytest

from mpfn.adapters.ort_worker.admission import Admission, QueueFull
from mpfn.adapters.ort_worker.lru import (
    Resident,
    choose_evictions,
    estimate_memory_mb,
    latest_version,
    version_sort_key,
)
from mpfn.adapters.ort_worker.options import parse_args
from mpfn.adapters.ort_worker.providers import (
    CPU,
    DEFAULT_PREFERENCE,
    NoProvider,
    choose_providers,
    parse_provider_list,
)

CUDA = "CUDAExecutionProvider"
ROCM = "ROCMExecutionProvider"


@pytest.mark.parametrize(
    ("preferred", "available", "chosen"),
    [
        (DEFAULT_PREFERENCE, [CPU], [CPU]),
        (DEFAULT_PREFERENCE, ["AzureExecutionProvider", CPU], [CPU]),
        (DEFAULT_PREFERENCE, [CUDA, CPU], [CUDA, CPU]),
        (DEFAULT_PREFERENCE, [ROCM, CUDA, CPU], [CUDA, CPU]),
        ([ROCM, CUDA, CPU], [CUDA, ROCM, CPU], [ROCM, CPU]),
        ([CUDA], [CUDA], [CUDA]),
        ([CPU, CUDA], [CUDA, CPU], [CPU]),
    ],
)
def test_choose_providers(preferred: list[str], available: list[str], chosen: list[str]) -> None:
    assert choose_providers(preferred, available) == chosen


def test_choose_providers_none_available() -> None:
    with pytest.raises(NoProvider, match="none of the execution providers CUDAExecutionProvider"):
        choose_providers([CUDA], [CPU])


def test_parse_provider_list_expands_short_names() -> None:
    assert parse_provider_list("cuda, CPUExecutionProvider") == [CUDA, CPU]
    assert parse_provider_list("rocm,cpu") == [ROCM, CPU]
    with pytest.raises(NoProvider):
        parse_provider_list(" , ")


def r(key: str, mb: float, used: int, inflight: int = 0) -> Resident:
    return Resident(key, mb, used, inflight)


def test_evictions_fit_without_evicting() -> None:
    assert choose_evictions([r("a", 5, 1)], 5, 10) == []
    assert choose_evictions([r("a", 500, 1)], 500, 0) == []  # 0 = unlimited


def test_evictions_take_least_recently_used_first() -> None:
    loaded = [r("new", 4, 9), r("old", 4, 1), r("mid", 4, 5)]
    assert choose_evictions(loaded, 4, 12) == ["old"]
    assert choose_evictions(loaded, 8, 12) == ["old", "mid"]


def test_evictions_skip_models_with_requests_in_flight() -> None:
    loaded = [r("old", 4, 1, inflight=2), r("mid", 4, 5), r("new", 4, 9)]
    assert choose_evictions(loaded, 4, 12) == ["mid"]
    assert choose_evictions([r("busy", 10, 1, inflight=1)], 10, 15) is None
    assert choose_evictions([], 20, 15) is None


def test_memory_estimate() -> None:
    assert estimate_memory_mb(12.5, 10**9) == 12.5
    assert estimate_memory_mb(0, 100 * 1024 * 1024) == 300.0
    assert estimate_memory_mb(0, 10) == 1.0


def test_natural_version_order() -> None:
    assert latest_version(["9", "10", "2"]) == "10"
    assert latest_version(["v1.9", "v1.10", "v1.2"]) == "v1.10"
    assert latest_version([]) is None
    assert sorted(["a", "10", "9", "b2"], key=version_sort_key) == ["9", "10", "a", "b2"]


def test_admission_runs_n_queues_m_refuses_the_rest() -> None:
    async def scenario() -> list[str]:
        admission = Admission(max_concurrency=1, max_queue=1)
        events: list[str] = []
        await admission.acquire()  # slot 1 taken
        waiter = asyncio.create_task(admission.acquire())
        await asyncio.sleep(0)
        assert (admission.running, admission.queued) == (1, 1)
        with pytest.raises(QueueFull):
            await admission.acquire()
        admission.release()  # handed straight to the waiter
        await waiter
        events.append(f"{admission.running}/{admission.queued}")
        admission.release()
        events.append(f"{admission.running}/{admission.queued}")
        return events

    assert asyncio.run(scenario()) == ["1/0", "0/0"]


def test_admission_cancelled_waiter_leaves_the_queue() -> None:
    async def scenario() -> tuple[int, int]:
        admission = Admission(max_concurrency=1, max_queue=2)
        await admission.acquire()
        waiter = asyncio.create_task(admission.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        admission.release()
        return admission.running, admission.queued

    assert asyncio.run(scenario()) == (0, 0)


def test_cli_flags() -> None:
    config = parse_args(
        [
            "--state", "/tmp/s", "--port", "9", "--providers", "cuda,cpu", "--preload", "demo:1",
            "--preload", "other", "--max-concurrency", "3", "--max-queue", "0", "--memory-mb", "64",
        ]
    )  # fmt: skip
    assert config.providers == (CUDA, CPU)
    assert config.preload == (("demo", "1"), ("other", None))
    assert (config.max_concurrency, config.max_queue, config.memory_mb) == (3, 0, 64.0)
    with pytest.raises(SystemExit):
        parse_args(["--state", "/tmp/s", "--max-concurrency", "0"])
    assert config.inline_max_us == 100  # short runs on the event loop by default
    assert parse_args(["--state", "/tmp/s", "--inline-max-us", "0"]).inline_max_us == 0
    with pytest.raises(SystemExit):
        parse_args(["--state", "/tmp/s", "--inline-max-us", "-1"])


def test_state_comes_from_the_flag_else_mpfn_state(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_args([], env={"MPFN_STATE": "s3://b/p"}).state == "s3://b/p"
    assert parse_args(["--state", "/tmp/s"], env={"MPFN_STATE": "s3://b/p"}).state == "/tmp/s"
    config = parse_args([], env={"MPFN_STATE": "/tmp/s"})
    assert (config.host, config.port) == ("127.0.0.1", 8081)
    with pytest.raises(SystemExit):
        parse_args([], env={"MPFN_STATE": " "})
    assert "pass --state URL or set MPFN_STATE" in capsys.readouterr().err
