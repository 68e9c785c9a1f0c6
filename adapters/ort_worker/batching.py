"""What may be batched, and how: limits per model, the batch signature check, the
bit-identity probe, and concatenating and splitting tensors on the first dimension.

A model is batched only when every input and output of its ONNX signature has a first
dimension that is not fixed (rank-0 tensors and fixed first dimensions are never batched),
and when a probe at load shows that running rows together gives, byte for byte, what
running each alone gives (some kernels reduce in a different order for one row than for
several). The blocking functions here run in the worker's threads.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mpfn.adapters.ort_worker.batchpolicy import BatchLimits
from mpfn.documents import Batching

log = logging.getLogger("mpfn.worker")

Array = npt.NDArray[Any]
Feed = dict[str, Array]
#: Identifies requests that can share a batch: (input name, dtype, shape after the first
#: dimension) for every input, then the output names asked for.
BatchKey = tuple[tuple[tuple[str, str, tuple[int, ...]], ...], tuple[str, ...]]
OFF = BatchLimits(0, 0.0)
#: Size the probe gives dimensions the signature leaves open, past the first one.
PROBE_DIM = 11
PROBE_ROWS = 3


@dataclass(frozen=True, slots=True)
class BatchDefaults:
    """The worker's batching settings for models whose document does not set them."""

    max_batch_size: int = 0
    max_queue_delay_us: int = 2000
    latency_target_ms: float = 50.0


def resolve_limits(
    spec: Batching | None, defaults: BatchDefaults, slo_ms: float | None
) -> BatchLimits:
    """A model's limits: its document's `batching` over the worker's defaults; the latency
    target is the routing policy's `latency_slo_ms` when known, else the worker's."""
    top = defaults.max_batch_size
    delay_us = defaults.max_queue_delay_us
    preferred: tuple[int, ...] = ()
    if spec is not None:
        top = top if spec.max_batch_size is None else spec.max_batch_size
        delay_us = delay_us if spec.max_queue_delay_us is None else spec.max_queue_delay_us
        preferred = tuple(size for size in spec.preferred_batch_sizes if size <= top)
    if top <= 1:
        return OFF
    target_ms = slo_ms if slo_ms is not None else defaults.latency_target_ms
    return BatchLimits(top, delay_us / 1e6, preferred, target_ms / 1000.0)


def signature_problem(inputs: Sequence[Any], outputs: Sequence[Any]) -> str | None:
    """Why a session (its `get_inputs()`, `get_outputs()`) cannot be batched, or None."""
    if not inputs:
        return "the model has no inputs"
    for kind, args in (("input", inputs), ("output", outputs)):
        for arg in args:
            shape = arg.shape
            if not shape:
                return f"{kind} '{arg.name}' has rank 0"
            if isinstance(shape[0], int) and shape[0] >= 0:
                return f"{kind} '{arg.name}' has a fixed first dimension ({shape[0]})"
    return None


def probe_feed(inputs: Sequence[Any], rows: int, seed: int = 0) -> Feed:
    """Synthetic inputs of `rows` rows: open dimensions PROBE_DIM, small integers (valid
    indices and masks), normal floats, random booleans."""
    rng = np.random.default_rng(seed)
    feed: Feed = {}
    for arg in inputs:
        dims = [d if isinstance(d, int) and d >= 0 else PROBE_DIM for d in arg.shape[1:]]
        shape = (rows, *dims)
        kind = arg.type
        if kind == "tensor(string)":
            feed[arg.name] = np.full(shape, "a", dtype=object)
        elif kind == "tensor(bool)":
            feed[arg.name] = rng.integers(0, 2, size=shape).astype(bool)
        elif "float" in kind or "double" in kind:
            dtype = {"tensor(float16)": np.float16, "tensor(double)": np.float64}
            feed[arg.name] = rng.standard_normal(shape).astype(dtype.get(kind, np.float32))
        else:
            dtype_name = kind[len("tensor(") : -1]
            feed[arg.name] = rng.integers(0, 2, size=shape).astype(np.dtype(dtype_name))
    return feed


def probe_problem(session: Any) -> str | None:
    """Run PROBE_ROWS synthetic rows alone and together; why they differ, or None."""
    feed = probe_feed(session.get_inputs(), PROBE_ROWS)
    names = [o.name for o in session.get_outputs()]
    try:
        together = session.run(names, feed)
        alone = [
            session.run(names, {k: v[i : i + 1] for k, v in feed.items()})
            for i in range(PROBE_ROWS)
        ]
    except Exception as exc:  # onnxruntime raises its own, unexported exception types
        return f"the batching probe could not run the model ({type(exc).__name__})"
    parts = split_outputs(list(together), [1] * PROBE_ROWS)
    if parts is None:
        return "an output's first dimension does not follow the batch"
    for i, part in enumerate(parts):
        for name, got, want in zip(names, part, alone[i], strict=True):
            if not identical(got, want):
                return f"output '{name}' differs when rows run together"
    return None


def identical(a: Array, b: Array) -> bool:
    """Same dtype, shape and bytes (NaNs included)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == object:
        return bool(np.array_equal(a, b))
    return np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def batch_key(feed: Feed, outputs: Sequence[str]) -> tuple[BatchKey, int] | None:
    """The key of a request and its rows, or None when it must run alone (a rank-0
    input, no rows, or inputs whose first dimensions disagree)."""
    rows = -1
    parts = []
    for name in sorted(feed):
        array = feed[name]
        if array.ndim == 0 or array.shape[0] == 0 or (rows >= 0 and array.shape[0] != rows):
            return None
        rows = array.shape[0]
        parts.append((name, array.dtype.str, tuple(array.shape[1:])))
    if rows < 1:
        return None
    return (tuple(parts), tuple(outputs)), rows


def concat_feeds(feeds: Sequence[Feed]) -> Feed:
    """One feed with the rows of `feeds` stacked on the first dimension, in order."""
    return {name: np.concatenate([f[name] for f in feeds], axis=0) for name in feeds[0]}


def split_outputs(arrays: Sequence[Array], rows: Sequence[int]) -> list[list[Array]] | None:
    """Per-request slices (views) of batched outputs; None if an output's first dimension
    is not the sum of `rows`."""
    total = sum(rows)
    if any(a.ndim == 0 or a.shape[0] != total for a in arrays):
        return None
    out: list[list[Array]] = []
    start = 0
    for n in rows:
        out.append([a[start : start + n] for a in arrays])
        start += n
    return out
