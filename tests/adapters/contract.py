"""What the adapter contract suite needs from each backend: one `ContractCase` per kind.

A backend joins the suite by providing a session fixture named `<kind>_case` (in its own
`servers_<kind>.py`, imported by conftest.py) and adding `<kind>` to `BACKENDS` in
test_contract.py. Servers are real processes on loopback; the TF Serving one is the
stand-in (`tests.servers.tfserving_standin`), which is not TensorFlow Serving.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mpfn.adapters.base import Adapter, AdapterConfig
from mpfn.documents import ModelVersion
from mpfn.protocol import InferInput, InferRequest

Reference = Callable[[InferRequest], Mapping[str, npt.NDArray[Any]]]
Provoke = Callable[[Adapter], Awaitable[object]]


@dataclass(frozen=True)
class ContractCase:
    kind: str
    config: AdapterConfig
    model: ModelVersion  # loadable; the lifecycle tests load and unload it
    key: str  # how loaded() and stats name `model`
    request: InferRequest  # a valid request for `model`
    # Outputs of the same artifact run directly (onnxruntime); None for LLMs, whose check
    # is that two identical requests at temperature 0 give the same non-empty text.
    reference: Reference | None
    missing: ModelVersion  # unknown to the backend: load() -> 404
    bad_request: Provoke  # makes the backend answer 4xx
    backend_failure: Provoke  # makes the backend answer 5xx


def fp32_request(x: npt.NDArray[np.float32], name: str = "x") -> InferRequest:
    return InferRequest(inputs=[InferInput(name, "FP32", x.shape, x)])


def text_request(*prompts: str, **parameters: Any) -> InferRequest:
    array = np.array([p.encode() for p in prompts], dtype=object)
    return InferRequest(
        inputs=[InferInput("text", "BYTES", array.shape, array)], parameters=parameters
    )
