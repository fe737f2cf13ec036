"""The real pretrained examples answer as their own packages do, through the kit.

Each model is bundled from ``models/pretrained.yaml`` by the kit (``write_bundle``), loaded as every
serving path loads it (``InferenceService.load``, warm-up through its processing included) and asked
with real inputs (committed text-line images and files, made offline by ``mdk.pretrained``). The
reference is the installed package's own pipeline on the same bytes: RapidOCR's ``TextClassifier`` and
``TextRecognizer`` (after its ``LoadImage``), Magika's ``identify_bytes``. No expected answer is
written by hand.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.resources
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mdk import pretrained
from mdk.config import KitConfig
from mdk_runtime.service import InferenceService
from tests.pretrained_models import pretrained_config, reference_services

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
TEXT_LINES = sorted(
    str(p.relative_to(MODELS))
    for p in [*MODELS.glob("text-direction/**/*.png"), *MODELS.glob("ocr-line/**/*.png")]
)
FILES = sorted(str(p.relative_to(MODELS)) for p in (MODELS / "file-type" / "samples").iterdir())


@pytest.fixture(scope="module")
def config() -> KitConfig:
    return pretrained_config()


@pytest.fixture(scope="module")
def services(config: KitConfig, tmp_path_factory: pytest.TempPathFactory) -> dict[str, InferenceService]:
    loaded = reference_services(config, tmp_path_factory.mktemp("bundles"))
    for service in loaded.values():  # each example went through the model's processing at warm-up
        assert json.loads(service.health().body)["warmup"] == "example"
    return loaded


def answer(service: InferenceService, body: bytes, content_type: str) -> Any:
    reply = service.predict(body, content_type, "application/json")
    assert reply.status == 200, reply.body
    (one,) = json.loads(reply.body)["predictions"]
    return one


def turned(png: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(png)).rotate(180).save(out, "PNG")
    return out.getvalue()


# -- RapidOCR's own pipeline ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rapidocr() -> dict[str, Any]:
    from rapidocr_onnxruntime.ch_ppocr_cls.text_cls import TextClassifier  # type: ignore[import-untyped]
    from rapidocr_onnxruntime.ch_ppocr_rec.text_recognize import TextRecognizer  # type: ignore[import-untyped]
    from rapidocr_onnxruntime.utils import read_yaml  # type: ignore[import-untyped]
    from rapidocr_onnxruntime.utils.load_image import LoadImage  # type: ignore[import-untyped]

    root = importlib.resources.files("rapidocr_onnxruntime")
    settings = read_yaml(str(root / "config.yaml"))

    def stage(key: str) -> dict[str, Any]:
        doc = dict(settings[key])
        doc["model_path"] = str(root / doc["model_path"])
        return doc

    return {"load": LoadImage(), "cls": TextClassifier(stage("Cls")), "rec": TextRecognizer(stage("Rec"))}


def reference_direction(rapidocr: dict[str, Any], png: bytes) -> tuple[str, float]:
    _, ((label, score),), _ = rapidocr["cls"]([rapidocr["load"](png)])
    return label, float(score)


def reference_text(rapidocr: dict[str, Any], png: bytes) -> tuple[str, float]:
    # One line per call: RapidOCR pads a batch to its widest line, the kit recognises each on its own.
    ((text, score),), _ = rapidocr["rec"]([rapidocr["load"](png)])
    return text, float(score)


# Scores: the kit resizes with Pillow, RapidOCR with OpenCV. Where both sample the same points (a crop up
# to 48 px high is enlarged), pixels agree to one grey level (rounding), which moved the classifier's
# score by at most 4.5e-3 and the recogniser's mean character probability by at most 2.7e-3 on these
# images (labels and text identical): hence 1e-2.
SCORE_TOLERANCE = 1e-2
# Shrinking a taller crop, Pillow's resize filters (antialiases) and OpenCV's does not: a label flip on
# the lines the classifier is unsure of. text-direction declares resize.antialias: false (cv2's sampling);
# upside-down-large.png as is and sentence.png turned are the cases that tell the two apart.


@pytest.mark.parametrize(
    ("sample", "rotate"),
    [
        pytest.param(s, r, id=f"{s.rsplit('/', 1)[-1]}-{'turned' if r else 'as-is'}")
        for s in TEXT_LINES
        for r in (False, True)
    ],
)
def test_text_direction_answers_as_rapidocr_text_classifier(
    services: dict[str, InferenceService], rapidocr: dict[str, Any], sample: str, rotate: bool
) -> None:
    png = (MODELS / sample).read_bytes()
    png = turned(png) if rotate else png
    label, score = reference_direction(rapidocr, png)
    got = answer(services["text-direction"], png, "image/png")
    assert got["label"] == label
    assert got["score"] == pytest.approx(score, abs=SCORE_TOLERANCE)
    assert [c["label"] for c in got["classes"]] == sorted(["0", "180"], key=lambda c: c != label)


def test_text_direction_shrinks_a_tall_line_as_opencv_does(
    services: dict[str, InferenceService], rapidocr: dict[str, Any]
) -> None:
    png = (MODELS / "text-direction/samples/upside-down-large.png").read_bytes()  # 70 px high: shrunk to 48
    service = services["text-direction"]
    assert service.processor is not None
    (group,) = service.processor.preprocess([png], lambda _i: "body")
    fed = next(iter(group.feeds.values()))
    expected = rapidocr["cls"].resize_norm_img(rapidocr["load"](png))[None]
    assert fed.shape == expected.shape
    assert float(np.max(np.abs(fed - expected))) <= 1 / 127.5 + 1e-6  # one grey level after (x/255-0.5)/0.5


UPRIGHT_LINES = [s for s in TEXT_LINES if s.startswith("ocr-line/")]


@pytest.mark.parametrize("sample", UPRIGHT_LINES)
def test_ocr_line_reads_what_rapidocr_text_recognizer_reads(
    services: dict[str, InferenceService], rapidocr: dict[str, Any], sample: str
) -> None:
    png = (MODELS / sample).read_bytes()
    text, score = reference_text(rapidocr, png)
    got = answer(services["ocr-line"], png, "image/png")
    assert got == {"text": text, "score": pytest.approx(score, abs=SCORE_TOLERANCE)}
    assert text.strip()  # a real reading, not an empty answer agreeing with an empty answer


def test_an_upside_down_line_read_through_both_models_as_rapidocr_reads_it(
    services: dict[str, InferenceService], rapidocr: dict[str, Any]
) -> None:
    png = (MODELS / "text-direction/samples/upside-down.png").read_bytes()
    # RapidOCR: classify, turn the crops it finds upside down (score over cls_thresh), recognise.
    lines, _, _ = rapidocr["cls"]([rapidocr["load"](png)])
    ((text, _),), _ = rapidocr["rec"](lines)
    direction = answer(services["text-direction"], png, "image/png")
    assert direction["label"] == "180"
    assert direction["score"] > rapidocr["cls"].cls_thresh
    got = answer(services["ocr-line"], turned(png), "image/png")
    assert got["text"] == text


def test_ocr_line_takes_base64_in_json_and_answers_each_line(
    services: dict[str, InferenceService], rapidocr: dict[str, Any]
) -> None:
    pngs = [(MODELS / s).read_bytes() for s in UPRIGHT_LINES]
    body = json.dumps({"instances": [{"b64": base64.b64encode(p).decode()} for p in pngs]}).encode()
    reply = services["ocr-line"].predict(body, "application/json", None)
    assert reply.status == 200, reply.body
    texts = [p["text"] for p in json.loads(reply.body)["predictions"]]
    assert texts == [reference_text(rapidocr, p)[0] for p in pngs]


def test_ocr_line_refuses_what_is_not_an_image_with_a_422(services: dict[str, InferenceService]) -> None:
    reply = services["ocr-line"].predict(b"%PDF-1.4 not an image", "image/png", None)
    assert reply.status == 422
    assert "not a readable image" in json.loads(reply.body)["error"]["message"]


def test_ocr_line_refuses_a_line_wider_than_its_max_width(services: dict[str, InferenceService]) -> None:
    out = io.BytesIO()
    Image.new("RGB", (4200, 40), (255, 255, 255)).save(out, "PNG")  # 5,040 px wide at 48 px high
    reply = services["ocr-line"].predict(out.getvalue(), "image/png", None)
    assert reply.status == 422
    assert "options.max_width" in json.loads(reply.body)["error"]["message"]


# -- Magika's own pipeline --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def magika() -> Any:
    from magika import Magika

    return Magika()


def assert_as_magika(got: dict[str, Any], result: Any) -> None:
    prediction = result.prediction
    assert got == {
        "label": str(prediction.output.label),
        "score": pytest.approx(result.score, rel=1e-5),
        "group": prediction.output.group,
        "mime_type": prediction.output.mime_type,
        "description": prediction.output.description,
        "is_text": prediction.output.is_text,
        "model_label": str(prediction.dl.label),
        "overwrite_reason": str(prediction.overwrite_reason),
    }


@pytest.mark.parametrize("sample", FILES)
def test_file_type_answers_as_magika_identify_bytes(
    services: dict[str, InferenceService], magika: Any, sample: str
) -> None:
    data = (MODELS / sample).read_bytes()
    got = answer(services["file-type"], data, "application/octet-stream")
    assert_as_magika(got, magika.identify_bytes(data))


def _edge_cases() -> Iterator[Any]:
    rng = np.random.default_rng(0)
    yield pytest.param(b"", id="empty")
    yield pytest.param(b"hi\n", id="few-bytes-text")
    yield pytest.param(b"\xff\xfe\x00\x81", id="few-bytes-binary")
    yield pytest.param(b"  \n\t  ab c  \r\n   " * 3, id="few-bytes-after-stripping")
    yield pytest.param(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes(), id="random-bytes")
    yield pytest.param(b"\n" * 5000 + b"print('after the first block of whitespace')\n", id="long-whitespace")
    yield pytest.param(b"the quick brown fox jumps over the lazy dog, " * 20, id="plain-text")


@pytest.mark.parametrize("data", list(_edge_cases()))
def test_file_type_follows_magika_rules_for_empty_small_and_unsure_inputs(
    services: dict[str, InferenceService], magika: Any, data: bytes
) -> None:
    # JSON with {"b64": ...}: the way to send an empty file (an empty raw body is refused, 422).
    body = json.dumps({"instances": [{"b64": base64.b64encode(data).decode()}]}).encode()
    got = answer(services["file-type"], body, "application/json")
    assert_as_magika(got, magika.identify_bytes(data))


def test_file_type_answers_many_files_in_one_request_in_order(
    services: dict[str, InferenceService], magika: Any
) -> None:
    datas = [(MODELS / s).read_bytes() for s in FILES]
    body = json.dumps({"instances": [{"b64": base64.b64encode(d).decode()} for d in datas]}).encode()
    reply = services["file-type"].predict(body, "application/json", None)
    assert reply.status == 200, reply.body
    labels = [p["label"] for p in json.loads(reply.body)["predictions"]]
    assert labels == [str(magika.identify_bytes(d).output.label) for d in datas]
    assert len(set(labels)) == len(FILES)  # the samples are of different types


def test_file_type_refuses_a_json_item_that_is_not_bytes(services: dict[str, InferenceService]) -> None:
    reply = services["file-type"].predict(b'{"instances": ["not base64 bytes"]}', "application/json", None)
    assert reply.status == 422
    assert "b64" in json.loads(reply.body)["error"]["message"]


# -- the copies from the wheels ---------------------------------------------------------------------


def test_build_copies_the_wheels_files_once_and_leaves_them_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pretrained, "MODELS_DIR", tmp_path)
    model = next(m for m in pretrained.PRETRAINED if m.name == "file-type")
    first = pretrained.build(model)
    assert sorted(p.name for p in first) == sorted([*(f.target for f in model.files), "card.json"])
    stamps = {p: p.stat().st_mtime_ns for p in first}
    assert pretrained.build(model) == []
    assert {p: p.stat().st_mtime_ns for p in first} == stamps
    card = json.loads((model.directory / "card.json").read_text())
    root = importlib.resources.files(model.package)
    for entry in card["files"]:
        source = next(f.source for f in model.files if f.target == entry["file"])
        wheel = hashlib.sha256((root / source).read_bytes()).hexdigest()
        assert (
            entry["sha256"]
            == wheel
            == hashlib.sha256((model.directory / entry["file"]).read_bytes()).hexdigest()
        )
    assert card["source"]["distribution"] == "magika"
    assert card["source"]["licence"] == "Apache-2.0"


def test_a_changed_copy_is_restored_from_the_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pretrained, "MODELS_DIR", tmp_path)
    model = next(m for m in pretrained.PRETRAINED if m.name == "text-direction")
    pretrained.build(model)
    graph = model.directory / "model.onnx"
    graph.write_bytes(b"not the model")
    assert pretrained.build(model) == [graph]
    assert (
        graph.read_bytes() == (importlib.resources.files(model.package) / model.files[0].source).read_bytes()
    )
