"""Declared processing and handlers, through the one service every serving path uses.

Each model is built from models.yaml-shaped config, bundled by the kit (``write_bundle``) and loaded as an
image loads it (``InferenceService.load``), so these tests see what a deployed model does.
"""

from __future__ import annotations

import base64
import io
import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import orjson
import pytest
from onnx import TensorProto, helper
from PIL import Image

from mdk.bundle import model_spec, write_bundle, write_model_tarball
from mdk.config import ConfigError, parse_config
from mdk_runtime.service import InferenceService, Settings
from tests.onnx_models import _model, _vi

JSON = "application/json"


# -- graphs ----------------------------------------------------------------------------------------


def identity_image(height: int = 4, width: int = 6, layout: str = "NCHW") -> onnx.ModelProto:
    """x [N, 3, H, W] -> y, the same: the test reads back exactly what preprocessing fed."""
    shape = ["N", 3, height, width] if layout == "NCHW" else ["N", height, width, 3]
    return _model(
        [helper.make_node("Identity", ["x"], ["y"])],
        [_vi("x", TensorProto.FLOAT, shape)],
        [_vi("y", TensorProto.FLOAT, shape)],
        "identity_image",
    )


def logits_of_mean() -> onnx.ModelProto:
    """x [N, 3, 4, 4] -> logits [N, 3]: each channel's mean, as logits of three classes."""
    return _model(
        [
            helper.make_node("GlobalAveragePool", ["x"], ["pool"]),
            helper.make_node("Flatten", ["pool"], ["logits"]),
        ],
        [_vi("x", TensorProto.FLOAT, ["N", 3, 4, 4])],
        [_vi("logits", TensorProto.FLOAT, ["N", 3])],
        "logits_of_mean",
    )


def token_echo() -> onnx.ModelProto:
    """input_ids, attention_mask [N, L] int64 -> ids, mask (float): what the tokenizer fed."""
    return _model(
        [
            helper.make_node("Cast", ["input_ids"], ["ids"], to=TensorProto.FLOAT),
            helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        ],
        [
            _vi("input_ids", TensorProto.INT64, ["N", "L"]),
            _vi("attention_mask", TensorProto.INT64, ["N", "L"]),
        ],
        [_vi("ids", TensorProto.FLOAT, ["N", "L"]), _vi("mask", TensorProto.FLOAT, ["N", "L"])],
        "token_echo",
    )


def vectors() -> onnx.ModelProto:
    """x [N, 2] -> x * 3 (an embedding for the normalising test)."""
    three = helper.make_tensor("three", TensorProto.FLOAT, [1], [3.0])
    return _model(
        [helper.make_node("Mul", ["x", "three"], ["v"])],
        [_vi("x", TensorProto.FLOAT, ["N", 2])],
        [_vi("v", TensorProto.FLOAT, ["N", 2])],
        "vectors",
        [three],
    )


# -- helpers ---------------------------------------------------------------------------------------


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def pixels(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def configure(tmp_path: Path, graph: onnx.ModelProto, processing: dict[str, Any], **extra: Any) -> Any:
    tmp_path.mkdir(parents=True, exist_ok=True)
    onnx.save(graph, tmp_path / "model.onnx")
    doc = {
        "models": [
            {"name": "m", "artifact": "model.onnx", "runtime": "lambda", "processing": processing, **extra}
        ]
    }
    return parse_config(doc, base_dir=tmp_path).models[0]


def serve(
    tmp_path: Path, graph: onnx.ModelProto, processing: dict[str, Any], **extra: Any
) -> InferenceService:
    model = configure(tmp_path, graph, processing, **extra)
    bundle = write_bundle(model, tmp_path / "bundle")
    service = InferenceService.load(Settings(model_dir=bundle, threads=1))
    assert service.load_error is None, service.load_error.message
    return service


def answer(service: InferenceService, body: bytes, content_type: str = JSON) -> tuple[int, Any]:
    reply = service.predict(body, content_type, JSON)
    return reply.status, orjson.loads(reply.body)


def expected_chw(image: np.ndarray, mean: float = 0.0, std: float = 1.0) -> np.ndarray:
    return ((image.astype(np.float32) / 255 - mean) / std).transpose(2, 0, 1)


# -- images ----------------------------------------------------------------------------------------


def test_an_image_arrives_as_the_graph_wants_it_from_every_body_form(tmp_path: Path) -> None:
    service = serve(
        tmp_path,
        identity_image(),
        {"image": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}, "output": {"kind": "tensor"}},
    )
    image = pixels(4, 6)
    data = png(image)
    want = expected_chw(image, 0.5, 0.25)
    boundary = "mdk-test-boundary"
    multipart = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    forms = [
        (data, "image/png"),
        (json.dumps({"instances": [base64.b64encode(data).decode()]}).encode(), JSON),
        (json.dumps([{"b64": base64.b64encode(data).decode()}]).encode(), JSON),
        (multipart, f"multipart/form-data; boundary={boundary}"),
    ]
    for body, kind in forms:
        status, doc = answer(service, body, kind)
        assert status == 200, (kind, doc)
        np.testing.assert_allclose(np.asarray(doc["predictions"][0]["y"]), want, rtol=1e-6, atol=1e-6)


