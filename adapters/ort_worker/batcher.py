"""The inference entry point of every front end: `Inference.run(model, feed, outputs)`.

A request of a model without batching runs alone in one concurrency slot, as before. A
request of a batched model joins that model's queue; `batchpolicy.decide` says when to send
which rows (requests with the same input dtypes and shapes past the first dimension, and
the same outputs), which run as one onnxruntime call in one slot and are split back. If a
batched run fails, its requests are run again one by one, so a bad request fails alone.

Thin asyncio shell: no locks (one event loop), no task per batch (the executor's completion
calls back into the loop), and a request that finds its model idle is sent at once. A
request that runs alone runs on the event loop itself when its model's runs are shorter than
handing it to a thread would cost (`inline.runs_inline`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import Counter

from mpfn.adapters.ort_worker.admission import Admission, QueueFull
from mpfn.adapters.ort_worker.batching import (
    Array,
    BatchKey,
    Feed,
    batch_key,
    concat_feeds,
    split_outputs,
)
from mpfn.adapters.ort_worker.batchpolicy import (
    CostFit,
    QueueView,
    Rate,
    count_arrival,
    decide,
    observe_cost,
)
from mpfn.adapters.ort_worker.errors import WorkerError
from mpfn.adapters.ort_worker.inline import observe_run, runs_inline
from mpfn.adapters.ort_worker.metrics import WorkerMetrics
from mpfn.adapters.ort_worker.session import LoadedModel

#: Weight each answered row's time from arrival to answer has in the running estimate.
SOJOURN_WEIGHT = 0.1


class FaultPlan(Protocol):
    """Deliberate degradation (`app.Faults`): extra seconds per run, failures on demand."""

    delay_s: float

    def fail_now(self) -> bool: ...


class _NoFaults:
    delay_s = 0.0

    def fail_now(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class Ran:
    """A request's outputs and the rows of the onnxruntime run that computed them."""

    arrays: list[Array]
    batch_size: int


@dataclass(eq=False, slots=True)
class _Pending:
    key: BatchKey
    feed: Feed
    outputs: list[str]
    rows: int
    arrived: float
    future: asyncio.Future[Ran]


@dataclass(slots=True)
class _Outcome:
    results: list[list[Array] | BaseException] = field(default_factory=list)
    batch_size: int | None = None  # rows run together; None: each request ran alone
    seconds: float = 0.0  # of the run, 0 when the requests ran one by one


class Inference:
    """Runs inferences for a worker: admission, batching, the inference threads."""

    def __init__(
        self,
        admission: Admission,
        executor: ThreadPoolExecutor,
        metrics: WorkerMetrics,
        faults: FaultPlan | None = None,
        inline_max_s: float = 0.0,
    ) -> None:
        self.admission = admission
        self.inline_max_s = inline_max_s  # 0: every run goes to an inference thread
        self.executor = executor
        self.metrics = metrics
        self.faults: FaultPlan = faults or _NoFaults()
        self.waiting = 0  # requests in batch queues
        self.extra_running = 0  # requests in running batches beyond one per slot
        self.slot_waits = 0  # batch queues in the admission line
        self._inline_runs: dict[str, Counter] = {}  # model -> its counter's child

    @property
    def inflight(self) -> int:
        """Requests whose inference is running."""
        return self.admission.running + self.extra_running

    @property
    def queued(self) -> int:
        """Requests admitted but not running yet."""
        return self.admission.queued - self.slot_waits + self.waiting

    async def run(self, model: LoadedModel, feed: Feed, outputs: list[str]) -> Ran:
        """Outputs `outputs` of `model` for validated inputs `feed`."""
        if self.faults.fail_now():
            raise WorkerError("injected failure (--inject-error-rate)", 503)
        keyed = batch_key(feed, outputs) if model.batch_limits.enabled else None
        if keyed is None:
            return await self._alone(model, feed, outputs)
        queue = model.batch_queue
        if not isinstance(queue, ModelQueue):
            queue = model.batch_queue = ModelQueue(self, model)
        if not self.admission.free and self.queued >= self.admission.max_queue:
            raise QueueFull
        return await queue.submit(keyed[0], feed, outputs, keyed[1])

    async def _alone(self, model: LoadedModel, feed: Feed, outputs: list[str]) -> Ran:
        async with self.admission.slot():
            if self.faults.delay_s:
                await asyncio.sleep(self.faults.delay_s)
            arrays, _ = await self.run_one(model, outputs, feed)
        first = next(iter(feed.values()), None)
        return Ran(arrays, first.shape[0] if first is not None and first.ndim else 1)

    async def run_one(
        self, model: LoadedModel, outputs: list[str], feed: Feed
    ) -> tuple[list[Array], float]:
        """One request's outputs and its run's seconds, in the slot the caller holds: on
        the event loop when its model's runs are short enough, else in a thread."""
        if not self.inline_max_s:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.executor, run_timed, model, outputs, feed)
        elements = sum(array.size for array in feed.values())
        if runs_inline(model.run_times, elements, self.inline_max_s):
            name = model.doc.name
            counter = self._inline_runs.get(name)
            if counter is None:  # `labels` costs microseconds: look it up once per model
                counter = self._inline_runs[name] = self.metrics.inline_runs.labels(name)
            counter.inc()
            arrays, seconds = run_timed(model, outputs, feed)
        else:
            loop = asyncio.get_running_loop()
            arrays, seconds = await loop.run_in_executor(
                self.executor, run_timed, model, outputs, feed
            )
        model.run_times = observe_run(model.run_times, seconds, elements, self.inline_max_s)
        return arrays, seconds


