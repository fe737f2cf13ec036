"""Small ONNX graphs built with onnx.helper, each exercising one thing the runtime must handle."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

OPSET = [helper.make_opsetid("", 17)]
ONNX_TEST_DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"


def _model(nodes, inputs, outputs, name: str, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=OPSET, producer_name="mdk-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _vi(name: str, elem: int, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def two_inputs() -> onnx.ModelProto:
    """a, b [N, 3] float32 -> sum, diff [N, 3]: several inputs and outputs."""
    return _model(
        [helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Sub", ["a", "b"], ["diff"])],
        [_vi("a", TensorProto.FLOAT, ["N", 3]), _vi("b", TensorProto.FLOAT, ["N", 3])],
        [_vi("sum", TensorProto.FLOAT, ["N", 3]), _vi("diff", TensorProto.FLOAT, ["N", 3])],
        "two_inputs",
    )


def tokens() -> onnx.ModelProto:
    """input_ids, attention_mask [batch, seq] int64 -> masked [batch, seq]: int64, shared symbolic dims."""
    return _model(
        [helper.make_node("Mul", ["input_ids", "attention_mask"], ["masked"])],
        [
            _vi("input_ids", TensorProto.INT64, ["batch", "seq"]),
            _vi("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [_vi("masked", TensorProto.INT64, ["batch", "seq"])],
        "tokens",
    )


def typed() -> onnx.ModelProto:
    """float64, int32, bool and string inputs, each echoed: every JSON-carried dtype."""
    specs = [
        ("x64", TensorProto.DOUBLE, ["N", 2]),
        ("i32", TensorProto.INT32, ["N", 2]),
        ("flag", TensorProto.BOOL, ["N"]),
        ("text", TensorProto.STRING, ["N"]),
    ]
    return _model(
        [helper.make_node("Identity", [n], [f"{n}_out"]) for n, _, _ in specs],
        [_vi(n, t, s) for n, t, s in specs],
        [_vi(f"{n}_out", t, s) for n, t, s in specs],
        "typed",
    )


def fixed_batch_image() -> onnx.ModelProto:
    """gpu_0/data_0 [1, 3, 8, 8] -> gpu_0/pooled [1, 3]: punctuation, 4-D, batch fixed at 1."""
    return _model(
        [
            helper.make_node("GlobalAveragePool", ["gpu_0/data_0"], ["pool"]),
            helper.make_node("Flatten", ["pool"], ["gpu_0/pooled"]),
        ],
        [_vi("gpu_0/data_0", TensorProto.FLOAT, [1, 3, 8, 8])],
        [_vi("gpu_0/pooled", TensorProto.FLOAT, [1, 3])],
        "fixed_batch_image",
    )


def images() -> onnx.ModelProto:
    """images [N, 3, 224, 224] -> means [N, 3]: the usual image classifier input."""
    return _model(
        [
            helper.make_node("GlobalAveragePool", ["images"], ["pool"]),
            helper.make_node("Flatten", ["pool"], ["means"]),
        ],
        [_vi("images", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [_vi("means", TensorProto.FLOAT, ["N", 3])],
        "images",
    )


def fixed_batch_two() -> onnx.ModelProto:
    """x [2, 3] -> y = 2x [2, 3]: a fixed batch size above 1 (the runtime pads the last chunk)."""
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    return _model(
        [helper.make_node("Mul", ["x", "two"], ["y"])],
        [_vi("x", TensorProto.FLOAT, [2, 3])],
        [_vi("y", TensorProto.FLOAT, [2, 3])],
        "fixed_batch_two",
        [two],
    )


def scalar() -> onnx.ModelProto:
    """x [] -> y = 2x []: no batch dimension at all."""
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    return _model(
        [helper.make_node("Mul", ["x", "two"], ["y"])],
        [_vi("x", TensorProto.FLOAT, [])],
        [_vi("y", TensorProto.FLOAT, [])],
        "scalar",
        [two],
    )


def scores(classes: int = 3) -> onnx.ModelProto:
    """features [N, 4] -> logits [N, classes] (a MatMul): one score output, labels from the config."""
    weights = helper.make_tensor(
        "w", TensorProto.FLOAT, [4, classes], [float((i * 7) % 5 - 2) for i in range(4 * classes)]
    )
    return _model(
        [helper.make_node("MatMul", ["features", "w"], ["logits"])],
        [_vi("features", TensorProto.FLOAT, ["N", 4])],
        [_vi("logits", TensorProto.FLOAT, ["N", classes])],
        "scores",
        [weights],
    )


def pooled_scalar() -> onnx.ModelProto:
    """x [N, 2] -> y [N, 2] and total [] (ReduceSum): an output that belongs to no single instance."""
    return _model(
        [
            helper.make_node("Identity", ["x"], ["y"]),
            helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
        ],
        [_vi("x", TensorProto.FLOAT, ["N", 2])],
        [_vi("y", TensorProto.FLOAT, ["N", 2]), _vi("total", TensorProto.FLOAT, [])],
        "pooled_scalar",
    )


def real_model(name: str) -> Path:
    """A real, unedited model architecture shipped in the onnx wheel (e.g. ``light_shufflenet``)."""
    return ONNX_TEST_DATA / "light" / f"{name}.onnx"


def sequence_input() -> onnx.ModelProto:
    """x: seq(tensor(float)) -> first: a sequence input, which JSON and .npy requests cannot carry."""
    position = helper.make_tensor("zero", TensorProto.INT64, [], [0])
    return _model(
        [helper.make_node("SequenceAt", ["x", "zero"], ["first"])],
        [helper.make_tensor_sequence_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [_vi("first", TensorProto.FLOAT, ["N", 2])],
        "sequence_input",
        [position],
    )


def poisoned(source: Path, target: Path) -> Path:
    """``source`` with its ``probabilities`` output multiplied by NaN: it loads and answers, but wrongly.

    A model a deploy must not shift traffic to: the pre-traffic hook sees NaN in the example's answer.
    """
    model = onnx.load(source)
    graph = model.graph
    for node in graph.node:
        node.output[:] = ["probabilities_raw" if out == "probabilities" else out for out in node.output]
    nan = helper.make_tensor("nan", TensorProto.FLOAT, [], [float("nan")])
    graph.initializer.append(nan)
    graph.node.append(helper.make_node("Mul", ["probabilities_raw", "nan"], ["probabilities"], name="poison"))
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, target)
    return target


def slowed(source: Path, target: Path, *, threshold: float = 100.0) -> Path:
    """``source`` (one float input) with a busy loop whose trip count grows with the input's largest value
    past ``threshold``: ordinary inputs answer as before (the loop runs zero times), an input with a
    value far past it computes for hours. Its ``probabilities`` output gets the loop's result times zero.

    A model that is fine on its example and too slow for some requests: the deadline's test case.
    """
    model = onnx.load(source)
    graph = model.graph
    source_input = graph.input[0].name
    width = 256
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["h_in", "spin_w"], ["h_mm"]),
            helper.make_node("Tanh", ["h_mm"], ["h_out"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "spin_body",
        [
            _vi("i", TensorProto.INT64, []),
            _vi("cond_in", TensorProto.BOOL, []),
            _vi("h_in", TensorProto.FLOAT, [1, width]),
        ],
        [_vi("cond_out", TensorProto.BOOL, []), _vi("h_out", TensorProto.FLOAT, [1, width])],
    )
    graph.initializer.extend(
        [
            helper.make_tensor("spin_w", TensorProto.FLOAT, [width, width], [1.0 / width] * width * width),
            helper.make_tensor("spin_h0", TensorProto.FLOAT, [1, width], [0.5] * width),
            helper.make_tensor("spin_threshold", TensorProto.FLOAT, [], [threshold]),
            helper.make_tensor("spin_scale", TensorProto.FLOAT, [], [1e6]),
            helper.make_tensor("spin_zero", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("spin_true", TensorProto.BOOL, [], [True]),
        ]
    )
    for node in graph.node:
        node.output[:] = ["probabilities_raw" if out == "probabilities" else out for out in node.output]
    graph.node.extend(
        [
            helper.make_node("ReduceMax", [source_input], ["spin_max"], keepdims=0),
            helper.make_node("Sub", ["spin_max", "spin_threshold"], ["spin_over"]),
            helper.make_node("Relu", ["spin_over"], ["spin_relu"]),
            helper.make_node("Mul", ["spin_relu", "spin_scale"], ["spin_trips_f"]),
            helper.make_node("Cast", ["spin_trips_f"], ["spin_trips"], to=TensorProto.INT64),
            helper.make_node("Loop", ["spin_trips", "spin_true", "spin_h0"], ["spin_h"], body=body),
            helper.make_node("ReduceSum", ["spin_h"], ["spin_sum"], keepdims=0),
            helper.make_node("Mul", ["spin_sum", "spin_zero"], ["spin_nothing"]),
            helper.make_node("Add", ["probabilities_raw", "spin_nothing"], ["probabilities"]),
        ]
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, target)
    return target
