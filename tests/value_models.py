"""Graphs whose kernels refuse some client values at run time, built with onnx.helper.

Each input passes the kit's schema checks (rank, sizes, dtype); only onnxruntime, running the
graph, can tell that a value does not suit the model: the case of ``input_rejected_by_model``.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from tests.onnx_models import _model, _vi


def expand_to_client_shape() -> onnx.ModelProto:
    """shape [2] int64 -> y = ones([1, 1]) expanded to ``shape``: the client gives the Expand node its
    ``shape`` input, and ``[3, -1]`` is not a shape Expand can produce (a model with no batch
    dimension: serve it with ``batched=False``)."""
    ones = helper.make_tensor("ones", TensorProto.FLOAT, [1, 1], [1.0])
    return _model(
        [helper.make_node("Expand", ["ones", "shape"], ["y"])],
        [_vi("shape", TensorProto.INT64, [2])],
        [_vi("y", TensorProto.FLOAT, ["rows", "cols"])],
        "expand_to_client_shape",
        [ones],
    )


def gather_client_indices(rows: int = 5) -> onnx.ModelProto:
    """idx [N] int64 -> y [N, 2], rows of a [rows, 2] table: an embedding lookup whose indices come from
    the client; an index outside [-rows, rows - 1] is refused by Gather."""
    table = helper.make_tensor("table", TensorProto.FLOAT, [rows, 2], [float(i) for i in range(rows * 2)])
    return _model(
        [helper.make_node("Gather", ["table", "idx"], ["y"], axis=0)],
        [_vi("idx", TensorProto.INT64, ["N"])],
        [_vi("y", TensorProto.FLOAT, ["N", 2])],
        "gather_client_indices",
        [table],
    )


def reshape_to_client_shape() -> onnx.ModelProto:
    """shape [2] int64 -> y = [0, 1, 2, 3] reshaped to ``shape``: ``[3, 5]`` holds 15 values, not 4, and
    onnxruntime refuses it with ``Fail`` (Expand and Gather refuse theirs with ``InvalidArgument``)."""
    values = helper.make_tensor("values", TensorProto.FLOAT, [4], [0.0, 1.0, 2.0, 3.0])
    return _model(
        [helper.make_node("Reshape", ["values", "shape"], ["y"])],
        [_vi("shape", TensorProto.INT64, [2])],
        [_vi("y", TensorProto.FLOAT, ["rows", "cols"])],
        "reshape_to_client_shape",
        [values],
    )
