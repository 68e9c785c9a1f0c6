"""How to install an optional extra: the command that works for this installation.

mpfn is installed from its checkout (`scripts/install`, or `pip install -e '.[EXTRA]'`),
not from a package index, so hints name the checkout and the interpreter that runs mpfn.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path


def _short(path: Path) -> str:
    """`path` relative to the working directory when that is shorter."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return rel if len(rel) < len(str(path)) else str(path)


def checkout() -> Path | None:
    """The source tree mpfn runs from (an editable install), if any."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def install_hint(extra: str) -> str:
    """The command that installs `extra` into the environment running mpfn."""
    python = _short(Path(sys.executable))
    root = checkout()
    if root is None:
        return f"from mpfn's checkout: {shlex.quote(python)} -m pip install -e '.[{extra}]'"
    target = "." if root == Path.cwd().resolve() else _short(root)
    return f"{shlex.quote(python)} -m pip install -e '{target}[{extra}]'"


#: The extra that brings each optional top-level module.
EXTRA_OF_MODULE = {
    "boto3": "aws",
    "botocore": "aws",
    "mangum": "aws",
    "google": "gcp",
    "oras": "oci",
    "onnxruntime": "worker",
    "onnx": "worker",
    "cryptography": "worker",
    "grpc": "tfserving",
    "model_archiver": "torchserve",
    "prophet": "warmer",
    "matplotlib": "warmer",
}


def missing_module_hint(module: str | None) -> str:
    """How to install a module mpfn imports only when needed, by its extra when known."""
    top = (module or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        return f"install the extra it belongs to, e.g. {install_hint('all')}"
    return f"it comes with the {extra} extra: {install_hint(extra)}"
