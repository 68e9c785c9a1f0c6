"""Short runs on the event loop: the pure rule (`inline.py`) and the shell that follows it
(`batcher.Inference.run_one`), with a model that notes which thread ran it. Never timed:
the limits chosen make every run short (10 s) or long (1 ns)."""

from __future__ import annotations

import asyncio
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mpfn.adapters.ort_worker.admission import Admission
from mpfn.adapters.ort_worker.batcher import Inference
from mpfn.adapters.ort_worker.batching import OFF
from mpfn.adapters.ort_worker.batchpolicy import BatchLimits
from mpfn.adapters.ort_worker.inline import RunTimes, observe_run, runs_inline
from mpfn.adapters.ort_worker.metrics import WorkerMetrics
from mpfn.documents import ModelVersion

LIMIT = 100e-6


def test_nothing_runs_inline_until_a_short_run_of_that_size_was_seen() -> None:
    fresh = RunTimes()
    assert math.isinf(fresh.slowest_s) and not runs_inline(fresh, 16, LIMIT)
    seen = observe_run(fresh, 20e-6, 16, LIMIT)
    assert runs_inline(seen, 16, LIMIT) and runs_inline(seen, 4, LIMIT)
    assert not runs_inline(seen, 17, LIMIT)  # bigger than any short run: a thread measures it
    assert not runs_inline(seen, 16, 0.0)  # 0 turns it off


def test_a_long_run_sends_the_model_to_threads_until_runs_are_short_again() -> None:
    times = observe_run(RunTimes(), 20e-6, 16, LIMIT)
    times = observe_run(times, 5e-3, 16, LIMIT)  # one slow run
    assert not runs_inline(times, 16, LIMIT)
    assert times.largest_short == 16  # a long run does not raise the size allowed
    runs = 0
    while not runs_inline(times, 16, LIMIT):
        times = observe_run(times, 20e-6, 16, LIMIT)
        runs += 1
    assert 10 < runs < 60  # the slow run is forgotten after a few dozen short ones


@dataclass(eq=False)
class WhereModel:
    """Doubles its input and notes the name of the thread each run ran on."""

    batch_limits: BatchLimits = OFF
    batch_queue: object | None = None
    doc: ModelVersion = field(default_factory=lambda: ModelVersion(name="where", version="1"))
    run_times: RunTimes = field(default_factory=RunTimes)
    threads: list[str] = field(default_factory=list)

    def run(self, outputs: list[str], feed: dict[str, Any]) -> list[Any]:
        self.threads.append(threading.current_thread().name)
        return [feed["x"] * 2]


def infer(inference: Inference, model: WhereModel, width: int) -> list[Any]:
    feed = {"x": np.ones((1, width), dtype=np.float32)}
    ran = asyncio.run(inference.run(model, feed, ["y"]))  # type: ignore[arg-type]
    return ran.arrays


def test_short_runs_go_on_the_event_loop_and_bigger_inputs_to_a_thread_first() -> None:
    metrics = WorkerMetrics()
    inference = Inference(Admission(2, 8), ThreadPoolExecutor(2, "infer"), metrics, None, 10.0)
    model = WhereModel()
    for width in (4, 4, 4, 8, 8):
        out = infer(inference, model, width)
        np.testing.assert_array_equal(out[0], np.full((1, width), 2, dtype=np.float32))
    main = threading.current_thread().name
    assert [name == main for name in model.threads] == [False, True, True, False, True]
    sample = metrics.registry.get_sample_value("mpfn_worker_inline_runs_total", {"model": "where"})
    assert sample == 3
    assert inference.inflight == 0  # the slot taken for each inline run was given back


def test_long_runs_and_a_limit_of_zero_never_run_on_the_event_loop() -> None:
    main = threading.current_thread().name
    for limit in (1e-9, 0.0):
        inference = Inference(Admission(2, 8), ThreadPoolExecutor(1), WorkerMetrics(), None, limit)
        model = WhereModel()
        for _ in range(5):
            infer(inference, model, 4)
        assert main not in model.threads
