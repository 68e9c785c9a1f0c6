"""Triton model repository entries generated from a `ModelVersion`: config and files.

One mpfn model version becomes one Triton model named `<name>.<version>` with a single
version directory `1/`, so several versions of a model can be loaded side by side and each
is loaded and unloaded on its own. Two backends are generated:

- `onnxruntime` (production): `platform: "onnxruntime_onnx"` and `1/model.onnx`; TorchScript
  artifacts get `platform: "pytorch_libtorch"` and `1/model.pt`.
- `python`: Triton's python backend running `1/model.py` (`triton_python_model.py`), which
  opens the ONNX artifact with onnxruntime. For Triton builds without the onnxruntime
  backend; the Python environment Triton runs it in needs numpy and onnxruntime.

The same `TritonModel` is either uploaded with a load request (`load_parameters`: the
repository extension's `config` + `file:<path>` override) or written into a repository
directory the server reads (`write_repository`, `config_pbtxt`). Pure except
`write_repository` and `read_template`; no network I/O.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mpfn.documents import ModelVersion, TensorSpec

TritonBackend = Literal["onnxruntime", "python"]
VERSION_DIR = "1"
MODEL_PARAM = "mpfn.model"
VERSION_PARAM = "mpfn.version"
FILE_PARAM = "mpfn.model_file"
PYTHON_TEMPLATE = Path(__file__).with_name("python_model.py")

#: mpfn (v2 protocol) datatype -> Triton model-config data type.
TRITON_DTYPES: dict[str, str] = {
    "BOOL": "TYPE_BOOL",
    "UINT8": "TYPE_UINT8",
    "UINT16": "TYPE_UINT16",
    "UINT32": "TYPE_UINT32",
    "UINT64": "TYPE_UINT64",
    "INT8": "TYPE_INT8",
    "INT16": "TYPE_INT16",
    "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64",
    "FP16": "TYPE_FP16",
    "FP32": "TYPE_FP32",
    "FP64": "TYPE_FP64",
    "BF16": "TYPE_BF16",
    "BYTES": "TYPE_STRING",
}
# Fields whose string values are protobuf enums (written unquoted in config.pbtxt).
_ENUM_FIELDS = frozenset({"data_type", "kind", "format"})
# Map fields (`map<string, ModelParameter>`): JSON objects, repeated key/value in pbtxt.
_MAP_FIELDS = frozenset({"parameters"})


class TritonRepoError(ValueError):
    """The model cannot be expressed as a Triton model (format, datatype, backend)."""


@dataclass(frozen=True)
class TritonModel:
    """A Triton model: its name, its config (protobuf JSON field names) and its files."""

    name: str
    config: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)  # "1/model.onnx" -> content


def triton_model_name(model: ModelVersion) -> str:
    """The Triton model that serves `model`: `<name>.<version>`."""
    return f"{model.name}.{model.version}"


def model_config(
    model: ModelVersion,
    *,
    backend: TritonBackend = "onnxruntime",
    instance_kind: str = "KIND_CPU",
    instances: int = 1,
    max_batch_size: int = 0,
) -> dict[str, Any]:
    """The Triton model configuration for `model` (JSON form of `ModelConfig`).

    `max_batch_size > 0` turns on Triton's dynamic batching; every tensor's first dimension
    must then be -1 (the batch) and is left out of `dims`, as Triton requires.
    """
    if not model.inputs or not model.outputs:
        raise TritonRepoError(
            f"model {model.name}:{model.version} needs declared inputs and outputs for Triton"
        )
    if max_batch_size < 0:
        raise TritonRepoError("max_batch_size must be >= 0")
    config: dict[str, Any] = {"name": triton_model_name(model)}
    if backend == "python":
        if model.format != "onnx":
            raise TritonRepoError(
                f"the python backend model runs ONNX artifacts, not {model.format!r}"
            )
        config["backend"] = "python"
    elif model.format == "onnx":
        config["platform"] = "onnxruntime_onnx"
    elif model.format == "torchscript":
        config["platform"] = "pytorch_libtorch"
    else:
        raise TritonRepoError(f"Triton cannot serve {model.format!r} artifacts")
    config["max_batch_size"] = max_batch_size
    config["input"] = [_tensor(spec, max_batch_size) for spec in model.inputs]
    config["output"] = [_tensor(spec, max_batch_size) for spec in model.outputs]
    config["instance_group"] = [{"kind": instance_kind, "count": instances}]
    if max_batch_size > 0:
        config["dynamic_batching"] = {}
    params = {MODEL_PARAM: model.name, VERSION_PARAM: model.version}
    if backend == "python":
        params[FILE_PARAM] = artifact_filename(model, backend)
    config["parameters"] = {key: {"string_value": value} for key, value in params.items()}
    return config


def _tensor(spec: TensorSpec, max_batch_size: int) -> dict[str, Any]:
    dims = list(spec.shape)
    if max_batch_size > 0:
        if not dims or dims[0] != -1:
            raise TritonRepoError(
                f"tensor {spec.name!r}: batching needs -1 as the first dimension, got {dims}"
            )
        dims = dims[1:]
    if not dims:
        dims = [1]  # Triton has no rank-0 tensors in model configs.
    return {"name": spec.name, "data_type": TRITON_DTYPES[spec.datatype], "dims": dims}


def artifact_filename(model: ModelVersion, backend: TritonBackend = "onnxruntime") -> str:
    """The artifact's file name inside the version directory."""
    if backend == "python" or model.format == "onnx":
        return "model.onnx"
    if model.format == "torchscript":
        return "model.pt"
    raise TritonRepoError(f"Triton cannot serve {model.format!r} artifacts")


