"""The stand-in's servable manager: TF Serving's config-driven model lifecycle over ONNX files.

Follows TF Serving's rules: a reload replaces the whole config; each model serves the
versions its policy selects (specific versions, else the highest one found under its
`base_path`); versions leaving the config are unloaded and reported as END; a version that
fails to load is END with an error status. The one deliberate difference: a version
directory holds `model.onnx` (run with onnxruntime) instead of a SavedModel, and missing
paths fail the reload at once instead of being retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort

from mpfn.adapters.tfserving.reload import ModelConfigSpec

MODEL_FILE = "model.onnx"
PLATFORM = "tensorflow"

#: onnxruntime's type strings -> TF dtype names.
_ONNX_TO_TF = {
    "tensor(float)": "DT_FLOAT",
    "tensor(double)": "DT_DOUBLE",
    "tensor(float16)": "DT_HALF",
    "tensor(bfloat16)": "DT_BFLOAT16",
    "tensor(int8)": "DT_INT8",
    "tensor(int16)": "DT_INT16",
    "tensor(int32)": "DT_INT32",
    "tensor(int64)": "DT_INT64",
    "tensor(uint8)": "DT_UINT8",
    "tensor(uint16)": "DT_UINT16",
    "tensor(uint32)": "DT_UINT32",
    "tensor(uint64)": "DT_UINT64",
    "tensor(bool)": "DT_BOOL",
    "tensor(string)": "DT_STRING",
}


class ServingError(Exception):
    """A failure with a TF error code (= gRPC status code) and TF's message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    dtype: str  # TF dtype name
    shape: tuple[int, ...]  # -1: unknown size


@dataclass(frozen=True, slots=True)
class Servable:
    name: str
    version: int
    session: ort.InferenceSession
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]


@dataclass(frozen=True, slots=True)
class VersionStatus:
    state: str  # START, LOADING, AVAILABLE, UNLOADING, END
    code: int = 0
    message: str = ""


def _infos(args: Sequence[Any]) -> dict[str, TensorInfo]:
    return {
        a.name: TensorInfo(
            a.name,
            _ONNX_TO_TF.get(a.type, "DT_INVALID"),
            tuple(d if isinstance(d, int) else -1 for d in a.shape),
        )
        for a in args
    }


def open_servable(name: str, version: int, path: Path, threads: int) -> Servable:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return Servable(
        name, version, session, _infos(session.get_inputs()), _infos(session.get_outputs())
    )


class ServableManager:
    """What is configured, loaded and reported; reloads are serialised."""

    def __init__(self, intra_op_threads: int = 1) -> None:
        self.threads = intra_op_threads
        self.configs: dict[str, ModelConfigSpec] = {}
        self.servables: dict[tuple[str, int], Servable] = {}
        self.states: dict[str, dict[int, VersionStatus]] = {}
        self._lock = asyncio.Lock()

    async def reload(self, configs: Sequence[ModelConfigSpec]) -> None:
        """Serve exactly `configs`; raises the first error after applying what it could."""
        async with self._lock:
            wanted = self._aspired(configs)
            self.configs = {spec.name: spec for spec in configs}
            for key in [k for k in self.servables if k not in wanted]:
                del self.servables[key]
                self._set(key, VersionStatus("END"))
            failure: ServingError | None = None
            for key, path in sorted(wanted.items()):
                if key in self.servables:
                    continue
                self._set(key, VersionStatus("LOADING"))
                try:
                    servable = await asyncio.to_thread(open_servable, *key, path, self.threads)
                except Exception as exc:  # onnxruntime raises its own, unexported types
                    error = ServingError(
                        15, f"Failed to load servable {key[0]} version {key[1]} from {path}: {exc}"
                    )
                    self._set(key, VersionStatus("END", error.code, error.message))
                    failure = failure or error
                    continue
                self.servables[key] = servable
                self._set(key, VersionStatus("AVAILABLE"))
            if failure is not None:
                raise failure

    def _aspired(self, configs: Sequence[ModelConfigSpec]) -> dict[tuple[str, int], Path]:
        """(name, version) -> model file for every version the configs select."""
        seen: set[str] = set()
        out: dict[tuple[str, int], Path] = {}
        for spec in configs:
            if not spec.name or spec.name in seen:
                raise ServingError(
                    3, f"Illegal to list model {spec.name!r} multiple times or with an empty name"
                )
            seen.add(spec.name)
            if spec.platform != PLATFORM:
                raise ServingError(
                    3, f"Model platform {spec.platform!r} is not supported (model {spec.name})"
                )
            base = Path(spec.base_path)
            if not base.is_dir():
                raise ServingError(5, f"Could not find base path {base} for servable {spec.name}")
            on_disk = sorted(int(p.name) for p in base.iterdir() if p.name.isdigit())
            versions = spec.versions or tuple(on_disk[-1:])
            if not versions:
                raise ServingError(
                    5, f"No versions of servable {spec.name} found under base path {base}"
                )
            for version in versions:
                path = base / str(version) / MODEL_FILE
                if not path.is_file():
                    raise ServingError(
                        5, f"Could not find version {version} of servable {spec.name} at {path}"
                    )
                out[(spec.name, version)] = path
        return out

    def _set(self, key: tuple[str, int], status: VersionStatus) -> None:
        self.states.setdefault(key[0], {})[key[1]] = status

    # -- lookups -------------------------------------------------------------------------

    def find(self, name: str, version: int | None) -> Servable:
        """The servable for a request: that version, else the highest loaded one."""
        if version is not None:
            found = self.servables.get((name, version))
            if found is None:
                raise ServingError(
                    5, f"Servable not found for request: Specific({name}, {version})"
                )
            return found
        versions = [v for (n, v) in self.servables if n == name]
        if not versions:
            raise ServingError(5, f"Servable not found for request: Latest({name})")
        return self.servables[(name, max(versions))]

    def status(self, name: str, version: int | None) -> list[tuple[int, VersionStatus]]:
        states = self.states.get(name)
        if not states:
            raise ServingError(5, f"Could not find any versions of model {name}")
        if version is None:
            return sorted(states.items(), reverse=True)
        if version not in states:
            raise ServingError(5, f"Could not find version {version} of model {name}")
        return [(version, states[version])]