class ModelQueue:
    """Requests of one batched model waiting to run, and what it has learnt of its load."""

    def __init__(self, owner: Inference, model: LoadedModel) -> None:
        self.owner = owner
        self.model = model
        self.limits = model.batch_limits
        self.label = model.doc.name
        self.items: collections.deque[_Pending] = collections.deque()
        self.running = 0
        self.rate = Rate()
        self.cost = CostFit()
        self.sojourn = 0.0  # seconds from arrival to answer, weighted towards recent rows
        self.sizes = owner.metrics.batch_size.labels(self.label)
        self.queue_seconds = owner.metrics.batch_queue_seconds.labels(self.label)
        self._holding = False  # a slot taken in the admission line, not used yet
        self._slot_wait: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    async def submit(self, key: BatchKey, feed: Feed, outputs: list[str], rows: int) -> Ran:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.rate = count_arrival(self.rate, now, rows)
        idle = not (self.items or self.running or self._holding or self.owner.faults.delay_s)
        if idle and self.owner.admission.try_acquire():  # what `decide` says, sooner
            return await self._idle(feed, outputs, rows, now)
        item = _Pending(key, feed, outputs, rows, now, loop.create_future())
        self.items.append(item)
        self.owner.waiting += 1
        self._pump()
        try:
            return await item.future
        except asyncio.CancelledError:
            if item in self.items:
                self.items.remove(item)
                self.owner.waiting -= 1
            raise

    async def _idle(self, feed: Feed, outputs: list[str], rows: int, arrived: float) -> Ran:
        """Run one request at once in the slot just taken; requests that arrive meanwhile
        queue behind it as behind any running batch."""
        loop = asyncio.get_running_loop()
        self.running += 1
        self.queue_seconds.observe(0.0)
        try:
            arrays, seconds = await self.owner.run_one(self.model, outputs, feed)
        finally:
            self.running -= 1
            self.owner.admission.release()
            self._pump()
        self.sizes.observe(rows)
        self.cost = observe_cost(self.cost, rows, seconds)
        self._observe_sojourn(loop.time() - arrived)
        return Ran(arrays, rows)

    def _observe_sojourn(self, spent: float) -> None:
        self.sojourn += SOJOURN_WEIGHT * (spent - self.sojourn) if self.sojourn else spent

    # -- deciding ------------------------------------------------------------------------

    def _pump(self) -> None:
        """Send every batch that `decide` says to send now; then arm a timer or wait for
        a slot."""
        loop = asyncio.get_running_loop()
        admission = self.owner.admission
        while self.items:
            now = loop.time()
            first = self.items[0]
            waiting = self._rows_like(first.key)
            free = admission.free + (1 if self._holding else 0)
            view = QueueView(
                waiting=waiting,
                oldest_wait_s=now - first.arrived,
                running=self.running,
                free_slots=free,
                arrival_per_s=self.rate.per_second(now),
                cost=self.cost,
                sojourn_s=self.sojourn,
                holding=self._holding,
            )
            decision = decide(view, self.limits)
            if decision.take == 0:
                if free == 0:
                    self._wait_for_slot()
                else:
                    self._arm(now + decision.wait_s)
                return
            if self._holding:
                self._holding = False
            elif not admission.try_acquire():  # pragma: no cover - `free` said there was one
                self._wait_for_slot()
                return
            self._launch(self._take(first.key, decision.take), now)
        self._disarm()
        if self._holding:
            self._holding = False
            admission.release()

    def _rows_like(self, key: BatchKey) -> int:
        top = self.limits.max_batch_size
        rows = 0
        for item in self.items:
            if item.key == key:
                rows += item.rows
                if rows >= top:
                    break
        return rows

    def _take(self, key: BatchKey, rows: int) -> list[_Pending]:
        batch: list[_Pending] = []
        rest: list[_Pending] = []
        taken = 0
        for item in self.items:
            if item.key == key and (not batch or taken + item.rows <= rows):
                batch.append(item)
                taken += item.rows
            else:
                rest.append(item)
        self.items = collections.deque(rest)
        self.owner.waiting -= len(batch)
        return batch

    def _arm(self, at: float) -> None:
        if math.isinf(at) or (self._timer is not None and self._timer_at <= at):
            return
        self._disarm()
        self._timer_at = at
        self._timer = asyncio.get_running_loop().call_at(at, self._on_timer)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = math.inf

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        self._pump()

    def _wait_for_slot(self) -> None:
        self._disarm()
        if self._slot_wait is None:
            self._slot_wait = asyncio.get_running_loop().create_task(self._take_slot())

    async def _take_slot(self) -> None:
        admission = self.owner.admission
        try:
            if not admission.try_acquire():
                self.owner.slot_waits += 1  # in the admission line from here on
                try:
                    await admission.acquire(bounded=False)
                finally:
                    self.owner.slot_waits -= 1
        finally:
            self._slot_wait = None
        self._holding = True
        self._pump()

    # -- running -------------------------------------------------------------------------

    def _launch(self, batch: list[_Pending], now: float) -> None:
        self.running += 1
        self.owner.extra_running += len(batch) - 1
        for item in batch:
            self.queue_seconds.observe(now - item.arrived)
        delay = self.owner.faults.delay_s
        if delay:
            asyncio.get_running_loop().call_later(delay, self._start, batch)
        else:
            self._start(batch)

    def _start(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        try:
            done = self.owner.executor.submit(run_batch, self.model, batch)
        except RuntimeError as exc:  # the executor is shut down
            self._finish(batch, _Outcome([exc] * len(batch)))
            return

        def back(future: Future[_Outcome]) -> None:
            exc = future.exception()
            outcome = _Outcome([exc] * len(batch)) if exc is not None else future.result()
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(self._finish, batch, outcome)

        done.add_done_callback(back)

    def _finish(self, batch: list[_Pending], outcome: _Outcome) -> None:
        self.running -= 1
        self.owner.extra_running -= len(batch) - 1
        self.owner.admission.release()
        now = asyncio.get_running_loop().time()
        for item in batch:  # per row, so a trickle of small batches does not outweigh a big one
            self._observe_sojourn(now - item.arrived)
        if outcome.batch_size is None:
            for item in batch:
                self.sizes.observe(item.rows)
        else:
            self.sizes.observe(outcome.batch_size)
            if outcome.seconds > 0.0:
                self.cost = observe_cost(self.cost, outcome.batch_size, outcome.seconds)
        for item, result in zip(batch, outcome.results, strict=True):
            if item.future.done():
                continue
            if isinstance(result, BaseException):
                item.future.set_exception(result)
            else:
                item.future.set_result(Ran(result, outcome.batch_size or item.rows))
        self._pump()


def run_timed(model: LoadedModel, outputs: list[str], feed: Feed) -> tuple[list[Array], float]:
    """Blocking: one request's outputs and the seconds its run took."""
    started = time.perf_counter()
    arrays = model.run(outputs, feed)
    return arrays, time.perf_counter() - started


def run_batch(model: LoadedModel, batch: Sequence[_Pending]) -> _Outcome:
    """Blocking: run `batch` as one onnxruntime call and split it; one by one if that
    fails or its outputs do not split."""
    outputs = batch[0].outputs
    if len(batch) > 1:
        rows = [item.rows for item in batch]
        started = time.perf_counter()
        try:
            arrays = model.run(outputs, concat_feeds([item.feed for item in batch]))
        except Exception:
            arrays = None
        seconds = time.perf_counter() - started
        parts = None if arrays is None else split_outputs(arrays, rows)
        if parts is not None:
            return _Outcome(list(parts), sum(rows), seconds)
    outcome = _Outcome(batch_size=batch[0].rows if len(batch) == 1 else None)
    for item in batch:
        started = time.perf_counter()
        try:
            outcome.results.append(model.run(item.outputs, item.feed))
        except Exception as exc:
            outcome.results.append(exc)
        if len(batch) == 1:
            outcome.seconds = time.perf_counter() - started
    return outcome
