"""TorchServe pools: the adapter (inference + management APIs), the .mar archive builder,
and the handler that runs inside TorchServe's workers."""

from __future__ import annotations

from mpfn.adapters.torchserve.adapter import TorchServeAdapter

__all__ = ["TorchServeAdapter"]
