"""A model without an example: a synthetic warm-up that runs, the same request printed, or a clear reason.

Before, free sizes were guessed as 1 (a 3x3 convolution cannot run on a 1x1 image), a failed warm-up was
"skipped" while health said "ok", and the printed example request was ``{"instances":[]}``: a 422.
"""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import orjson
import pytest
from onnx import TensorProto, helper

from mdk.cli import EXAMPLE_INLINE_BYTES, NoExample, curl_example, example_data
from mdk.config import parse_config
from mdk.local.cloud.cli import example_data_of
from mdk_runtime.codec import decode_json
from mdk_runtime.model import Model, load_model
from mdk_runtime.schema import example_feeds, example_request, synthetic_sizes
from mdk_runtime.service import InferenceService
from mdk_runtime.spec import ModelSpec, read_spec
from tests import onnx_models
from tests.conftest import BundleFactory, ServiceFactory
from tests.onnx_models import _model, _vi


def conv3x3() -> onnx.ModelProto:
    """x [N, 1, H, W] -> y [N, 1, H-2, W-2]: a 3x3 convolution without padding, which needs 3 pixels."""
    kernel = helper.make_tensor("k", TensorProto.FLOAT, [1, 1, 3, 3], [1.0] * 9)
    return _model(
        [helper.make_node("Conv", ["x", "k"], ["y"], kernel_shape=[3, 3])],
        [_vi("x", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [_vi("y", TensorProto.FLOAT, ["N", 1, None, None])],
        "conv3x3",
        [kernel],
    )


def concat_fixed() -> onnx.ModelProto:
    """a [N, 8], b [N, '?'] -> Concat on the batch axis: b's free size must be the fixed 8 of a."""
    return _model(
        [helper.make_node("Concat", ["a", "b"], ["ab"], axis=0)],
        [_vi("a", TensorProto.FLOAT, ["N", 8]), _vi("b", TensorProto.FLOAT, ["N", "?"])],
        [_vi("ab", TensorProto.FLOAT, [None, 8])],
        "concat_fixed",
    )


def reshape_784() -> onnx.ModelProto:
    """x [N, k] -> Reshape [-1, 28, 28]: only a multiple of 784 runs, which no guess is."""
    target = helper.make_tensor("shape", TensorProto.INT64, [3], [-1, 28, 28])
    return _model(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        [_vi("x", TensorProto.FLOAT, ["N", "k"])],
        [_vi("y", TensorProto.FLOAT, [None, 28, 28])],
        "reshape_784",
        [target],
    )


def _predict(served: InferenceService, body: bytes) -> Any:
    reply = served.predict(body, "application/json", "application/json")
    assert reply.status == 200, reply.body[:300]
    return orjson.loads(reply.body)


def _curl_body(line: str) -> bytes:
    """The body the printed curl line sends: its ``-d`` argument, or what its python3 one-liner writes."""
    words = shlex.split(line)
    if words[0] == "python3":
        assert words[1] == "-c"
        assert words[3] == "|"
        assert words[-2:] == ["--data-binary", "@-"]
        return subprocess.run([sys.executable, "-c", words[2]], check=True, capture_output=True).stdout
    assert words[0] == "curl"
    return words[words.index("-d") + 1].encode()


def test_free_sizes_are_tried_until_one_runs(bundle: BundleFactory) -> None:
    model, report = load_model(bundle(conv3x3()), threads=1)
    assert synthetic_sizes(model.signature) == (1, 32, 64, 224)
    assert report.warmup == "synthetic"
    assert report.warm.size == 32
    assert report.status == "ok"
    assert report.warmup_error is None


def test_the_graphs_own_fixed_sizes_are_tried_first(bundle: BundleFactory) -> None:
    model, report = load_model(bundle(concat_fixed()), threads=1)
    assert synthetic_sizes(model.signature) == (1, 8, 32, 64, 224)
    assert report.warm.size == 8
    assert report.warm.request(model.signature) == {"instances": [{"a": [0] * 8, "b": [0] * 8}]}


def test_a_warm_up_that_cannot_run_is_degraded_and_says_what_to_add(bundle: BundleFactory) -> None:
    model, report = load_model(bundle(reshape_784()), threads=1)
    assert report.warmup == "failed"
    assert report.status == "degraded"
    assert report.warmup_error is not None
    assert "free dimensions of size 1, 32, 64, 224" in report.warmup_error
    assert "`example:`" in report.warmup_error
    assert "models.yaml" in report.warmup_error
    line = curl_example("http://h", "m", None, signature=model.signature, warm=report.warm)
    assert line.startswith("# this model has no example request, and no synthetic input ran")
    assert "`example:`" in line


def test_a_model_with_an_example_warms_up_with_it(bundle: BundleFactory) -> None:
    _, report = load_model(bundle(onnx_models.scores(), example={"instances": [[1, 2, 3, 4]]}), threads=1)
    assert report.warmup == "example"
    assert report.status == "ok"


def test_a_disabled_warm_up_is_not_degraded(bundle: BundleFactory) -> None:
    _, report = load_model(bundle(reshape_784()), threads=1, warm_up=False)
    assert report.warmup == "disabled"
    assert report.status == "ok"


@pytest.mark.parametrize(
    "graph",
    [
        onnx_models.two_inputs,
        onnx_models.tokens,
        onnx_models.typed,
        onnx_models.fixed_batch_two,
        onnx_models.scalar,
        onnx_models.images,
        onnx_models.fixed_batch_image,
        conv3x3,
        concat_fixed,
    ],
)
@pytest.mark.parametrize("size", [1, 5])
def test_the_request_body_decodes_to_the_warm_up_feeds(bundle: BundleFactory, graph: Any, size: int) -> None:
    """Whatever the warm-up ran on, the printed request sends: the codec turns one into the other."""
    model = Model.from_session(*_session(bundle(graph())))
    decoded = decode_json(orjson.loads(orjson.dumps(example_request(model.signature, size))), model.signature)
    feeds = example_feeds(model.signature, size=size)
    assert decoded.n == 1
    assert set(decoded.feeds) == set(feeds)
    for name, whole in feeds.items():
        got = decoded.feeds[name]
        # One instance of a fixed batch above one: the runtime pads it to the batch the feeds hold.
        want = whole[:1] if model.signature.batched and model.signature.batch_size not in (None, 1) else whole
        assert got.dtype == want.dtype, name
        assert got.shape == want.shape, name
        assert (got == want).all(), name


def _session(directory: Path) -> tuple[ort.InferenceSession, ModelSpec]:
    spec = read_spec(directory)
    return ort.InferenceSession(str(directory / spec.artifact), providers=["CPUExecutionProvider"]), spec


@pytest.mark.parametrize("graph", [conv3x3, concat_fixed, onnx_models.images, onnx_models.typed])
def test_the_printed_curl_line_predicts(service: ServiceFactory, graph: Any) -> None:
    served = service(graph())
    assert served.model is not None, served.load_error
    assert served.report is not None
    line = curl_example("http://h", "m", None, signature=served.model.signature, warm=served.report.warm)
    body = _curl_body(line)
    if len(body) > EXAMPLE_INLINE_BYTES:  # images: 150,528 zeros are written by the one-liner
        assert line.startswith("python3 -c ")
    else:
        assert line.startswith("curl -s -X POST http://h/models/m/predict ")
    assert len(_predict(served, body)["predictions"]) == 1


def test_the_configs_example_is_printed_as_it_is() -> None:
    assert example_data({"instances": [[1, 2]]}) == ("", "-d '{\"instances\":[[1,2]]}'")


# -- real models from wheels: PaddleOCR (RapidOCR) and Magika -----------------------------------------------


def _wheel_file(package: str, *parts: str) -> Path:
    found = importlib.util.find_spec(package)  # the package's location only: nothing is imported
    assert found is not None, f"{package} is a dev requirement (requirements-dev.txt)"
    assert found.submodule_search_locations
    path = Path(next(iter(found.submodule_search_locations)), *parts)
    assert path.is_file(), path
    return path


@pytest.mark.parametrize(
    "parts",
    [
        ("rapidocr_onnxruntime", "models", "ch_ppocr_mobile_v2.0_cls_infer.onnx"),
        ("rapidocr_onnxruntime", "models", "ch_PP-OCRv4_det_infer.onnx"),
        ("magika", "models", "standard_v3_3", "model.onnx"),  # bytes [unk__214, 2048] int32
    ],
)
def test_real_models_without_an_example_get_a_working_printed_request(
    service: ServiceFactory, parts: tuple[str, ...]
) -> None:
    served = service(_wheel_file(*parts))
    assert served.model is not None, served.load_error
    assert served.report is not None
    assert served.report.warmup == "synthetic"
    line = curl_example("http://h", "m", None, signature=served.model.signature, warm=served.report.warm)
    assert len(_predict(served, _curl_body(line))["predictions"]) == 1


def test_the_local_cloud_prints_the_synthetic_request_for_a_model_without_an_example(tmp_path: Path) -> None:
    (tmp_path / "conv.onnx").write_bytes(conv3x3().SerializeToString())
    (tmp_path / "reshape.onnx").write_bytes(reshape_784().SerializeToString())
    kit = parse_config(
        {
            "models": [
                {"name": "conv", "artifact": "conv.onnx", "runtime": "lambda"},
                {"name": "reshape", "artifact": "reshape.onnx", "runtime": "lambda"},
            ]
        },
        base_dir=tmp_path,
        check_models=False,
    )
    pipe, data = example_data_of(kit.model("conv"))
    assert pipe == ""
    body = orjson.loads(shlex.split(data)[1])
    assert np.asarray(body["instances"]).shape == (1, 1, 32, 32)
    with pytest.raises(NoExample, match=r"no synthetic input ran .* add `example:`"):
        example_data_of(kit.model("reshape"))
