"""TF Serving's REST JSON for tensors (`api_rest.md`), to and from numpy: pure functions.

Predict bodies come in two shapes: row (`{"instances": [...]}` -> `{"predictions": [...]}`)
and columnar (`{"inputs": ...}` -> `{"outputs": ...}`). A single named tensor is written
without its name; several are objects keyed by name. Strings are JSON strings, binary
strings `{"b64": ...}` (on output: tensors whose name ends in `_bytes`). Floats may be
`NaN`/`Infinity` tokens, which strict JSON parsers reject, so parsing falls back to Python's
`json`. Used by the `tfserving` adapter and by its stand-in server.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from mpfn.protocol import numpy_dtype

#: TF dtype names <-> v2 datatypes.
TF_TO_V2: dict[str, str] = {
    "DT_FLOAT": "FP32",
    "DT_DOUBLE": "FP64",
    "DT_HALF": "FP16",
    "DT_BFLOAT16": "BF16",
    "DT_INT8": "INT8",
    "DT_INT16": "INT16",
    "DT_INT32": "INT32",
    "DT_INT64": "INT64",
    "DT_UINT8": "UINT8",
    "DT_UINT16": "UINT16",
    "DT_UINT32": "UINT32",
    "DT_UINT64": "UINT64",
    "DT_BOOL": "BOOL",
    "DT_STRING": "BYTES",
}


class TensorJSONError(ValueError):
    """A JSON value that is not a well-formed tensor of the wanted type."""


def loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)  # NaN / Infinity tokens


def dumps(doc: Any, *, finite: bool = True) -> bytes:
    """JSON with numpy arrays; `finite=False` writes NaN/Infinity tokens as TF Serving does."""
    if finite:
        return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    return json.dumps(doc, default=_plain).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def all_finite(arrays: Iterable[npt.NDArray[Any]]) -> bool:
    """True unless a float array holds NaN or an infinity (strict JSON cannot carry them)."""
    return all(a.dtype.kind != "f" or bool(np.all(np.isfinite(a))) for a in arrays)


def tensor_value(array: npt.NDArray[Any], datatype: str, *, b64: bool = False) -> Any:
    """A numpy array as TF's nested-list JSON value (numpy kept for orjson when possible)."""
    if datatype == "BYTES":
        flat = [_string_value(item, b64) for item in np.asarray(array, dtype=object).ravel()]
        return _nest(flat, array.shape)
    if array.ndim == 0:
        return array.item()
    return np.ascontiguousarray(array)


def _string_value(item: Any, b64: bool) -> Any:
    data = item if isinstance(item, bytes) else str(item).encode()
    if not b64:
        try:
            return data.decode()
        except UnicodeDecodeError:
            pass  # not text: sent base64-encoded, as TF Serving takes binary strings
    return {"b64": base64.b64encode(data).decode()}


