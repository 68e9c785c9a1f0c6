"""KServe v1 prediction protocol over the Open Inference Protocol v2, for one-input models.

`{"instances": [...]}` (or `{"inputs": [...]}`) becomes a v2 infer request on the model's
single input, the instances stacked as the rows of one tensor of the input's datatype;
the v2 answer becomes `{"predictions": [...]}`: the single output as nested lists, or,
for several outputs, one object per row (`{"y": [...], "z": [...]}`). Pure functions: no
I/O, no HTTP.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import numpy.typing as npt

from mpfn.documents import TensorSpec
from mpfn.protocol.datatypes import numpy_dtype
from mpfn.protocol.errors import ProtocolError
from mpfn.protocol.response import decode_infer_response
from mpfn.protocol.tensors import dumps, json_data, loads

__all__ = ["infer_to_predictions", "predict_to_infer"]


def _instances(body: bytes) -> list[Any]:
    try:
        doc = loads(body)
    except ValueError:
        raise ProtocolError(400, "request body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ProtocolError(400, 'request body must be a JSON object {"instances": [...]}')
    instances = doc.get("instances", doc.get("inputs"))
    if not isinstance(instances, list) or not instances:
        raise ProtocolError(400, "'instances' must be a non-empty JSON array")
    return instances


def _strings(name: str, instances: list[Any]) -> tuple[list[int], list[str]]:
    """Shape and flat elements of nested lists of strings (a BYTES input)."""
    array = np.empty(0, dtype=object)
    with contextlib.suppress(ValueError):  # ragged lists: the check below refuses them
        array = np.array(instances, dtype=object)
    flat = array.reshape(-1).tolist()
    if not array.size or not all(isinstance(v, str) for v in flat):
        raise ProtocolError(
            400, f"the instances for input '{name}' must be equally long lists of strings"
        )
    return list(array.shape), flat


def predict_to_infer(body: bytes, spec: TensorSpec) -> bytes:
    """A v2 infer request body (JSON) for a KServe v1 predict body, on input `spec`."""
    instances = _instances(body)
    if spec.datatype == "BYTES":
        shape, data = _strings(spec.name, instances)
        entry: dict[str, Any] = {"data": data}
    else:
        try:
            array: npt.NDArray[Any] = np.asarray(instances, dtype=numpy_dtype(spec.datatype))
        except (ValueError, TypeError, OverflowError):
            raise ProtocolError(
                400,
                f"the instances for input '{spec.name}' must be equally long lists of "
                f"numbers ({spec.datatype})",
            ) from None
        shape = list(array.shape)
        entry = {"data": json_data("input", spec.name, spec.datatype, array)}
    tensor = {"name": spec.name, "datatype": spec.datatype, "shape": shape, **entry}
    return dumps({"inputs": [tensor]})


def _plain(value: Any) -> Any:
    """Nested lists of JSON values (BYTES elements as text)."""
    array = np.asarray(value)
    if array.dtype.kind in "OSU":
        return np.vectorize(_text, otypes=[object])(array).tolist() if array.size else []
    return array.tolist()


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def infer_to_predictions(body: bytes, header_length: str | bytes | None = None) -> bytes:
    """`{"predictions": [...]}` for a v2 infer response body (JSON or binary tensors).

    Raises ProtocolError (502) when `body` is not a valid v2 response."""
    response = decode_infer_response(body, header_length)
    outputs = list(response.outputs.items())
    if not outputs:
        raise ProtocolError(502, "the inference response has no outputs")
    if len(outputs) == 1:
        predictions: Any = _plain(outputs[0][1])
    else:
        rows = {a.shape[0] if a.ndim else -1 for _, a in outputs}
        if len(rows) == 1 and -1 not in rows:
            count = rows.pop()
            predictions = [{n: _plain(a[i]) for n, a in outputs} for i in range(count)]
        else:  # outputs of different batch sizes: one object with each whole output
            predictions = [{n: _plain(a) for n, a in outputs}]
    return dumps({"predictions": predictions})
