"""Build TorchServe model archives (`.mar`) from mpfn model artifacts with torch-model-archiver.

A `.mar` holds the artifact (`model.onnx` or `model.pt`), `mpfn-model.json` (name, version,
format and tensor specs from the `ModelVersion`) and `mpfn_handler.py` (a copy of
`torchserve_handler.py`). Archives are named `<name>-<version>-<digest12>.mar`, so a
model store can hold many versions and an archive is rebuilt only when it is missing.
torch-model-archiver runs as a child process with its own temporary directory (it stages
files under `$TMPDIR/<model name>`), and the finished archive is renamed into place, so
concurrent builds never see each other's partial files.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from mpfn.documents import ModelVersion

HANDLER_SOURCE = Path(__file__).with_name("handler.py")
HANDLER_FILE = "mpfn_handler.py"
SPEC_FILE = "mpfn-model.json"
SUPPORTED_FORMATS = ("onnx", "torchscript")


class ArchiveError(RuntimeError):
    """torch-model-archiver failed."""


class UnsupportedModel(ValueError):
    """The model document cannot be served by the archive's handler."""


def mar_name(model: ModelVersion) -> str:
    """The archive's file name in the model store."""
    if model.artifact is None:
        return f"{model.name}.mar"
    digest = model.artifact.blob_digest.removeprefix("sha256:")[:12]
    return f"{model.name}-{model.version}-{digest}.mar"


def model_spec(model: ModelVersion) -> dict[str, Any]:
    """What the handler needs to know about the model (`mpfn-model.json`)."""
    if model.format not in SUPPORTED_FORMATS:
        raise UnsupportedModel(
            f"TorchServe archives are built for {' and '.join(SUPPORTED_FORMATS)} models, "
            f"not {model.format!r}"
        )
    if not model.inputs or not model.outputs:
        raise UnsupportedModel(
            f"model {model.name}:{model.version} needs declared inputs and outputs"
        )
    return {
        "name": model.name,
        "version": model.version,
        "format": model.format,
        "inputs": [spec.model_dump() for spec in model.inputs],
        "outputs": [spec.model_dump() for spec in model.outputs],
    }


def serialized_name(model: ModelVersion) -> str:
    return "model.onnx" if model.format == "onnx" else "model.pt"


def archiver_argv(model: ModelVersion, workdir: Path, export: Path) -> list[str]:
    """The torch-model-archiver command line for files staged in `workdir`."""
    return [
        sys.executable,
        "-m",
        "model_archiver.model_packaging",
        "--model-name",
        model.name,
        "--version",
        model.version,
        "--serialized-file",
        str(workdir / serialized_name(model)),
        "--handler",
        str(workdir / HANDLER_FILE),
        "--extra-files",
        str(workdir / SPEC_FILE),
        "--export-path",
        str(export),
        "--archive-format",
        "default",
        "--force",
    ]


async def build_mar(model: ModelVersion, artifact: Path, model_store: Path) -> Path:
    """Archive `artifact` for `model` into `model_store` (kept if already there)."""
    target = Path(model_store) / mar_name(model)
    if target.is_file():
        return target
    spec = model_spec(model)
    model_store.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=".mar-build-", dir=model_store))
    try:
        await asyncio.to_thread(_stage, workdir, model, spec, artifact)
        export = workdir / "export"
        export.mkdir()
        (workdir / "tmp").mkdir()
        proc = await asyncio.create_subprocess_exec(
            *archiver_argv(model, workdir, export),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "TMPDIR": str(workdir / "tmp")},
        )
        output, _ = await proc.communicate()
        built = export / f"{model.name}.mar"
        if proc.returncode != 0 or not built.is_file():
            text = output.decode(errors="replace").strip()[-500:]
            raise ArchiveError(f"torch-model-archiver failed ({proc.returncode}): {text}")
        os.chmod(built, 0o644)
        os.replace(built, target)
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, True)
    return target


def _stage(workdir: Path, model: ModelVersion, spec: dict[str, Any], artifact: Path) -> None:
    shutil.copyfile(artifact, workdir / serialized_name(model))
    shutil.copyfile(HANDLER_SOURCE, workdir / HANDLER_FILE)
    (workdir / SPEC_FILE).write_text(json.dumps(spec, indent=2))
