"""Benchmark models: a ~1M-parameter MLP with fixed random weights (built with onnx.helper)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LAYERS = (256, 1024, 768, 10)  # 256*1024 + 1024*768 + 768*10 weights + biases = 1,056,522 parameters
# A GPU-class model for the serving container: 1024*4096 + 4096*4096 + 4096*10 = ~21 M parameters.
LAYERS_LARGE = (1024, 4096, 4096, 10)


def mlp(seed: int = 0, layers: tuple[int, ...] = LAYERS) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    current = "features"
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(layers)):
        w = rng.normal(0, (2 / fan_in) ** 0.5, size=(fan_in, fan_out)).astype(np.float32)
        b = np.zeros(fan_out, dtype=np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes.append(helper.make_node("Gemm", [current, f"w{i}", f"b{i}"], [f"h{i}"]))
        current = f"h{i}"
        if i < len(layers) - 2:
            nodes.append(helper.make_node("Relu", [current], [f"r{i}"]))
            current = f"r{i}"
    nodes.append(helper.make_node("Softmax", [current], ["probabilities"], axis=1))
    graph = helper.make_graph(
        nodes,
        "mlp_1m",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", layers[0]])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", layers[-1]])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="mdk-bench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def parameters(model: onnx.ModelProto) -> int:
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer)


def write(path: Path, layers: tuple[int, ...] = LAYERS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(mlp(layers=layers).SerializeToString())
    return path
