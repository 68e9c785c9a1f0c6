"""A TF Serving stand-in for development and tests — not TensorFlow Serving.

No TF Serving binary can be installed everywhere mpfn is developed, so this small server
follows TF Serving's documented REST API (`api_rest.md`: predict in row and columnar
formats, model status, metadata, `{"error": ...}` errors) and its gRPC
`ModelService.HandleReloadConfigRequest`, serving ONNX files (`<base_path>/<version>/
model.onnx`) through onnxruntime instead of SavedModels. It exists so the `tfserving`
adapter can be exercised end to end; production pools run the real `tensorflow_model_server`.

    python -m tests.servers.tfserving_standin --port 8500 --rest_api_port 8501 \\
        [--model_name NAME --model_base_path DIR]
"""

from tests.servers.tfserving_standin.rest import create_app
from tests.servers.tfserving_standin.servables import ServableManager, ServingError

__all__ = ["ServableManager", "ServingError", "create_app"]
