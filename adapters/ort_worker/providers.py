"""Choosing the ONNX Runtime execution provider: a pure decision, tested without hardware.

The worker is configured with a preference list; the first entry the host's onnxruntime
build offers wins, with the CPU provider kept behind it as the fallback for operators the
accelerator does not implement.
"""

from __future__ import annotations

from collections.abc import Sequence

CPU = "CPUExecutionProvider"

#: Accelerators first (by how commonly they are deployed), then the CPU.
DEFAULT_PREFERENCE: tuple[str, ...] = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "MIGraphXExecutionProvider",
    "CoreMLExecutionProvider",
    "DmlExecutionProvider",
    "OpenVINOExecutionProvider",
    CPU,
)


class NoProvider(ValueError):
    """None of the preferred providers is available on this host."""


def choose_providers(preferred: Sequence[str], available: Sequence[str]) -> list[str]:
    """The provider list to pass to `InferenceSession`: the first preferred one available,
    followed by the CPU provider as fallback when that is available and not already chosen.
    """
    offered = set(available)
    for name in preferred:
        if name in offered:
            chosen = [name]
            if name != CPU and CPU in offered:
                chosen.append(CPU)
            return chosen
    raise NoProvider(
        f"none of the execution providers {', '.join(preferred) or '(none)'} is available "
        f"(this onnxruntime offers {', '.join(available) or 'none'})"
    )


def parse_provider_list(text: str) -> list[str]:
    """`CUDAExecutionProvider,CPUExecutionProvider` -> list; short names (`cuda`) expand."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise NoProvider("the provider list is empty")
    return [_expand(name) for name in names]


def _expand(name: str) -> str:
    if name.endswith("ExecutionProvider"):
        return name
    for full in DEFAULT_PREFERENCE:
        if full.lower() == f"{name.lower()}executionprovider":
            return full
    return f"{name}ExecutionProvider"