def test_channel_order_layout_and_resize_modes(tmp_path: Path) -> None:
    image = pixels(8, 4, seed=1)  # 8 high, 4 wide
    data = png(image)
    bgr = serve(
        tmp_path / "bgr",
        identity_image(8, 4, "NHWC"),
        {"image": {"channels": "BGR", "layout": "NHWC", "scale": 1.0}, "output": {"kind": "tensor"}},
    )
    _, doc = answer(bgr, data, "image/png")
    np.testing.assert_array_equal(
        np.asarray(doc["predictions"][0]["y"]), image[:, :, ::-1].astype(np.float32)
    )

    # letterbox into 4 x 4: the 8 x 4 image is scaled to 4 x 2 and centred; the sides are `fill`
    box = serve(
        tmp_path / "box",
        identity_image(4, 4),
        {
            "image": {"resize": {"mode": "letterbox", "width": 4, "height": 4}, "fill": -7.0},
            "output": {"kind": "tensor"},
        },
    )
    _, doc = answer(box, data, "image/png")
    y = np.asarray(doc["predictions"][0]["y"])
    assert (y[:, :, 0] == -7).all()
    assert (y[:, :, 3] == -7).all()
    want = (
        np.asarray(Image.fromarray(image).resize((2, 4), Image.Resampling.BILINEAR), dtype=np.float32) / 255
    )
    np.testing.assert_allclose(y[:, :, 1:3], want.transpose(2, 0, 1), atol=1e-6)

    # fit_height into 4 high x 6 wide: 8 x 4 becomes 4 x 2, placed left, the right filled
    fit = serve(
        tmp_path / "fit",
        identity_image(4, 6),
        {
            "image": {"resize": {"mode": "fit_height", "width": 6, "height": 4}, "fill": 0.0},
            "output": {"kind": "tensor"},
        },
    )
    _, doc = answer(fit, data, "image/png")
    y = np.asarray(doc["predictions"][0]["y"])
    np.testing.assert_allclose(y[:, :, :2], want.transpose(2, 0, 1), atol=1e-6)
    assert (y[:, :, 2:] == 0).all()

    # centre_crop: shorter side to 4 (4 x 8 -> 4 wide x 8 high), then the middle 4 x 4
    crop = serve(
        tmp_path / "crop",
        identity_image(4, 4),
        {"image": {"resize": {"mode": "centre_crop", "width": 4, "height": 4}}, "output": {"kind": "tensor"}},
    )
    _, doc = answer(crop, data, "image/png")
    want = image[2:6].astype(np.float32) / 255
    np.testing.assert_allclose(np.asarray(doc["predictions"][0]["y"]), want.transpose(2, 0, 1), atol=1e-6)


def test_declared_classes_answer_small_with_labels(tmp_path: Path) -> None:
    service = serve(
        tmp_path,
        logits_of_mean(),
        {
            "image": {"scale": 1.0},
            "output": {"kind": "classes", "softmax": True, "top_k": 2},
        },
        schema={"labels": ["red", "green", "blue"]},
    )
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    image[:, :, 2] = 3  # blue's logit is 3, the others 0
    status, doc = answer(service, png(image), "image/png")
    assert status == 200
    p = np.exp([0.0, 0.0, 3.0]) / np.exp([0.0, 0.0, 3.0]).sum()
    top = doc["predictions"][0]
    assert top["label"] == "blue"
    assert top["score"] == pytest.approx(p[2])
    assert [c["label"] for c in top["classes"]] == ["blue", "red"]  # top 2, ties in class order


