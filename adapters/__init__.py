"""Backend adapters: the plug-in interface, the built-in adapters and mpfn's ONNX Runtime worker.

The interface types are imported eagerly; the adapter classes on first use, so importing
`mpfn.adapters` (for instance to run the worker) pulls in no backend client library.
Adapters are found by kind through the `mpfn.adapters` entry-point group (`registry`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mpfn.adapters.base import (
    Adapter,
    AdapterConfig,
    AdapterError,
    AdapterFactory,
    AdapterStats,
    ChatAdapter,
    LoadResult,
)

if TYPE_CHECKING:
    from mpfn.adapters.openai import OpenAIAdapter
    from mpfn.adapters.ort import OrtAdapter
    from mpfn.adapters.tfserving.adapter import TFServingAdapter
    from mpfn.adapters.torchserve.adapter import TorchServeAdapter
    from mpfn.adapters.triton.adapter import TritonAdapter

_LAZY = {
    "OrtAdapter": "mpfn.adapters.ort",
    "OpenAIAdapter": "mpfn.adapters.openai",
    "TFServingAdapter": "mpfn.adapters.tfserving.adapter",
    "TorchServeAdapter": "mpfn.adapters.torchserve.adapter",
    "TritonAdapter": "mpfn.adapters.triton.adapter",
}

__all__ = [
    "Adapter",
    "AdapterConfig",
    "AdapterError",
    "AdapterFactory",
    "AdapterStats",
    "ChatAdapter",
    "LoadResult",
    "OpenAIAdapter",
    "OrtAdapter",
    "TFServingAdapter",
    "TorchServeAdapter",
    "TritonAdapter",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mpfn.adapters' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
