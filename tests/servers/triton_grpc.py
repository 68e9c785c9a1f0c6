"""tritonclient.grpc against a v2 gRPC server, in a process of its own.

tritonclient.grpc and KServe's generated module both declare `inference.*` messages in
protobuf's default descriptor pool, so they cannot be imported in one process: tests ask
this module (`survey`) instead of importing tritonclient.grpc. `python -m
tests.servers.triton_grpc PORT [HEADER=VALUE ...]` prints one JSON object: every call's
result as `{"ok": value}` or `{"error": [status, message]}`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

from tests.servers.process import PYTHON, ROOT

X = [[(i - 20) / 7 for i in range(16 * r, 16 * r + 16)] for r in range(3)]


def survey(port: int, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What tritonclient.grpc gets from the server on `port` (see the module doc)."""
    args = [f"{k}={v}" for k, v in (headers or {}).items()]
    done = subprocess.run(
        [PYTHON, "-m", "tests.servers.triton_grpc", str(port), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _main(port: int, headers: dict[str, str]) -> dict[str, Any]:
    import numpy as np
    import tritonclient.grpc as tgrpc
    from tritonclient.utils import InferenceServerException

    client = tgrpc.InferenceServerClient(f"127.0.0.1:{port}")
    out: dict[str, Any] = {}

    def call(name: str, fn: Callable[[], Any]) -> None:
        try:
            out[name] = {"ok": fn()}
        except InferenceServerException as exc:
            out[name] = {"error": [exc.status(), exc.message()]}

    def infer(model: str, x: Any) -> Any:
        inp = tgrpc.InferInput("x", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        y = client.infer(model, [inp], headers=headers).as_numpy("y")
        return None if y is None else y.tolist()

    def metadata(model: str) -> Any:
        meta = client.get_model_metadata(model, headers=headers)
        tensors = [(t.name, t.datatype, list(t.shape)) for t in (*meta.inputs, *meta.outputs)]
        return {"name": meta.name, "versions": list(meta.versions),
                "platform": meta.platform, "tensors": tensors}  # fmt: skip

    x = np.asarray(X, dtype=np.float32)
    call("live", lambda: client.is_server_live(headers=headers))
    call("ready", lambda: client.is_server_ready(headers=headers))
    call("model_ready", lambda: client.is_model_ready("demo", headers=headers))
    call("lonely_ready", lambda: client.is_model_ready("lonely", headers=headers))
    call("nope_ready", lambda: client.is_model_ready("nope", headers=headers))
    call("server", lambda: client.get_server_metadata(headers=headers).name)
    call("extensions", lambda: list(client.get_server_metadata(headers=headers).extensions))
    call("metadata", lambda: metadata("demo"))
    call("nope_metadata", lambda: metadata("nope"))
    call("infer", lambda: infer("demo", x))
    call("nope_infer", lambda: infer("nope", x))
    call("lonely_infer", lambda: infer("lonely", x))
    call("bad_infer", lambda: infer("demo", x[:, :8].copy()))
    client.close()
    return out


if __name__ == "__main__":
    pairs = dict(arg.split("=", 1) for arg in sys.argv[2:])
    print(json.dumps(_main(int(sys.argv[1]), pairs)))