def _nest(flat: list[Any], shape: Sequence[int]) -> Any:
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return flat
    step = math.prod(shape[1:])
    return [_nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def dense_shape(value: Any) -> tuple[int, ...]:
    """The shape TF reads from a nested list: the length at each level of first elements."""
    shape: list[int] = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return tuple(shape)


def tensor_array(value: Any, datatype: str | None, name: str = "tensor") -> npt.NDArray[Any]:
    """A nested-list JSON value as a numpy array of `datatype` (inferred when None)."""
    shape = dense_shape(value)
    flat = _flatten(value, shape, name)
    if datatype == "BYTES" or (datatype is None and flat and _is_string(flat[0])):
        out = np.empty(len(flat), dtype=object)
        for i, item in enumerate(flat):
            out[i] = _string_bytes(item, name)
        return out.reshape(shape)
    if any(_is_string(item) for item in flat):
        raise TensorJSONError(f"tensor '{name}': expected numbers, got strings")
    try:
        if datatype is None:
            return np.asarray(flat).reshape(shape)
        arr = np.asarray(flat, dtype=np.float64 if datatype in ("FP16", "BF16") else None)
        return arr.astype(numpy_dtype(datatype)).reshape(shape)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TensorJSONError(f"tensor '{name}': {exc}") from None


def _is_string(item: Any) -> bool:
    return isinstance(item, str) or (isinstance(item, dict) and "b64" in item)


def _string_bytes(item: Any, name: str) -> bytes:
    if isinstance(item, str):
        return item.encode()
    if isinstance(item, dict) and len(item) == 1 and isinstance(item.get("b64"), str):
        try:
            return base64.b64decode(item["b64"], validate=True)
        except ValueError:
            raise TensorJSONError(f"tensor '{name}': unable to base64 decode") from None
    raise TensorJSONError(f"tensor '{name}': expected a string or {{\"b64\": ...}}")


def _flatten(value: Any, shape: tuple[int, ...], name: str, level: int = 0) -> list[Any]:
    if level == len(shape):
        if isinstance(value, list):
            raise TensorJSONError(f"tensor '{name}': list at unexpected level {level}")
        return [value]
    if not isinstance(value, list) or len(value) != shape[level]:
        raise TensorJSONError(
            f"tensor '{name}': encountered list at unexpected size at level {level}, "
            f"expected size {shape[level]}"
        )
    out: list[Any] = []
    for item in value:
        out.extend(_flatten(item, shape, name, level + 1))
    return out


# -- predict bodies -----------------------------------------------------------------------


def predict_body(
    inputs: Mapping[str, tuple[str, npt.NDArray[Any]]], *, row: bool, signature: str | None
) -> bytes:
    """A predict request for `{name: (datatype, array)}` in row or columnar format."""
    doc: dict[str, Any] = {}
    if signature:
        doc["signature_name"] = signature
    finite = all_finite(array for _, array in inputs.values())
    values = {
        name: tensor_value(array, datatype, b64=name.endswith("_bytes"))
        for name, (datatype, array) in inputs.items()
    }
    if not row:
        doc["inputs"] = next(iter(values.values())) if len(values) == 1 else values
        return dumps(doc, finite=finite)
    batch = {array.shape[0] if array.ndim else None for _, array in inputs.values()}
    if len(batch) != 1 or None in batch:
        raise TensorJSONError(
            "row format needs every input to share its first dimension; use columnar"
        )
    if len(values) == 1:
        doc["instances"] = next(iter(values.values()))
    else:
        size = batch.pop() or 0
        doc["instances"] = [{n: v[i] for n, v in values.items()} for i in range(size)]
    return dumps(doc, finite=finite)


def predict_outputs(
    doc: Any, *, row: bool, names: Sequence[str], datatypes: Mapping[str, str]
) -> dict[str, npt.NDArray[Any]]:
    """Arrays from a predict response; `names` are the model's output names in order."""
    if not isinstance(doc, dict):
        raise TensorJSONError("the predict response is not a JSON object")
    key = "predictions" if row else "outputs"
    if key not in doc:
        raise TensorJSONError(f"the predict response has no '{key}'")
    value = doc[key]
    if row:
        if not isinstance(value, list):
            raise TensorJSONError("'predictions' is not a list")
        if value and isinstance(value[0], dict) and not _is_string(value[0]):
            if not all(isinstance(item, dict) for item in value):
                raise TensorJSONError("'predictions' mixes objects and values")
            return {
                k: tensor_array([item.get(k) for item in value], datatypes.get(k), k)
                for k in value[0]
            }
        name = _single_name(names)
        return {name: tensor_array(value, datatypes.get(name), name)}
    if isinstance(value, dict) and not _is_string(value):
        return {k: tensor_array(v, datatypes.get(k), k) for k, v in value.items()}
    name = _single_name(names)
    return {name: tensor_array(value, datatypes.get(name), name)}


def _single_name(names: Sequence[str]) -> str:
    if len(names) > 1:
        raise TensorJSONError(
            f"the response holds one unnamed tensor but the model has outputs {list(names)}"
        )
    return names[0] if names else "outputs"