def read_template() -> bytes:
    """The python-backend `model.py` that runs an ONNX artifact with onnxruntime."""
    return PYTHON_TEMPLATE.read_bytes()


def build_triton_model(
    model: ModelVersion,
    artifact: bytes,
    *,
    backend: TritonBackend = "onnxruntime",
    instance_kind: str = "KIND_CPU",
    instances: int = 1,
    max_batch_size: int = 0,
) -> TritonModel:
    """The complete Triton model for `model` whose artifact file holds `artifact`."""
    config = model_config(
        model,
        backend=backend,
        instance_kind=instance_kind,
        instances=instances,
        max_batch_size=max_batch_size,
    )
    files = {f"{VERSION_DIR}/{artifact_filename(model, backend)}": artifact}
    if backend == "python":
        files[f"{VERSION_DIR}/model.py"] = read_template()
    return TritonModel(triton_model_name(model), config, files)


def load_parameters(triton_model: TritonModel) -> dict[str, str]:
    """Parameters of a repository-extension load request that upload the whole model."""
    params = {"config": json.dumps(triton_model.config, separators=(",", ":"))}
    for path, content in triton_model.files.items():
        params[f"file:{path}"] = base64.b64encode(content).decode("ascii")
    return params


def write_repository(triton_model: TritonModel, root: Path) -> Path:
    """Write `<root>/<name>/config.pbtxt` and the files; replaces an older copy atomically."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    target = root / triton_model.name
    staging = Path(tempfile.mkdtemp(prefix=f".{triton_model.name}.", dir=root))
    try:
        (staging / "config.pbtxt").write_text(config_pbtxt(triton_model.config))
        for rel, content in triton_model.files.items():
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        os.chmod(staging, 0o755)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{triton_model.name}.old.", dir=root))
            os.replace(target, old / "model")
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
        raise
    return target


def config_pbtxt(config: Mapping[str, Any]) -> str:
    """Render a model config (JSON form) as protobuf text format for `config.pbtxt`."""
    return "".join(_fields(config, 0))


def _fields(message: Mapping[str, Any], depth: int) -> list[str]:
    pad = "  " * depth
    lines: list[str] = []
    for key, value in message.items():
        if key in _MAP_FIELDS and isinstance(value, Mapping):
            for map_key, map_value in value.items():
                entry = {"key": map_key, "value": map_value}
                lines.append(f"{pad}{key} {{\n")
                lines.extend(_fields(entry, depth + 1))
                lines.append(f"{pad}}}\n")
        elif isinstance(value, Mapping):
            lines.append(f"{pad}{key} {{\n")
            lines.extend(_fields(value, depth + 1))
            lines.append(f"{pad}}}\n")
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            lines.append(f"{pad}{key} [\n")
            for i, item in enumerate(value):
                lines.append(f"{pad}  {{\n")
                lines.extend(_fields(item, depth + 2))
                lines.append(f"{pad}  }}{',' if i < len(value) - 1 else ''}\n")
            lines.append(f"{pad}]\n")
        elif isinstance(value, list):
            items = ", ".join(_scalar(key, v) for v in value)
            lines.append(f"{pad}{key}: [ {items} ]\n")
        else:
            lines.append(f"{pad}{key}: {_scalar(key, value)}\n")
    return lines


def _scalar(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return value if key in _ENUM_FIELDS else json.dumps(value, ensure_ascii=False)
    raise TritonRepoError(f"cannot write {key}={value!r} into config.pbtxt")
