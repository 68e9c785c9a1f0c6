"""The stand-in's REST API: TF Serving's `/v1/models/...` routes as `api_rest.md` documents.

Routes (the same regular expressions TF Serving matches): `POST /v1/models/{m}[/versions/
{v}|/labels/{l}]:predict|classify|regress`, `GET /v1/models/{m}[/versions/{v}]` (status) and
`GET .../metadata`. Every error is `{"error": "<message>"}` with the HTTP status TF Serving
derives from the error code. Only `predict` is implemented; `classify`/`regress` and
version labels answer UNIMPLEMENTED, as they would for a model without those signatures.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import numpy as np
import numpy.typing as npt
from aiohttp import web
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from mpfn.adapters.tfserving.codec import (
    TF_TO_V2,
    TensorJSONError,
    all_finite,
    dumps,
    tensor_array,
    tensor_value,
)
from mpfn.adapters.tfserving.reload import CODE_NAMES, http_status
from tests.servers.tfserving_standin.servables import (
    Servable,
    ServableManager,
    ServingError,
    TensorInfo,
)

PREDICT = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
    r":(classify|regress|predict)"
)
STATUS = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?"
)
DEFAULT_SIGNATURE = "serving_default"


def create_app(manager: ServableManager) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        try:
            doc = await dispatch(manager, request)
        except ServingError as exc:
            return _json(http_status(exc.code), {"error": exc.message})
        return web.Response(body=doc, content_type="application/json")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/v1/{tail:.*}", handle)
    return app


def _json(status: int, doc: Any) -> web.Response:
    return web.Response(status=status, body=json.dumps(doc), content_type="application/json")


async def dispatch(manager: ServableManager, request: web.Request) -> bytes:
    path, method = request.path, request.method
    if method == "POST" and (match := PREDICT.fullmatch(path)):
        name, version, label, verb = match.groups()
        if label is not None:
            raise ServingError(12, "version labels are not configured on this server")
        if verb != "predict":
            raise ServingError(12, f"{verb} is not supported for model {name}")
        servable = manager.find(name, None if version is None else int(version))
        return await predict(servable, await request.read())
    if method == "GET" and (match := STATUS.fullmatch(path)):
        name, version, label, metadata = match.groups()
        if not name:
            raise ServingError(3, "Missing model name in request.")
        if label is not None:
            raise ServingError(12, "version labels are not configured on this server")
        number = None if version is None else int(version)
        if metadata:
            return dumps(model_metadata(manager.find(name, number)))
        return dumps(model_status(manager, name, number))
    raise ServingError(3, f"Malformed request: {method} {path}")


def model_status(manager: ServableManager, name: str, version: int | None) -> dict[str, Any]:
    return {
        "model_version_status": [
            {
                "version": str(number),
                "state": status.state,
                "status": {
                    "error_code": CODE_NAMES.get(status.code, "UNKNOWN"),
                    "error_message": status.message,
                },
            }
            for number, status in manager.status(name, version)
        ]
    }


def _signature_tensor(info: TensorInfo) -> dict[str, Any]:
    return {
        "dtype": info.dtype,
        "tensor_shape": {
            "dim": [{"size": str(d), "name": ""} for d in info.shape],
            "unknown_rank": False,
        },
        "name": f"{info.name}:0",
    }


def model_metadata(servable: Servable) -> dict[str, Any]:
    signature = {
        "inputs": {n: _signature_tensor(i) for n, i in servable.inputs.items()},
        "outputs": {n: _signature_tensor(i) for n, i in servable.outputs.items()},
        "method_name": "tensorflow/serving/predict",
    }
    return {
        "model_spec": {
            "name": servable.name,
            "signature_name": "",
            "version": str(servable.version),
        },
        "metadata": {"signature_def": {"signature_def": {DEFAULT_SIGNATURE: signature}}},
    }


# -- predict -------------------------------------------------------------------------------


async def predict(servable: Servable, body: bytes) -> bytes:
    doc = _parse(body)
    signature = doc.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(signature, str):
        raise ServingError(3, "'signature_name' key must be a string value.")
    if signature not in ("", DEFAULT_SIGNATURE):
        raise ServingError(3, f'Serving signature name: "{signature}" not found in signature def')
    row = "instances" in doc
    if row and "inputs" in doc:
        raise ServingError(
            3, "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist"
        )
    try:
        if row:
            feed = _rows(doc["instances"], servable.inputs)
        elif "inputs" in doc:
            feed = _columns(doc["inputs"], servable.inputs)
        else:
            raise ServingError(3, "Missing 'inputs' or 'instances' key")
    except TensorJSONError as exc:
        raise ServingError(3, str(exc)) from None
    names = list(servable.outputs)
    try:
        arrays = await asyncio.to_thread(servable.session.run, names, feed)
    except InvalidArgument as exc:
        raise ServingError(3, str(exc)) from None
    except Exception as exc:  # onnxruntime's runtime failures
        raise ServingError(13, f"{type(exc).__name__}: {exc}") from None
    outputs = dict(zip(names, arrays, strict=True))
    return _response(outputs, servable.outputs, row)


def _parse(body: bytes) -> dict[str, Any]:
    if not body:
        raise ServingError(3, "JSON Parse error: The document is empty")
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise ServingError(3, f"JSON Parse error: {exc}") from None
    if not isinstance(doc, dict):
        raise ServingError(3, "JSON Value: the request is not an object")
    return doc


def _array(value: Any, info: TensorInfo) -> npt.NDArray[Any]:
    return tensor_array(value, TF_TO_V2.get(info.dtype), info.name)


def _columns(value: Any, inputs: dict[str, TensorInfo]) -> dict[str, npt.NDArray[Any]]:
    if not isinstance(value, dict) or set(value) == {"b64"}:
        if len(inputs) > 1:
            raise ServingError(
                3,
                "inputs is a plain value/list, but expecting an object as "
                "multiple input tensors required as per tensorinfo_map",
            )
        info = next(iter(inputs.values()))
        return {info.name: _array(value, info)}
    feed: dict[str, npt.NDArray[Any]] = {}
    for name, info in inputs.items():
        if name not in value:
            raise ServingError(3, f"Missing named input: {name} in 'inputs' object.")
        feed[name] = _array(value[name], info)
    return feed


def _rows(value: Any, inputs: dict[str, TensorInfo]) -> dict[str, npt.NDArray[Any]]:
    if not isinstance(value, list):
        raise ServingError(3, "Excepting 'instances' to be an list/array")
    if not value:
        raise ServingError(3, "No values in 'instances' array")
    objects = isinstance(value[0], dict) and set(value[0]) != {"b64"}
    if not objects:
        if len(inputs) > 1:
            raise ServingError(
                3,
                "instances is a plain list, but expecting list of objects as "
                "multiple input tensors required as per tensorinfo_map",
            )
        info = next(iter(inputs.values()))
        return {info.name: _array(value, info)}
    for i, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != set(inputs):
            raise ServingError(
                3,
                f"Failed to process element: {i} of 'instances' list. "
                f"keys must be equal to: {','.join(sorted(inputs))}",
            )
    return {name: _array([item[name] for item in value], info) for name, info in inputs.items()}


def _response(
    outputs: dict[str, npt.NDArray[Any]], infos: dict[str, TensorInfo], row: bool
) -> bytes:
    def value(name: str, array: npt.NDArray[Any]) -> Any:
        datatype = TF_TO_V2.get(infos[name].dtype, "FP32")
        return tensor_value(array, datatype, b64=name.endswith("_bytes"))

    finite = all_finite(outputs.values())
    if not row:
        values = {n: value(n, a) for n, a in outputs.items()}
        body = next(iter(values.values())) if len(values) == 1 else values
        return dumps({"outputs": body}, finite=finite)
    sizes = {n: a.shape[0] if a.ndim else -1 for n, a in outputs.items()}
    if len(set(sizes.values())) != 1 or -1 in sizes.values():
        raise ServingError(3, f"Tensors have inconsistent batch sizes: {sizes}")
    if len(outputs) == 1:
        name, array = next(iter(outputs.items()))
        return dumps({"predictions": value(name, array)}, finite=finite)
    batch = next(iter(sizes.values()))
    rows = [{n: value(n, np.asarray(a[i])) for n, a in outputs.items()} for i in range(batch)]
    return dumps({"predictions": rows}, finite=finite)
