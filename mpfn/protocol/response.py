"""Inference responses: encode outputs as JSON or binary-tensor data, and decode them.

`encode_infer_response` is the server side; `decode_infer_response` lets a client (or a
router checking a backend) read either form back into numpy arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy.typing as npt

from mpfn.protocol.datatypes import datatype_of
from mpfn.protocol.errors import ProtocolError
from mpfn.protocol.request import load_header, split_header_length
from mpfn.protocol.tensors import (
    binary_slice,
    dumps,
    element_count,
    json_data,
    json_tensor,
    parse_datatype,
    parse_shape,
    tensor_to_bytes,
)


@dataclass(frozen=True, slots=True)
class OutputTensor:
    """One output to send: its array, its v2 datatype (inferred when None) and its form."""

    name: str
    array: npt.NDArray[Any]
    binary: bool = False
    datatype: str | None = None


@dataclass(frozen=True, slots=True)
class InferResponse:
    """A decoded inference response."""

    model_name: str
    model_version: str | None
    outputs: dict[str, npt.NDArray[Any]]
    datatypes: dict[str, str]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


def encode_infer_response(
    model_name: str,
    model_version: str | None,
    outputs: Sequence[OutputTensor],
    *,
    request_id: str | None = None,
) -> tuple[bytes, int | None]:
    """Encode a response; returns (body, header length, or None when the body is all JSON)."""
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for out in outputs:
        datatype = out.datatype or datatype_of(out.array)
        entry: dict[str, Any] = {
            "name": out.name,
            "datatype": datatype,
            "shape": list(out.array.shape),
        }
        if out.binary:
            blob = tensor_to_bytes(datatype, out.array)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = json_data("output", out.name, datatype, out.array)
        entries.append(entry)
    doc: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        doc["model_version"] = model_version
    if request_id is not None:
        doc["id"] = request_id
    doc["outputs"] = entries
    header = dumps(doc)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def decode_infer_response(body: bytes, header_length: str | bytes | None = None) -> InferResponse:
    """Decode a v2 inference response body (JSON, or JSON header + binary outputs)."""
    length = split_header_length(header_length, len(body))
    doc, region = load_header(body, length)
    raw_outputs = doc.get("outputs")
    if not isinstance(raw_outputs, list):
        raise ProtocolError(502, "the inference response has no 'outputs' list")
    outputs: dict[str, npt.NDArray[Any]] = {}
    datatypes: dict[str, str] = {}
    offset = 0
    for entry in raw_outputs:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ProtocolError(502, "each response output must be an object with a 'name'")
        name = entry["name"]
        datatype = parse_datatype("output", name, entry.get("datatype"))
        shape = parse_shape("output", name, entry.get("shape"))
        count = element_count(shape)
        params = entry.get("parameters") or {}
        if isinstance(params, dict) and "binary_data_size" in params:
            flat, offset = binary_slice(
                "output",
                name,
                datatype,
                count,
                params["binary_data_size"],
                region,
                offset,
                length is not None,
            )
        else:
            flat = json_tensor("output", name, datatype, count, entry.get("data"))
        outputs[name] = flat.reshape(shape)
        datatypes[name] = datatype
    model_version = doc.get("model_version")
    return InferResponse(
        model_name=str(doc.get("model_name", "")),
        model_version=None if model_version is None else str(model_version),
        outputs=outputs,
        datatypes=datatypes,
        id=doc.get("id"),
        parameters=doc.get("parameters") or {},
    )
