"""The built-in `demo` model: a tiny deterministic ONNX graph and its ModelVersion document.

`y = relu(x @ W + b)` with `x` FP32 [-1,16] and `y` FP32 [-1,4]; W and b come from a fixed
seed, so every build yields byte-identical model files (and thus the same digest).
Used by `mpfn init`, quick starts and tests; it must stay small and dependency-light
(onnx is imported only when the model is built).
"""

from __future__ import annotations

import numpy as np

from mpfn.documents import ArtifactRef, ModelVersion, TensorSpec

DEMO_NAME = "demo"
DEMO_VERSION = "1"
DEMO_INPUTS = (TensorSpec(name="x", datatype="FP32", shape=[-1, 16]),)
DEMO_OUTPUTS = (TensorSpec(name="y", datatype="FP32", shape=[-1, 4]),)
#: ONNX opset and IR version every supported onnxruntime (>= 1.17) can load.
DEMO_OPSET = 17
DEMO_IR_VERSION = 8
_SEED = 20240501


def demo_weights() -> tuple[np.ndarray, np.ndarray]:
    """The fixed W [16,4] and b [4] of the demo model."""
    rng = np.random.default_rng(_SEED)
    weight = rng.standard_normal((16, 4)).astype(np.float32) / 4
    bias = rng.standard_normal(4).astype(np.float32) / 10
    return weight, bias


def build_demo_model(graph_name: str = DEMO_NAME) -> bytes:
    """Serialise the demo ONNX model; identical bytes on every call."""
    from onnx import TensorProto, helper, numpy_helper

    weight, bias = demo_weights()
    graph = helper.make_graph(
        nodes=[
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["z"]),
            helper.make_node("Relu", ["z"], ["y"]),
        ],
        name=graph_name,
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        initializer=[
            numpy_helper.from_array(weight, name="W"),
            numpy_helper.from_array(bias, name="b"),
        ],
    )
    model = helper.make_model(
        graph,
        producer_name="mpfn",
        opset_imports=[helper.make_opsetid("", DEMO_OPSET)],
    )
    model.ir_version = DEMO_IR_VERSION
    return bytes(model.SerializeToString())


def demo_reference(x: np.ndarray) -> np.ndarray:
    """What the demo model computes, in numpy (for checks without onnxruntime)."""
    weight, bias = demo_weights()
    return np.maximum(x.astype(np.float32) @ weight + bias, 0).astype(np.float32)


def demo_model_version(
    artifact: ArtifactRef | None = None,
    *,
    name: str = DEMO_NAME,
    version: str = DEMO_VERSION,
    memory_mb: float = 1.0,
) -> ModelVersion:
    """The ModelVersion document matching `build_demo_model()` stored as `artifact`."""
    return ModelVersion(
        name=name,
        version=version,
        format="onnx",
        artifact=artifact,
        inputs=list(DEMO_INPUTS),
        outputs=list(DEMO_OUTPUTS),
        hardware=["cpu"],
        memory_mb=memory_mb,
        labels={"source": "mpfn-demo"},
    )
