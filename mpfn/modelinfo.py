"""Read tensor signatures out of model files (ONNX today) to fill model documents.

Imports `onnx` lazily; a missing package or an unreadable model yields no signature
rather than an error, because the signature can also be given on the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mpfn.documents import Datatype, TensorSpec

if TYPE_CHECKING:
    from onnx import ValueInfoProto

# ONNX TensorProto element types -> Open Inference Protocol datatypes.
_ONNX_TO_V2: dict[int, Datatype] = {
    1: "FP32",
    2: "UINT8",
    3: "INT8",
    4: "UINT16",
    5: "INT16",
    6: "INT32",
    7: "INT64",
    8: "BYTES",
    9: "BOOL",
    10: "FP16",
    11: "FP64",
    12: "UINT32",
    13: "UINT64",
    16: "BF16",
}


class SignatureError(ValueError):
    """The model file could not be parsed."""


def onnx_signature(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of an ONNX model; symbolic/unknown dimensions become -1."""
    try:
        import onnx
    except ImportError:
        return [], []
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others
        raise SignatureError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    initializers = {i.name for i in model.graph.initializer}

    def spec(value: ValueInfoProto) -> TensorSpec | None:
        tensor = value.type.tensor_type
        datatype = _ONNX_TO_V2.get(tensor.elem_type)
        if datatype is None:
            return None
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        return TensorSpec(name=value.name, datatype=datatype, shape=dims)

    inputs = [s for v in model.graph.input if v.name not in initializers and (s := spec(v))]
    outputs = [s for v in model.graph.output if (s := spec(v))]
    return inputs, outputs


def parse_tensor_arg(text: str) -> TensorSpec:
    """`name:FP32:-1,16` -> TensorSpec (command-line form)."""
    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError(f"invalid tensor {text!r}: expected NAME:DATATYPE:DIM,DIM,...")
    name, datatype, dims = parts
    try:
        shape = [int(d) for d in dims.split(",") if d.strip()]
    except ValueError:
        raise ValueError(f"invalid tensor {text!r}: dimensions must be integers") from None
    # the datatype is checked when the spec is validated
    return TensorSpec.model_validate({"name": name, "datatype": datatype.upper(), "shape": shape})
