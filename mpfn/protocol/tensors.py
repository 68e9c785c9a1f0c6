"""Decode and encode one tensor entry of a v2 body: JSON `data` or a binary-extension slice.

Shared by request parsing and response decoding. Each function checks exactly one thing
and raises `ProtocolError(400, ...)` naming the tensor, so clients learn what to fix.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from mpfn.protocol.datatypes import (
    DATATYPES,
    WIRE_DTYPES,
    as_bytes_element,
    bf16_round,
    element_size,
    numpy_dtype,
    tensor_from_bytes,
    tensor_to_bytes,
)
from mpfn.protocol.errors import ProtocolError

_INT_TYPES = {"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}
_FLOAT_TYPES = {"FP16", "FP32", "FP64", "BF16"}
#: numpy kinds accepted in JSON data for each family of datatypes.
_JSON_KINDS = {"BOOL": "b", "INT": "iu", "FLOAT": "fiu"}
#: numpy dtypes orjson serialises natively from an array (others go through tolist()).
_ORJSON_NATIVE = set(["f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1"])


def format_shape(shape: list[int] | tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def parse_shape(kind: str, name: str, shape: Any) -> tuple[int, ...]:
    """A non-negative integer shape, or a ProtocolError naming the tensor."""
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise ProtocolError(
            400, f"{kind} '{name}': shape must be a list of non-negative integers, got {shape!r}"
        )
    return tuple(shape)


def parse_datatype(kind: str, name: str, datatype: Any) -> str:
    if datatype not in DATATYPES:
        raise ProtocolError(
            400,
            f"{kind} '{name}': unknown datatype {datatype!r} "
            f"(one of {', '.join(sorted(DATATYPES))})",
        )
    return str(datatype)


def binary_slice(
    kind: str,
    name: str,
    datatype: str,
    count: int,
    size: Any,
    region: memoryview,
    offset: int,
    has_header: bool,
) -> tuple[npt.NDArray[Any], int]:
    """Cut one tensor's `size` bytes out of the binary region; returns (flat, next offset)."""
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ProtocolError(
            400, f"{kind} '{name}': binary_data_size must be a non-negative integer"
        )
    if not has_header:
        raise ProtocolError(
            400,
            f"{kind} '{name}' has binary_data_size but the request has no "
            "Inference-Header-Content-Length header",
        )
    itemsize = element_size(datatype)
    if itemsize is not None and size != count * itemsize:
        raise ProtocolError(
            400, f"binary data for {kind} '{name}' is {size} bytes, expected {count * itemsize}"
        )
    end = offset + size
    if end > len(region):
        raise ProtocolError(
            400,
            f"binary data for {kind} '{name}' needs {size} bytes at offset {offset}, "
            f"but only {len(region) - offset} bytes follow the inference header",
        )
    return tensor_from_bytes(datatype, region[offset:end], count, name), end


def json_tensor(kind: str, name: str, datatype: str, count: int, data: Any) -> npt.NDArray[Any]:
    """A flat array of `count` elements from JSON `data` (flat or nested row-major lists)."""
    if datatype == "BYTES":
        return _json_bytes(kind, name, count, data)
    try:
        arr = np.asarray(data)
    except (ValueError, OverflowError):
        raise ProtocolError(
            400, f"{kind} '{name}': data is not a rectangular array of numbers"
        ) from None
    family = "BOOL" if datatype == "BOOL" else "INT" if datatype in _INT_TYPES else "FLOAT"
    if family == "INT" and arr.dtype.kind in "fO":
        arr = _big_ints(data, arr)  # e.g. [0, 2**63]: numpy guesses float64, valid UINT64
    if arr.dtype.kind not in _JSON_KINDS[family] and arr.size:
        what = {"BOOL": "booleans", "INT": "integers", "FLOAT": "numbers"}[family]
        raise ProtocolError(400, f"{kind} '{name}': {datatype} data must be {what}")
    if arr.size != count:
        raise ProtocolError(
            400, f"{kind} '{name}': shape holds {count} elements, data has {arr.size}"
        )
    if family == "INT" and arr.size:
        info = np.iinfo(WIRE_DTYPES[datatype])  # type: ignore[type-var]
        if int(arr.min()) < info.min or int(arr.max()) > info.max:
            raise ProtocolError(400, f"{kind} '{name}': value out of range for {datatype}")
    flat = arr.reshape(-1).astype(numpy_dtype(datatype), copy=False)
    return bf16_round(flat) if datatype == "BF16" else flat


def _big_ints(data: Any, guessed: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """JSON integers beyond int64 as uint64 when they all fit, else numpy's guess."""
    try:
        exact = np.array(data, dtype=object)
    except ValueError:
        return guessed
    flat = exact.reshape(-1)
    if all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**64 for v in flat):
        return np.array(flat.tolist(), dtype=np.uint64).reshape(exact.shape)
    return guessed


def _json_bytes(kind: str, name: str, count: int, data: Any) -> npt.NDArray[Any]:
    items = _flatten(data)
    if len(items) != count:
        raise ProtocolError(
            400, f"{kind} '{name}': shape holds {count} elements, data has {len(items)}"
        )
    out = np.empty(count, dtype=object)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise ProtocolError(400, f"{kind} '{name}': BYTES data must be strings")
        out[i] = item.encode()
    return out


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(d, list) for d in data):
        return data
    flat: list[Any] = []
    for d in data:
        flat.extend(_flatten(d))
    return flat


def element_count(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def json_data(kind: str, name: str, datatype: str, array: npt.NDArray[Any]) -> Any:
    """The flat JSON `data` value for an array (numeric arrays stay numpy for orjson)."""
    if datatype == "BYTES":
        out: list[str] = []
        for item in np.asarray(array, dtype=object).ravel():
            try:
                out.append(as_bytes_element(item).decode())
            except UnicodeDecodeError:
                raise ProtocolError(
                    400,
                    f"{kind} '{name}' holds bytes that are not UTF-8; request it with binary_data",
                ) from None
        return out
    if datatype == "BF16":
        array = np.asarray(array, dtype=np.float32)
    flat = np.ascontiguousarray(array).reshape(-1)
    if flat.dtype.byteorder == ">" or f"{flat.dtype.kind}{flat.dtype.itemsize}" not in (
        _ORJSON_NATIVE
    ):
        return flat.tolist()
    return flat


def dumps(doc: Any) -> bytes:
    """Serialise a v2 JSON document, numpy arrays included."""
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def loads(body: bytes | memoryview) -> Any:
    return orjson.loads(body)


__all__ = [
    "binary_slice",
    "dumps",
    "element_count",
    "format_shape",
    "json_data",
    "json_tensor",
    "loads",
    "parse_datatype",
    "parse_shape",
    "tensor_to_bytes",
]
