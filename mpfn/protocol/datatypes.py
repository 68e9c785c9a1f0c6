"""Open Inference Protocol v2 datatypes and their raw little-endian byte layouts.

Maps v2 datatype names to numpy dtypes and converts tensors to and from the binary-tensor
wire format (fixed-size elements little-endian; BYTES as 4-byte little-endian length
prefixes; BF16 as the upper half of an FP32). Pure functions only: no I/O, no HTTP.

BYTES tensors are numpy object arrays of `bytes`; BF16 tensors are float32 arrays holding
exactly representable bfloat16 values.
"""

from __future__ import annotations

import struct
from typing import Final

import numpy as np
import numpy.typing as npt

from mpfn.protocol.errors import ProtocolError

#: Datatype name -> little-endian numpy dtype of one element on the wire.
WIRE_DTYPES: Final[dict[str, np.dtype[np.generic]]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BF16": np.dtype("<u2"),
}

#: Every datatype the protocol defines.
DATATYPES: Final[frozenset[str]] = frozenset([*WIRE_DTYPES, "BYTES"])

_BY_KIND: Final[dict[tuple[str, int], str]] = {
    (dt.kind, dt.itemsize): name for name, dt in WIRE_DTYPES.items() if name != "BF16"
}

_LEN = struct.Struct("<I")


def numpy_dtype(datatype: str) -> np.dtype[np.generic]:
    """The in-memory numpy dtype for `datatype` (object for BYTES, float32 for BF16)."""
    if datatype == "BYTES":
        return np.dtype(object)
    if datatype == "BF16":
        return np.dtype(np.float32)
    return WIRE_DTYPES[datatype].newbyteorder("=")


def datatype_of(array: npt.NDArray[np.generic]) -> str:
    """The v2 datatype name of a numpy array (object, str and bytes arrays are BYTES)."""
    kind = array.dtype.kind
    if kind in "OSU":
        return "BYTES"
    name = _BY_KIND.get((kind, array.dtype.itemsize))
    if name is None:
        raise ProtocolError(400, f"numpy dtype {array.dtype} has no v2 datatype")
    return name


def element_size(datatype: str) -> int | None:
    """Bytes per element on the wire, or None for variable-length BYTES."""
    wire = WIRE_DTYPES.get(datatype)
    return None if wire is None else wire.itemsize


def tensor_from_bytes(
    datatype: str, raw: bytes | memoryview, count: int, name: str = "tensor"
) -> npt.NDArray[np.generic]:
    """Decode `count` elements of `datatype` from raw wire bytes into a flat array.

    The caller has already checked fixed-size lengths; BYTES framing is checked here.
    """
    if datatype == "BYTES":
        return _bytes_elements(raw, count, name)
    wire = WIRE_DTYPES[datatype]
    flat = np.frombuffer(raw, dtype=wire, count=count)
    if datatype == "BF16":
        return (flat.astype(np.uint32) << 16).view(np.float32)
    if wire.byteorder == ">":  # pragma: no cover - big-endian hosts only
        flat = flat.astype(wire.newbyteorder("="))
    return flat


def tensor_to_bytes(datatype: str, array: npt.NDArray[np.generic]) -> bytes:
    """Encode an array as raw wire bytes in row-major order."""
    if datatype == "BYTES":
        return _encode_bytes_elements(array)
    if datatype == "BF16":
        bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
        return (bits >> 16).astype("<u2").tobytes()
    return np.ascontiguousarray(array, dtype=WIRE_DTYPES[datatype]).tobytes()


def bf16_round(array: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Truncate float32 values to the nearest bfloat16 toward zero, as the wire format does."""
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
    return (bits & np.uint32(0xFFFF0000)).view(np.float32)


def as_bytes_element(value: object) -> bytes:
    """One BYTES element from a str, bytes or numpy scalar."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, np.bytes_ | np.str_):
        return as_bytes_element(value.item())
    return str(value).encode()


def _encode_bytes_elements(array: npt.NDArray[np.generic]) -> bytes:
    parts: list[bytes] = []
    for item in np.asarray(array, dtype=object).ravel(order="C"):
        data = as_bytes_element(item)
        parts.append(_LEN.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def _bytes_elements(raw: bytes | memoryview, count: int, name: str) -> npt.NDArray[np.generic]:
    view = memoryview(raw)
    out = np.empty(count, dtype=object)
    offset = 0
    for i in range(count):
        if offset + 4 > len(view):
            raise ProtocolError(
                400, f"binary data for BYTES tensor '{name}' ends inside element {i}'s length"
            )
        (length,) = _LEN.unpack_from(view, offset)
        offset += 4
        if offset + length > len(view):
            raise ProtocolError(
                400,
                f"binary data for BYTES tensor '{name}': element {i} declares {length} bytes, "
                f"only {len(view) - offset} remain",
            )
        out[i] = bytes(view[offset : offset + length])
        offset += length
    if offset != len(view):
        raise ProtocolError(
            400,
            f"binary data for BYTES tensor '{name}' has {len(view) - offset} bytes "
            f"after its {count} elements",
        )
    return out
