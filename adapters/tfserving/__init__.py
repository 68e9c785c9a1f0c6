"""TensorFlow Serving pools: the adapter (REST predict), the v2 <-> TF Serving JSON
codec, and model-config reloads over TF Serving's gRPC ModelService."""

from __future__ import annotations

from mpfn.adapters.tfserving.adapter import TFServingAdapter

__all__ = ["TFServingAdapter"]
