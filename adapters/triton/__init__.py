"""Triton Inference Server pools: the adapter (v2 HTTP + repository API), the model
repository layout it writes, and the python-backend model that runs inside Triton."""

from __future__ import annotations

from mpfn.adapters.triton.adapter import TritonAdapter

__all__ = ["TritonAdapter"]