def test_bad_images_are_the_clients_errors_and_name_where(tmp_path: Path) -> None:
    service = serve(tmp_path, identity_image(), {"image": {"max_pixels": 100}, "output": {"kind": "tensor"}})
    cases = [
        (b"not an image", "image/png", 422, "body"),
        (
            json.dumps({"instances": [base64.b64encode(png(pixels(4, 6))).decode(), "@@@"]}).encode(),
            JSON,
            422,
            "instances[1]",
        ),
        (json.dumps({"instances": [{"b64": "aGVsbG8="}]}).encode(), JSON, 422, "instances[0]"),
        (png(pixels(20, 20)), "image/png", 413, "body"),  # 400 pixels, over max_pixels
        (png(pixels(4, 6)), "image/gif", 415, None),
        (b'{"inputs": {}}', JSON, 400, None),
    ]
    for body, kind, status, where in cases:
        got, doc = answer(service, body, kind)
        assert got == status, (kind, doc)
        if where is not None:
            assert doc["error"]["field"] == where or doc["error"]["message"].startswith(where), doc
    # the wrong size with no resize configured names both sizes
    got, doc = answer(service, png(pixels(5, 6)), "image/png")
    assert got == 422
    assert "6 x 5" in doc["error"]["message"]
    assert "6 x 4" in doc["error"]["message"]


def test_config_time_checks_name_the_field(tmp_path: Path) -> None:
    onnx.save(identity_image(), tmp_path / "model.onnx")

    def problems(processing: dict[str, Any]) -> str:
        doc = {
            "models": [{"name": "m", "artifact": "model.onnx", "runtime": "lambda", "processing": processing}]
        }
        with pytest.raises(ConfigError) as caught:
            parse_config(doc, base_dir=tmp_path)
        return "\n".join(caught.value.problems)

    assert "models[0].processing.image.resize.height" in problems(
        {"image": {"resize": {"width": 6, "height": 5}}}
    )
    assert "processing.image.channels" in problems({"image": {"channels": "L"}})
    assert "models[0].processing.image.std" in problems({"image": {"std": [0, 1, 1]}})
    assert "models[0].processing.text.tokenizer" in problems({"text": {"tokenizer": "nope.json"}})
    assert "models[0].processing" in problems({"image": {}, "text": {"tokenizer": "model.onnx"}})
    assert "processing.output.output" in problems({"output": {"output": "nope"}})
    (tmp_path / "h.py").write_text("def preprocess(instance, context):\n    return {}\n")
    assert "content_types: 'application/*' covers JSON" in problems(
        {"handler": "h.py", "content_types": ["application/*"]}
    )
    assert "content_types: 'application/json' covers JSON" in problems(
        {"handler": "h.py", "content_types": ["application/json"]}
    )


# -- text ------------------------------------------------------------------------------------------


def make_tokenizer(path: Path) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "the": 4, "model": 5, "ships": 6, "today": 7}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok.save(str(path))
    return Tokenizer.from_file(str(path))


def test_text_is_tokenized_by_the_bundled_tokenizer(tmp_path: Path) -> None:
    tokenizer = make_tokenizer(tmp_path / "tokenizer.json")
    service = serve(
        tmp_path,
        token_echo(),
        {
            "text": {"tokenizer": "tokenizer.json", "max_length": 6},
            "output": {"kind": "tensor", "output": "ids"},
        },
    )
    texts = ["the model ships", "the model ships today really today"]
    status, doc = answer(service, json.dumps({"instances": texts}).encode())
    assert status == 200, doc
    first, second = (row["ids"] for row in doc["predictions"])
    want_first = tokenizer.encode(texts[0]).ids
    assert first[: len(want_first)] == want_first
    assert first[len(want_first) :] == [0] * (6 - len(want_first))
    assert second == tokenizer.encode(texts[1]).ids[:6]  # truncated to max_length
    status, doc = answer(service, b"the model", "text/plain")
    assert status == 200
    assert doc["predictions"][0]["ids"] == tokenizer.encode("the model").ids
    status, doc = answer(service, json.dumps({"instances": ["ok", 3]}).encode())
    assert status == 422
    assert doc["error"]["field"] == "instances[1]"


def test_text_longer_than_max_length_is_refused_without_truncation(tmp_path: Path) -> None:
    make_tokenizer(tmp_path / "tokenizer.json")
    service = serve(
        tmp_path,
        token_echo(),
        {"text": {"tokenizer": "tokenizer.json", "max_length": 4, "truncation": False}},
    )
    status, doc = answer(service, json.dumps(["the model ships today"]).encode())
    assert status == 422
    assert "max_length of 4" in doc["error"]["message"]


def test_embeddings_are_normalised(tmp_path: Path) -> None:
    service = serve(tmp_path, vectors(), {"output": {"kind": "embedding", "normalize": True}})
    status, doc = answer(service, b'{"instances": [[3, 4], [1, 0]]}')
    assert status == 200
    assert doc["predictions"][0]["embedding"] == pytest.approx([0.6, 0.8])
    assert doc["predictions"][1]["embedding"] == pytest.approx([1.0, 0.0])


