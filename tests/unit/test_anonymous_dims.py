"""Anonymous dimensions ('?', an empty dim_param, no value at all) are free one by one, not one shared symbol.

paddle2onnx writes ``dim_param: "?"`` for every dynamic size; PaddleOCR's text-direction classifier
takes ``[-1, 3, '?', '?']``: any height and width, not height == width.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import orjson
import pytest
from onnx import TensorProto, helper

from mdk_runtime.codec import decode_json
from mdk_runtime.errors import InvalidInput
from mdk_runtime.openapi import request_schema
from mdk_runtime.schema import Signature, build_signature
from mdk_runtime.service import InferenceService
from mdk_runtime.spec import InputOverride, ModelSpec
from tests.conftest import ServiceFactory
from tests.onnx_models import OPSET


def _graph(inputs: dict[str, list[Any]]) -> onnx.ModelProto:
    """Each input echoed (Identity): what the schema and the codec make of its declared shape."""
    vis = []
    for name, dims in inputs.items():
        vi = helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
        shape = vi.type.tensor_type.shape
        for d in dims:
            dim = shape.dim.add()
            if isinstance(d, int):
                dim.dim_value = d
            elif isinstance(d, str):
                dim.dim_param = d  # "" too: an empty dim_param, as some exporters write
            # None: neither value nor param
        vis.append(vi)
    outs = []
    for vi in vis:
        out = onnx.ValueInfoProto(name=f"{vi.name}_out")
        out.type.CopyFrom(vi.type)
        outs.append(out)
    nodes = [helper.make_node("Identity", [n], [f"{n}_out"]) for n in inputs]
    model = helper.make_model(helper.make_graph(nodes, "anonymous", vis, outs), opset_imports=OPSET)
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _signature(model: onnx.ModelProto, spec: ModelSpec | None = None) -> Signature:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    spec = spec or ModelSpec(name="m", version="1", sha256="0" * 64)
    return build_signature(session.get_inputs(), session.get_outputs(), spec)


def _rows(*shape: int) -> list[Any]:
    rows: list[Any] = np.zeros(shape, dtype=np.float32).tolist()
    return rows


def test_what_onnxruntime_reports_for_anonymous_dimensions() -> None:
    """The premise of the schema's reading: '?' comes through as a string, '' and unset as None."""
    model = _graph({"x": ["?", 3, "", None, "unk__0", "?"]})
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["?", 3, None, None, "unk__0", "?"]


def test_question_marks_are_independent_dimensions() -> None:
    sig = _signature(_graph({"x": ["?", 3, 48, "?"]}))
    (x,) = sig.inputs
    assert x.shape == (None, 3, 48, None)
    assert x.to_json()["shape"] == [None, 3, 48, None]
    decoded = decode_json({"instances": _rows(2, 3, 48, 320)}, sig)
    assert decoded.feeds["x"].shape == (2, 3, 48, 320)
    assert decoded.n == 2


def test_two_question_marks_in_one_input_may_differ() -> None:
    """The classifier's shape: before, height and width were one symbol '?' and 48 x 192 was refused."""
    sig = _signature(_graph({"x": ["?", 3, "?", "?"]}))
    assert sig.inputs[0].describe_shape() == "[N, 3, d2, d3]"
    assert decode_json({"instances": _rows(1, 3, 48, 192)}, sig).feeds["x"].shape == (1, 3, 48, 192)


def test_question_marks_in_two_inputs_may_differ() -> None:
    sig = _signature(_graph({"a": ["N", "?"], "b": ["N", "?"]}))
    decoded = decode_json({"inputs": {"a": _rows(2, 5), "b": _rows(2, 7)}}, sig)
    assert decoded.feeds["a"].shape == (2, 5)
    assert decoded.feeds["b"].shape == (2, 7)


def test_empty_and_unset_dim_params_are_free_too() -> None:
    sig = _signature(_graph({"x": ["N", "", None, " "]}))
    assert sig.inputs[0].shape == ("N", None, None, None)
    assert decode_json({"instances": _rows(1, 2, 3, 4)}, sig).feeds["x"].shape == (1, 2, 3, 4)


def test_real_names_still_bind_across_inputs() -> None:
    """A name means one size, whether the user gave it or a tool (tf2onnx's ``unk__N``) did."""
    for name in ("seq", "unk__7"):
        sig = _signature(_graph({"a": ["N", name], "b": ["N", name]}))
        with pytest.raises(InvalidInput, match=f"dimension '{name}' is 7 here but 5"):
            decode_json({"inputs": {"a": _rows(2, 5), "b": _rows(2, 7)}}, sig)


def test_an_override_written_with_question_marks_leaves_them_free() -> None:
    spec = ModelSpec(
        name="m", version="1", sha256="0" * 64, inputs={"x": InputOverride(shape=("N", 3, "?", "?"))}
    )
    sig = _signature(_graph({"x": [None, 3, None, None]}), spec)
    assert sig.inputs[0].shape == ("N", 3, None, None)
    assert decode_json({"instances": _rows(1, 3, 2, 9)}, sig).feeds["x"].shape == (1, 3, 2, 9)


def test_openapi_does_not_claim_the_anonymous_dimensions_are_one() -> None:
    sig = _signature(_graph({"x": ["?", 3, "?", "?"]}))
    text = orjson.dumps(request_schema(sig)).decode()
    assert "?" not in text
    assert "[N, 3, d2, d3]" in text


# -- the real models: PaddleOCR's classifier and recogniser, from the RapidOCR wheel --------------------


def _rapidocr_model(name: str) -> Path:
    found = importlib.util.find_spec("rapidocr_onnxruntime")  # its location only: no import of OpenCV
    assert found is not None, "rapidocr_onnxruntime is a dev requirement (requirements-dev.txt)"
    assert found.submodule_search_locations
    path = Path(next(iter(found.submodule_search_locations))) / "models" / name
    assert path.is_file(), path
    return path


@pytest.mark.parametrize(
    ("name", "graph_shape", "crop"),
    [
        # the classifier: height and width both '?'; RapidOCR feeds it 48 x 192 crops
        ("ch_ppocr_mobile_v2.0_cls_infer.onnx", [None, 3, "?", "?"], (3, 48, 192)),
        # the recogniser: height '?', width a p2o name; RapidOCR feeds it 48 x (any width) crops
        (
            "ch_PP-OCRv4_rec_infer.onnx",
            ["p2o.DynamicDimension.0", 3, "?", "p2o.DynamicDimension.1"],
            (3, 48, 320),
        ),
    ],
)
def test_paddleocr_models_answer_crops_that_are_not_square(
    service: ServiceFactory, name: str, graph_shape: list[Any], crop: tuple[int, ...]
) -> None:
    path = _rapidocr_model(name)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == graph_shape
    served: InferenceService = service(path)
    assert served.model is not None, served.load_error
    reply = served.predict(
        orjson.dumps({"instances": _rows(2, *crop)}), "application/json", "application/json"
    )
    assert reply.status == 200, reply.body[:300]
    (want,) = session.run(None, {"x": np.zeros((2, *crop), dtype=np.float32)})
    got = np.asarray(orjson.loads(reply.body)["predictions"], dtype=np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
