"""The Lambda image, staged from its recipe (what its Dockerfile renders) and run under the real Lambda Runtime Interface Emulator.

The image is built from the same per-model build context ``cdk synth`` writes (``write_image_context``),
so what runs here is what a deploy builds. One staged image and one emulator for the module: the
function is invoked over HTTP with real API Gateway events, as Lambda would invoke it.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mdk.bundle import IMAGE_MODEL_DIR, write_bundle, write_image_context
from mdk.config import KitConfig
from mdk.images import LAMBDA, StagedImage, stage
from mdk.local.rie import LambdaProcess
from tests.events import api_event, response_json

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def context(kit_config: KitConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_context(kit_config.model("iris"), tmp_path_factory.mktemp("context") / "iris")


@pytest.fixture(scope="module")
def staged(context: Path, tmp_path_factory: pytest.TempPathFactory) -> StagedImage:
    root = tmp_path_factory.mktemp("lambda-image") / "root"
    return stage(
        LAMBDA,
        context,
        root,
        {"MODEL_DIR": IMAGE_MODEL_DIR},
        cache_dir=REPO / ".cache" / "layers",
    )


@pytest.fixture(scope="module")
def function(staged: StagedImage, rie_binary: Path) -> Iterator[LambdaProcess]:
    with LambdaProcess(
        staged, rie_binary, function_name="mdk-dev-iris", memory_mb=1024, timeout_s=10
    ) as proc:
        yield proc


def test_the_image_holds_the_runtime_the_handler_and_the_model_only(
    staged: StagedImage, context: Path
) -> None:
    task = staged.task_root
    assert staged.cmd == ["lambda_handlers.inference.handler"]
    assert (task / "model" / "model.onnx").read_bytes() == (REPO / "models/iris/v1/model.onnx").read_bytes()
    assert not (task / "lambda_handlers" / "rollout_hooks.py").exists()
    assert json.loads((task / "model" / "mdk-model.json").read_text())["name"] == "iris"
    assert (task / "mdk_runtime" / "service.py").is_file()
    assert (task / "lambda_handlers" / "inference.py").is_file()
    # compiled in the image: a read-only /var/task would otherwise recompile them at every cold start
    assert list((task / "mdk_runtime" / "__pycache__").glob("service.*.pyc"))
    assert list((task / "lambda_handlers" / "__pycache__").glob("inference.*.pyc"))
    for wanted in ("numpy", "onnxruntime", "orjson", "aws_lambda_powertools", "fastapi", "mangum"):
        assert (task / wanted).is_dir(), wanted
    for unwanted in ("boto3", "botocore", "sagemaker", "onnx", "sklearn", "pytest", "moto", "mdk", "tests"):
        assert not (task / unwanted).exists(), f"{unwanted} must not be in the image"
    assert staged.env["MDK_MODEL_DIR"] == str(task / "model")


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_predict_over_the_emulator(function: LambdaProcess, version: Any) -> None:
    body = json.dumps({"instances": [[6.3, 3.4, 5.6, 2.4], [5.0, 3.4, 1.5, 0.2]]})
    response = function.invoke(api_event(version, body=body))
    assert response["statusCode"] == 200, response
    assert [p["label"] for p in response_json(response)["predictions"]] == ["virginica", "setosa"]


def test_health_metadata_and_errors_over_the_emulator(function: LambdaProcess) -> None:
    health = function.invoke(api_event("v1", "GET", "/models/iris/health"))
    assert response_json(health)["warmup"] == "example"
    meta = response_json(function.invoke(api_event("v2", "GET", "/models/iris/metadata")))
    assert meta["name"] == "iris"
    assert meta["runtime"]["threads"] == 1  # 1024 MB buys less than one vCPU
    for event, status in (
        (api_event("v1", body="{oops"), 400),
        (api_event("v1", body='{"instances": [[1, 2]]}'), 422),
        (api_event("v1", body="x=1", headers={"content-type": "application/x-www-form-urlencoded"}), 415),
        (api_event("v2", "GET", "/models/iris/predict"), 405),
        (api_event("v1", "GET", "/models/other/health"), 404),
    ):
        response = function.invoke(event)
        assert response["statusCode"] == status, response
        assert response_json(response)["error"]["message"]


def test_npy_in_and_out_over_the_emulator(function: LambdaProcess) -> None:
    buf = io.BytesIO()
    np.save(buf, np.array([[6.3, 3.4, 5.6, 2.4]], dtype=np.float32))
    event = api_event(
        "v1", body=buf.getvalue(), headers={"content-type": "application/x-npy"}, base64_body=True
    )
    response = function.invoke(event)
    assert response_json(response)["outputs"]["label"] == [2]
    # iris answers two tensors (label, probabilities): asking for one .npy tensor is refused cleanly
    event["headers"]["accept"] = "application/x-npy"
    assert function.invoke(event)["statusCode"] == 406
    assert base64  # the event helper base64-encodes binary bodies as API Gateway does


def test_docs_come_from_the_fastapi_app(function: LambdaProcess) -> None:
    response = function.invoke(api_event("v1", "GET", "/openapi.json"))
    assert response["statusCode"] == 200
    assert "/models/iris/predict" in response_json(response)["paths"]


def test_init_logs_and_metrics(function: LambdaProcess) -> None:
    marker = "payload-marker-5d2e"
    function.invoke(api_event("v1", body=json.dumps({"instances": [[1, 2, marker, 4]]})))
    assert function.init_duration_ms() > 0
    assert function.first_response_s is not None
    log = function.log_text()
    assert marker not in log
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    loaded = next(entry for entry in lines if entry.get("message") == "model loaded")
    assert loaded["model"] == "iris"
    assert loaded["warmup"] == "example"
    assert loaded["threads"] == 1
    metrics = [entry for entry in lines if "_aws" in entry]
    assert any("Latency" in entry and entry["Model"] == "iris" for entry in metrics)
    assert any(entry.get("ErrorCode") == "invalid_input" for entry in metrics)
    assert any("ColdStart" in entry for entry in metrics)


def test_a_broken_model_image_answers_503(kit_config: KitConfig, tmp_path: Path, rie_binary: Path) -> None:
    # The repository root is a build context too (`docker build -f lambda_handlers/Dockerfile .`).
    broken = Path("build") / "bundles" / "e2e-broken"
    target = write_bundle(kit_config.model("iris"), REPO / broken)
    (target / "model.onnx").write_bytes(b"corrupt")
    try:
        image = stage(
            LAMBDA,
            REPO,
            tmp_path / "root",
            {"MODEL_DIR": str(broken)},
            cache_dir=REPO / ".cache" / "layers",
        )
        with LambdaProcess(image, rie_binary, function_name="mdk-dev-broken", memory_mb=1024) as proc:
            health = proc.invoke(api_event("v1", "GET", "/models/iris/health"))
            assert health["statusCode"] == 503
            assert "cannot load model.onnx" in response_json(health)["error"]["message"]
            predict = proc.invoke(api_event("v1", body='{"instances": [[1, 2, 3, 4]]}'))
            assert predict["statusCode"] == 503
    finally:
        shutil.rmtree(REPO / broken, ignore_errors=True)
