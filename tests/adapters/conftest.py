"""Session fixtures for the adapter tests: each backend's real server lives in its own
`servers_<kind>.py` module and is imported here, so adding a backend adds one import."""

from __future__ import annotations

from .servers_openai import llama_server, openai_case
from .servers_ort import demo_artifact, ort_case, ort_server
from .servers_tfserving import tfserving_case, tfserving_server
from .servers_torchserve import torchserve_case, torchserve_models, torchserve_server
from .servers_triton import triton_case, triton_models, triton_server

__all__ = [
    "demo_artifact",
    "llama_server",
    "openai_case",
    "ort_case",
    "ort_server",
    "tfserving_case",
    "tfserving_server",
    "torchserve_case",
    "torchserve_models",
    "torchserve_server",
    "triton_case",
    "triton_models",
    "triton_server",
]
