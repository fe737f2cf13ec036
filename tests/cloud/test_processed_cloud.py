"""The real pretrained examples deployed onto the local cloud from ``models/pretrained.yaml`` itself, and called
through the local API Gateway as a client would (SigV4-signed, the stack's default auth): raw PNGs to the
text-direction Lambda function, a PDF's bytes to file-type, text lines to ocr-line's SageMaker endpoint, and a
file through the batch inbox. Each answer is compared with the in-process ``InferenceService`` on the same
bytes, which ``tests/models/test_pretrained.py`` ties to RapidOCR's and Magika's own pipelines."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mdk.local.cloud.cloud import LocalCloud
from mdk_runtime.service import InferenceService
from tests.cloud.conftest import REPO, signed
from tests.cloud.test_local_cloud import wait_for_manifest
from tests.pretrained_models import expected, pretrained_config, reference_services, same_answer

MODELS = REPO / "models"
CONFIG = MODELS / "pretrained.yaml"
MINUTE_S = 0.3
UPSIDE_DOWN = MODELS / "text-direction/samples/upside-down.png"
TEXT_DIRECTION_SAMPLES = [
    MODELS / "text-direction/example.png",
    UPSIDE_DOWN,
    MODELS / "text-direction/samples/upright-small.png",
]
OCR_SAMPLES = sorted((MODELS / "ocr-line/samples").glob("*.png"))
PDF = MODELS / "file-type/samples/page.pdf"
#: Bytes a client sends as image/png that are no image at all.
NOT_AN_IMAGE = b"%PDF-1.4 this is not a PNG at all"

log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> dict[str, InferenceService]:
    return reference_services(pretrained_config(), tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="module")
def cloud(
    services: dict[str, InferenceService], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCloud]:
    """models/pretrained.yaml as it is in the repository, deployed (no copy: the user's file alone)."""
    for noisy in ("werkzeug", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    local = LocalCloud(config=CONFIG, work=tmp_path_factory.mktemp("cloud-work"), minute_s=MINUTE_S)
    started = time.perf_counter()
    local.start()
    try:
        local.deploy()
        # Reported, not asserted: how long `mdk local up` takes for these three models on this machine.
        log.warning("local cloud with %s up in %.1f s", ", ".join(services), time.perf_counter() - started)
        yield local
    finally:
        local.stop()


def predict(cloud: LocalCloud, model: str, body: bytes, content_type: str) -> tuple[int, dict[str, str], Any]:
    status, headers, raw = signed(
        f"{cloud.gateway.url}models/{model}/predict",
        method="POST",
        body=body,
        headers={"content-type": content_type},
    )
    return status, headers, json.loads(raw)


def test_every_model_is_deployed_warm_on_its_example(cloud: LocalCloud) -> None:
    for model in ("text-direction", "file-type"):
        status, _, raw = signed(f"{cloud.gateway.url}models/{model}/health")
        assert status == 200, raw
        assert json.loads(raw)["warmup"] == "example", model  # the example went through its processing
    endpoint = cloud.session.client("sagemaker").describe_endpoint(EndpointName="mdk-dev-ocr-line")
    assert endpoint["EndpointStatus"] == "InService"


@pytest.mark.parametrize("sample", TEXT_DIRECTION_SAMPLES, ids=lambda p: p.name)
def test_text_direction_answers_a_raw_png_through_the_gateway(
    cloud: LocalCloud, services: dict[str, InferenceService], sample: Path
) -> None:
    png = sample.read_bytes()
    status, _, doc = predict(cloud, "text-direction", png, "image/png")
    assert status == 200, doc
    (got,) = doc["predictions"]
    same_answer(got, expected(services["text-direction"], png, "image/png"))
    if sample == UPSIDE_DOWN:
        assert got["label"] == "180"


def test_text_direction_answers_base64_in_json_through_the_gateway(
    cloud: LocalCloud, services: dict[str, InferenceService]
) -> None:
    pngs = [p.read_bytes() for p in TEXT_DIRECTION_SAMPLES]
    body = json.dumps({"instances": [{"b64": base64.b64encode(p).decode()} for p in pngs]}).encode()
    status, _, doc = predict(cloud, "text-direction", body, "application/json")
    assert status == 200, doc
    for got, png in zip(doc["predictions"], pngs, strict=True):
        same_answer(got, expected(services["text-direction"], png, "image/png"))


def test_file_type_says_a_pdf_is_a_pdf_from_its_raw_bytes(
    cloud: LocalCloud, services: dict[str, InferenceService]
) -> None:
    data = PDF.read_bytes()
    status, _, doc = predict(cloud, "file-type", data, "application/octet-stream")
    assert status == 200, doc
    (got,) = doc["predictions"]
    same_answer(got, expected(services["file-type"], data, "application/octet-stream"))
    assert got["label"] == "pdf"
    assert got["mime_type"] == "application/pdf"


@pytest.mark.parametrize("sample", OCR_SAMPLES, ids=lambda p: p.name)
def test_ocr_line_reads_a_raw_png_through_the_sagemaker_route(
    cloud: LocalCloud, services: dict[str, InferenceService], sample: Path
) -> None:
    png = sample.read_bytes()
    status, headers, doc = predict(cloud, "ocr-line", png, "image/png")
    assert status == 200, doc
    assert headers.get("x-amzn-invoked-production-variant") == "primary"
    (got,) = doc["predictions"]
    same_answer(got, expected(services["ocr-line"], png, "image/png"))
    assert got["text"].strip()


def test_a_png_that_is_not_an_image_is_a_422_naming_the_body_on_both_backends(cloud: LocalCloud) -> None:
    for model in ("text-direction", "ocr-line"):
        status, _, doc = predict(cloud, model, NOT_AN_IMAGE, "image/png")
        assert status == 422, (model, doc)
        assert doc["error"]["code"] == "invalid_input", model
        assert doc["error"]["field"] == "body", model


def test_a_file_of_images_in_the_batch_inbox_is_answered_line_by_line(
    cloud: LocalCloud, services: dict[str, InferenceService]
) -> None:
    s3 = cloud.session.client("s3")
    bucket = cloud.ready.bucket if cloud.ready else None
    assert bucket
    pngs = [p.read_bytes() for p in TEXT_DIRECTION_SAMPLES]
    lines = [json.dumps({"b64": base64.b64encode(p).decode()}) for p in pngs]
    lines.insert(1, json.dumps({"b64": base64.b64encode(NOT_AN_IMAGE).decode()}))
    key = "incoming/text-direction/lines.jsonl"
    s3.put_object(Bucket=bucket, Key=key, Body=("\n".join(lines) + "\n").encode())
    manifest = wait_for_manifest(s3, bucket, "lines.jsonl")
    assert manifest["state"] == "Completed", manifest
    assert manifest["input"]["lines"] == manifest["output"]["lines"] == len(lines)
    assert manifest["output"]["error_lines"] == 1
    prefix = manifest["output"]["prefix"].split(bucket + "/", 1)[1]
    (output,) = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
        if o["Key"].endswith(".out")
    ]
    answers = [
        json.loads(line) for line in s3.get_object(Bucket=bucket, Key=output)["Body"].read().splitlines()
    ]
    assert len(answers) == len(lines)
    assert answers[1]["error"]["code"] == "invalid_input"
    for got, png in zip([answers[0], *answers[2:]], pngs, strict=True):
        same_answer(got, expected(services["text-direction"], png, "image/png"))
