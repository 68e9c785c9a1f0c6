"""TorchServe handler that serves one mpfn model and speaks Open Inference Protocol v2 bodies.

`torchserve_archive` packs this file into every `.mar` it builds, next to the artifact and
`mpfn-model.json` (the model's name, version, format and tensor specs). It runs inside
TorchServe's Python workers, never inside mpfn, so it imports nothing from mpfn. ONNX
artifacts run with onnxruntime, TorchScript artifacts with torch (inputs passed in declared
order, outputs matched to declared outputs in order).

Request bodies (on `/predictions/{m}/{v}` and TorchServe's `/v2/models/{m}/infer`) are v2
inference requests, JSON or with binary tensors (`Inference-Header-Content-Length`);
responses are v2 responses, with binary outputs where asked. Bad requests get 400 with
`{"error": ...}`; failures while running the model get 500. The module defines exactly one
class, as TorchServe's class entry point requires.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

SPEC_FILE = "mpfn-model.json"
HEADER = "inference-header-content-length"
NUMPY_DTYPES = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
}


class MpfnHandler:
    """TorchServe entry point: `initialize(context)` once, then `handle(batch, context)`."""

    def __init__(self) -> None:
        self.initialized = False
        self.spec: dict[str, Any] = {}
        self.runner: Any = None

    def initialize(self, context: Any) -> None:
        model_dir = context.system_properties["model_dir"]
        with open(os.path.join(model_dir, SPEC_FILE)) as fh:
            self.spec = json.load(fh)
        path = os.path.join(model_dir, context.manifest["model"]["serializedFile"])
        if self.spec["format"] == "onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            self.runner = ort.InferenceSession(
                path, sess_options=options, providers=["CPUExecutionProvider"]
            )
        elif self.spec["format"] == "torchscript":
            import torch

            torch.set_num_threads(1)
            self.runner = torch.jit.load(path, map_location="cpu").eval()
        else:
            raise ValueError(f"unsupported model format {self.spec['format']!r}")
        self.initialized = True

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[bytes]:
        return [self._one(idx, row, context) for idx, row in enumerate(data)]

    def _one(self, idx: int, row: dict[str, Any], context: Any) -> bytes:
        try:
            body = row.get("body") if row.get("body") is not None else row.get("data")
            doc, region = split_body(body, _header(context, idx, HEADER))
            feed = read_inputs(doc, region, self.spec["inputs"])
            wanted = requested_outputs(doc, [o["name"] for o in self.spec["outputs"]])
        except (ValueError, KeyError, TypeError) as exc:
            return _error(context, idx, 400, str(exc))
        try:
            results = self._run(feed)
        except Exception as exc:  # the runtime's own errors: bad values, internal failures
            return _error(context, idx, 500, f"model run failed: {exc}")
        payload, header_length = encode_response(self.spec, doc.get("id"), wanted, results)
        if header_length is None:
            context.set_response_content_type(idx, "application/json")
        else:
            context.set_response_content_type(idx, "application/octet-stream")
            context.set_response_header(idx, "Inference-Header-Content-Length", str(header_length))
        return payload

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o["name"] for o in self.spec["outputs"]]
        if self.spec["format"] == "onnx":
            return dict(zip(names, self.runner.run(names, feed), strict=True))
        import torch

        args = [
            torch.from_numpy(np.ascontiguousarray(feed[i["name"]])) for i in self.spec["inputs"]
        ]
        with torch.inference_mode():
            out = self.runner(*args)
        values = list(out) if isinstance(out, list | tuple) else [out]
        if len(values) != len(names):
            raise RuntimeError(f"the model returned {len(values)} outputs, expected {len(names)}")
        return {
            name: value.detach().cpu().numpy() for name, value in zip(names, values, strict=True)
        }


def _header(context: Any, idx: int, name: str) -> str | None:
    headers = context.get_all_request_header(idx) or {}
    for key, value in headers.items():
        if str(key).lower() == name:
            return value.decode() if isinstance(value, bytes | bytearray) else str(value)
    return None


def _error(context: Any, idx: int, status: int, message: str) -> bytes:
    context.set_response_status(status, "Bad Request" if status == 400 else "Error", idx)
    context.set_response_content_type(idx, "application/json")
    return json.dumps({"error": message}).encode()


def split_body(body: Any, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    """The JSON inference header as a dict and the binary region after it."""
    if isinstance(body, dict):  # TorchServe already decoded an application/json body
        return body, memoryview(b"")
    if isinstance(body, str):
        body = body.encode()
    if not isinstance(body, bytes | bytearray):
        raise ValueError("the request has no body")
    view = memoryview(bytes(body))
    length = len(view) if header_length is None else int(header_length)
    if not 0 <= length <= len(view):
        raise ValueError(f"{HEADER} is {length} but the body has {len(view)} bytes")
    doc = json.loads(bytes(view[:length]))
    if not isinstance(doc, dict):
        raise ValueError("the inference request must be a JSON object")
    return doc, view[length:]


def read_inputs(
    doc: dict[str, Any], region: memoryview, specs: list[dict[str, Any]]
) -> dict[str, np.ndarray]:
    """Decode and check the request's inputs against the model's input specs."""
    by_name = {spec["name"]: spec for spec in specs}
    feed: dict[str, np.ndarray] = {}
    offset = 0
    for entry in doc.get("inputs") or []:
        name = entry.get("name")
        spec = by_name.get(name)
        if spec is None:
            raise ValueError(f"unknown input '{name}' (model inputs: {', '.join(by_name)})")
        datatype, shape = entry.get("datatype"), [int(d) for d in entry.get("shape", [])]
        if datatype != spec["datatype"]:
            raise ValueError(
                f"input '{name}': expected datatype {spec['datatype']}, got {datatype}"
            )
        if len(shape) != len(spec["shape"]) or any(
            s not in (-1, d) for s, d in zip(spec["shape"], shape, strict=True)
        ):
            raise ValueError(f"input '{name}': shape {shape} does not match {spec['shape']}")
        if datatype not in NUMPY_DTYPES:
            raise ValueError(f"input '{name}': datatype {datatype} is not supported here")
        dtype = np.dtype(NUMPY_DTYPES[datatype])
        count = int(np.prod(shape)) if shape else 1
        size = (entry.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            if int(size) != count * dtype.itemsize or offset + int(size) > len(region):
                raise ValueError(f"input '{name}': binary_data_size {size} does not fit")
            flat = np.frombuffer(region[offset : offset + int(size)], dtype=dtype)
            offset += int(size)
        else:
            flat = np.asarray(entry.get("data"), dtype=dtype).reshape(-1)
            if flat.size != count:
                raise ValueError(f"input '{name}': {flat.size} values for shape {shape}")
        feed[name] = flat.reshape(shape)
    missing = [name for name in by_name if name not in feed]
    if missing:
        raise ValueError("missing input " + ", ".join(f"'{m}'" for m in missing))
    return feed


def requested_outputs(doc: dict[str, Any], names: list[str]) -> list[tuple[str, bool]]:
    """(output name, binary?) for each output to return."""
    binary_default = bool((doc.get("parameters") or {}).get("binary_data_output", False))
    raw = doc.get("outputs")
    if not raw:
        return [(name, binary_default) for name in names]
    wanted = []
    for entry in raw:
        name = entry.get("name")
        if name not in names:
            raise ValueError(f"unknown output '{name}' (model outputs: {', '.join(names)})")
        binary = (entry.get("parameters") or {}).get("binary_data", binary_default)
        wanted.append((name, bool(binary)))
    return wanted


def encode_response(
    spec: dict[str, Any],
    request_id: Any,
    wanted: list[tuple[str, bool]],
    results: dict[str, np.ndarray],
) -> tuple[bytes, int | None]:
    """A v2 response body and its JSON header length (None when it is all JSON)."""
    datatypes = {o["name"]: o["datatype"] for o in spec["outputs"]}
    entries, blobs = [], []
    for name, binary in wanted:
        datatype = datatypes[name]
        array = np.ascontiguousarray(results[name], dtype=NUMPY_DTYPES[datatype])
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            blob = array.tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.reshape(-1).tolist()
        entries.append(entry)
    doc: dict[str, Any] = {"model_name": spec["name"], "model_version": spec["version"]}
    if request_id is not None:
        doc["id"] = request_id
    doc["outputs"] = entries
    header = json.dumps(doc, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)
