"""One loaded ONNX Runtime model: its session, tensor specs and bookkeeping.

Creating a session and running it are blocking calls; the repository and the app run them
in worker threads (onnxruntime releases the GIL while it computes), except runs of models
short enough to run on the event loop (`inline.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from mpfn.adapters.ort_worker.batching import OFF
from mpfn.adapters.ort_worker.batchpolicy import BatchLimits
from mpfn.adapters.ort_worker.inline import RunTimes
from mpfn.documents import Datatype, ModelVersion, TensorSpec

#: onnxruntime element types -> v2 datatypes.
ORT_DATATYPES: dict[str, Datatype] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(bfloat16)": "BF16",
    "tensor(string)": "BYTES",
}


def open_session(
    path: Path, providers: Sequence[str], intra_op_threads: int
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if intra_op_threads > 0:
        options.intra_op_num_threads = intra_op_threads
    return ort.InferenceSession(str(path), sess_options=options, providers=list(providers))


def session_specs(args: Sequence[Any]) -> list[TensorSpec]:
    """TensorSpecs from a session's `get_inputs()` / `get_outputs()` (symbolic dims -> -1)."""
    return [
        TensorSpec(
            name=arg.name,
            datatype=ORT_DATATYPES.get(arg.type, "BYTES"),
            shape=[d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or [])],
        )
        for arg in args
    ]


@dataclass(eq=False)
class LoadedModel:
    """A model version resident in this worker."""

    doc: ModelVersion
    session: ort.InferenceSession
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    memory_mb: float
    load_ms: float
    providers: list[str]
    last_used: int = 0
    inflight: int = 0
    output_names: list[str] = field(default_factory=list)
    # Batching (`batching.py`): the limits in force (OFF: never batched), why it is off
    # when the model asked for it, and the model's queue once a request used it.
    batch_limits: BatchLimits = OFF
    batch_note: str = ""
    batch_queue: object | None = None
    # How long its runs took (`inline.py`): short ones run on the event loop.
    run_times: RunTimes = field(default_factory=RunTimes)

    def __post_init__(self) -> None:
        self.output_names = [spec.name for spec in self.outputs]

    @property
    def key(self) -> str:
        return f"{self.doc.name}/{self.doc.version}"

    @classmethod
    def create(
        cls,
        doc: ModelVersion,
        session: ort.InferenceSession,
        memory_mb: float,
        load_ms: float,
    ) -> LoadedModel:
        """Specs from the document when it lists them, else from the session."""
        return cls(
            doc=doc,
            session=session,
            inputs=list(doc.inputs) or session_specs(session.get_inputs()),
            outputs=list(doc.outputs) or session_specs(session.get_outputs()),
            memory_mb=memory_mb,
            load_ms=load_ms,
            providers=list(session.get_providers()),
        )

    def run(
        self, output_names: list[str], feed: dict[str, npt.NDArray[Any]]
    ) -> list[npt.NDArray[Any]]:
        """Blocking inference; BYTES inputs are handed to onnxruntime as str."""
        for name, array in feed.items():
            if array.dtype == object:
                feed[name] = _as_str_array(array)
        return list(self.session.run(output_names, feed))


def _as_str_array(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    flat = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in array.ravel()]
    return np.array(flat, dtype=object).reshape(array.shape)