# -- handlers --------------------------------------------------------------------------------------

HANDLER = """
import numpy as np
from mdk_runtime.errors import InvalidInput

def load(context):
    context.state = {"offset": float(context.options["offset"])}

def preprocess(instance, context):
    if not isinstance(instance, (bytes, list)):
        raise InvalidInput("expected bytes or a list of two numbers")
    if instance == [0, 0]:
        raise ZeroDivisionError("a bug in the handler")
    values = list(instance[:2]) if isinstance(instance, bytes) else instance
    return {"x": np.asarray([values], dtype=np.float32) + context.state["offset"]}

def postprocess(outputs, instance, context):
    return {"total": float(outputs["v"].sum()), "files": sorted(p.name for p in context.files.iterdir())}
"""


def handler_service(tmp_path: Path, source: str = HANDLER) -> InferenceService:
    (tmp_path / "handler.py").write_text(textwrap.dedent(source))
    (tmp_path / "vocab.txt").write_text("a\nb\n")
    return serve(
        tmp_path,
        vectors(),
        {
            "handler": "handler.py",
            "files": ["vocab.txt"],
            "options": {"offset": 1},
            "content_types": ["application/octet-stream"],
        },
    )


def test_a_handler_runs_with_its_state_options_and_files(tmp_path: Path) -> None:
    service = handler_service(tmp_path)
    status, doc = answer(service, b'{"instances": [[1, 2], {"b64": "AQI="}]}')
    assert status == 200, doc
    assert [p["total"] for p in doc["predictions"]] == [(2 + 3) * 3, (2 + 3) * 3]
    assert doc["predictions"][0]["files"] == ["handler.py", "vocab.txt"]
    status, doc = answer(service, bytes([1, 2]), "application/octet-stream")
    assert status == 200
    assert doc["predictions"][0]["total"] == 15


