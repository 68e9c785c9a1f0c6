"""Triton python-backend model that runs an ONNX artifact with onnxruntime.

`triton_repo.build_triton_model(..., backend="python")` ships this file as `1/model.py`
next to the artifact. It runs inside Triton's python backend (which provides
`triton_python_backend_utils`), never inside mpfn, so it imports nothing from mpfn. The
Python environment Triton runs it in needs numpy and onnxruntime. Each request runs on its
own; outputs are cast to the datatypes the model configuration declares.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

FILE_PARAM = "mpfn.model_file"


class TritonPythonModel:
    """One ONNX Runtime session per model instance."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = config.get("parameters", {})
        filename = params.get(FILE_PARAM, {}).get("string_value", "model.onnx")
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(
            path, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [entry["name"] for entry in config["input"]]
        self.outputs = {
            entry["name"]: pb_utils.triton_string_to_numpy(entry["data_type"])
            for entry in config["output"]
        }

    def execute(self, requests: list[Any]) -> list[Any]:
        return [self._run(request) for request in requests]

    def _run(self, request: Any) -> Any:
        feed: dict[str, np.ndarray] = {}
        for name in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                return pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(f"missing input '{name}'")
                )
            feed[name] = tensor.as_numpy()
        requested = request.requested_output_names() or list(self.outputs)
        try:
            results = self.session.run(requested, feed)
        except Exception as exc:  # onnxruntime reports bad shapes/values as exceptions
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
        tensors = [
            pb_utils.Tensor(name, np.ascontiguousarray(value, dtype=self.outputs[name]))
            for name, value in zip(requested, results, strict=True)
        ]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def finalize(self) -> None:
        self.session = None