def test_handler_errors_map_to_the_kits_error_shape(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    service = handler_service(tmp_path)
    status, doc = answer(service, b'{"instances": [[1, 2], "text"]}')
    assert status == 422
    assert doc["error"] == {
        "code": "invalid_input",
        "message": "instances[1]: expected bytes or a list of two numbers",
        "field": "instances[1]",
    }
    status, doc = answer(service, b"[[0, 0]]")
    assert status == 500
    assert doc["error"]["code"] == "processing_failed"
    assert "preprocess" in doc["error"]["message"]
    assert "Traceback" not in doc["error"]["message"]
    assert "a bug in the handler" not in json.dumps(doc)
    assert any("ZeroDivisionError" in (r.exc_text or "") for r in caplog.records)


def test_a_broken_handler_fails_config_validation_not_the_first_client(tmp_path: Path) -> None:
    onnx.save(vectors(), tmp_path / "model.onnx")
    (tmp_path / "handler.py").write_text("def preprocess(instance, context):\n    return {'x': [[1, 2]]\n")
    doc = {
        "models": [
            {
                "name": "m",
                "artifact": "model.onnx",
                "runtime": "lambda",
                "processing": {"handler": "handler.py"},
            }
        ]
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(doc, base_dir=tmp_path)
    assert any(
        p.startswith("models[0].processing.handler: importing handler.py failed: SyntaxError")
        for p in caught.value.problems
    )
    # a handler whose hooks fail on the example fails the warm-up the same way
    (tmp_path / "handler.py").write_text("def preprocess(instance, context):\n    raise RuntimeError('no')\n")
    doc["models"][0]["example"] = {"instances": [[1, 2]]}
    with pytest.raises(ConfigError) as caught:
        parse_config(doc, base_dir=tmp_path)
    assert any("warm-up" in p and "preprocess hook failed" in p for p in caught.value.problems), (
        caught.value.problems
    )


def test_batch_records_keep_going_past_bad_lines(tmp_path: Path) -> None:
    service = handler_service(tmp_path)
    body = b'[1, 2]\nnot json\n"text"\n{"b64": "AQI="}\n'
    work = service.prepare(
        body, "application/jsonlines", None, formats=(JSON, "application/jsonlines", "text/csv")
    )
    assert service.model is not None
    reply = service.finish(work, [service.model.run(b.feeds, b.n) for b in work.parts])
    lines = [orjson.loads(line) for line in reply.body.splitlines()]
    assert len(lines) == 4
    assert lines[0]["total"] == 15
    assert lines[3]["total"] == 15
    assert lines[1]["error"]["code"] == "malformed_request"
    assert lines[2]["error"]["code"] == "invalid_input"
    assert lines[2]["error"]["field"] == "line 3"


# -- bundles ---------------------------------------------------------------------------------------


def test_processing_files_ship_in_the_bundle_and_move_the_version(tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text(textwrap.dedent(HANDLER))
    model = configure(tmp_path, vectors(), {"handler": "handler.py", "options": {"offset": 1}})
    first = model_spec(model).version
    bundle = write_bundle(model, tmp_path / "bundle")
    assert (bundle / "processing" / "handler.py").read_text() == (tmp_path / "handler.py").read_text()
    spec = json.loads((bundle / "mdk-model.json").read_text())
    assert spec["processing"]["handler"] == "processing/handler.py"
    assert (bundle / "requirements.txt").is_file()
    (tmp_path / "handler.py").write_text(textwrap.dedent(HANDLER) + "\n# changed\n")
    assert model_spec(model).version != first  # new processing code is a new version (a rollout)
    tarball = write_model_tarball(model, tmp_path / "model.tar.gz")
    import tarfile

    with tarfile.open(tarball) as tar:
        assert {"model.onnx", "mdk-model.json", "processing/handler.py"} <= set(tar.getnames())


def test_image_models_install_pillow_into_their_own_image_only(tmp_path: Path) -> None:
    image = configure(tmp_path, identity_image(), {"image": {}})
    plain = parse_config(
        {"models": [{"name": "p", "artifact": "model.onnx", "runtime": "lambda"}]}, base_dir=tmp_path
    ).models[0]
    pins = Path("layers/requirements-processing.txt").read_text().splitlines()
    want = next(line for line in pins if line.startswith("pillow=="))
    assert want in write_bundle(image, tmp_path / "bi").joinpath("requirements.txt").read_text().splitlines()
    plain_reqs = write_bundle(plain, tmp_path / "bp").joinpath("requirements.txt").read_text()
    assert not [line for line in plain_reqs.splitlines() if line and not line.startswith("#")]


def test_external_data_is_bundled_whole_and_hashed(tmp_path: Path) -> None:
    weights = np.arange(4096, dtype=np.float32).reshape(2048, 2)
    graph = _model(
        [helper.make_node("MatMul", ["x", "w"], ["v"])],
        [_vi("x", TensorProto.FLOAT, ["N", 2048])],
        [_vi("v", TensorProto.FLOAT, ["N", 2])],
        "external",
        [onnx.numpy_helper.from_array(weights, "w")],
    )
    src = tmp_path / "src"
    src.mkdir()
    onnx.save(graph, src / "model.onnx", save_as_external_data=True, location="weights.bin", size_threshold=0)
    doc = {
        "models": [
            {
                "name": "m",
                "artifact": "src/model.onnx",
                "runtime": "lambda",
                "example": {"instances": [[1.0] * 2048]},
            }
        ]
    }
    model = parse_config(doc, base_dir=tmp_path).models[0]
    before = model_spec(model).version
    bundle = write_bundle(model, tmp_path / "bundle")
    assert (bundle / "weights.bin").read_bytes() == (src / "weights.bin").read_bytes()
    service = InferenceService.load(Settings(model_dir=bundle, threads=1))
    assert service.load_error is None
    status, out = answer(service, json.dumps({"instances": [[1.0] * 2048]}).encode())
    assert status == 200
    assert out["predictions"][0] == pytest.approx(weights.sum(axis=0).tolist())
    # new weights in the data file alone are a new version
    onnx.save(
        _model(
            [helper.make_node("MatMul", ["x", "w"], ["v"])],
            [_vi("x", TensorProto.FLOAT, ["N", 2048])],
            [_vi("v", TensorProto.FLOAT, ["N", 2])],
            "external",
            [onnx.numpy_helper.from_array(weights + 1, "w")],
        ),
        src / "model.onnx",
        save_as_external_data=True,
        location="weights.bin",
        size_threshold=0,
    )
    assert model_spec(model).version != before
    # and a missing data file fails config validation, naming it
    (src / "weights.bin").unlink()
    with pytest.raises(ConfigError) as caught:
        parse_config(doc, base_dir=tmp_path)
    assert any("models[0].artifact" in p and "weights.bin" in p for p in caught.value.problems)


def test_metadata_describes_the_processed_interface_and_graph_metadata(tmp_path: Path) -> None:
    graph = identity_image()
    onnx.helper.set_model_props(graph, {"character": "abc"})
    service = serve(tmp_path, graph, {"image": {}, "output": {"kind": "tensor"}})
    doc = orjson.loads(service.metadata().body)
    assert doc["graph_metadata"] == {"character": "abc"}
    assert "image/png" in doc["formats"]["request"]
    assert doc["processing"]["request"]["raw_types"][:3] == ["image/jpeg", "image/png", "image/webp"]
