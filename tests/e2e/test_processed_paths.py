"""The real pretrained examples of ``models/pretrained.yaml``, deployed from that file alone and called with real
inputs on every serving path: the Lambda image under the real Runtime Interface Emulator (API Gateway REST
events built from the synthesized stack), the SageMaker container over HTTP (real-time and batch transform's
JSON Lines), ``mdk batch run`` and ``mdk serve``.

Every readable answer is compared with what the in-process ``InferenceService`` answers for the same bytes,
which ``tests/models/test_pretrained.py`` ties to each source package's own pipeline (RapidOCR, Magika): so
each path is shown to answer as RapidOCR or Magika would, with nothing written by hand but the facts of the
samples (a line turned upside down is "180", a PDF is "pdf").
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from mdk.bundle import IMAGE_MODEL_DIR, write_image_context, write_model_tarball
from mdk.config import KitConfig
from mdk.images import LAMBDA, StagedImage, stage
from mdk.local.processes import spawn
from mdk.local.rie import SANDBOX_GID, LambdaProcess, grant_search
from mdk_runtime.service import InferenceService
from sagemaker_endpoints.server import CPU
from tests.events import response_json
from tests.infra.conftest import synth_config
from tests.pretrained_models import expected, pretrained_config, reference_services, same_answer
from tests.sagemaker.conftest import free_port, serve, settings_for
from tests.template_events import binary_media_types, rest_event

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
CONFIG = MODELS / "pretrained.yaml"
LAMBDA_MODELS = ("text-direction", "file-type")
JSONL = "application/jsonlines"

pytestmark = pytest.mark.e2e

UPSIDE_DOWN = MODELS / "text-direction/samples/upside-down.png"
TEXT_DIRECTION_SAMPLES = [
    MODELS / "text-direction/example.png",
    UPSIDE_DOWN,
    MODELS / "text-direction/samples/digits-upside-down.png",
    MODELS / "text-direction/samples/upright-small.png",
]
OCR_SAMPLES = sorted((MODELS / "ocr-line/samples").glob("*.png"))
PDF = MODELS / "file-type/samples/page.pdf"


#: Bytes a client sends as image/png that are no image at all.
NOT_AN_IMAGE = b"%PDF-1.4 this is not a PNG at all"


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def config() -> KitConfig:
    return pretrained_config()


@pytest.fixture(scope="module")
def services(config: KitConfig, tmp_path_factory: pytest.TempPathFactory) -> dict[str, InferenceService]:
    """The in-process reference: each model loaded from its bundle as every serving path loads it."""
    return reference_services(config, tmp_path_factory.mktemp("reference"))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -------------------------------------------------------------------- the Lambda image under the RIE


@pytest.fixture(scope="module")
def template(config: KitConfig, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The serving stack `cdk synth` builds for models/pretrained.yaml: its REST API makes the events."""
    out = tmp_path_factory.mktemp("synth-pretrained")
    return synth_config(config, out / "out", with_nag=False).merged_json


@pytest.fixture(scope="module")
def staged(config: KitConfig, tmp_path_factory: pytest.TempPathFactory) -> dict[str, StagedImage]:
    """Each Lambda model's image, staged from the per-model build context `cdk synth` writes."""
    images = {}
    for name in LAMBDA_MODELS:
        context = write_image_context(config.model(name), tmp_path_factory.mktemp("context") / name)
        images[name] = stage(
            LAMBDA,
            context,
            tmp_path_factory.mktemp("lambda-image") / "root",
            {"MODEL_DIR": IMAGE_MODEL_DIR},
            cache_dir=REPO / ".cache" / "layers",
        )
    return images


def tree(root: Path) -> dict[str, tuple[int, int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mode, p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
    }


@pytest.fixture(scope="module")
def functions(
    config: KitConfig, staged: dict[str, StagedImage], rie_binary: Path
) -> Iterator[dict[str, LambdaProcess]]:
    before = {name: tree(image.task_root) for name, image in staged.items()}
    with ExitStack() as stack:
        running = {}
        for name, image in staged.items():
            settings = config.model(name).lambda_
            running[name] = stack.enter_context(
                LambdaProcess(
                    image,
                    rie_binary,
                    function_name=f"mdk-dev-{name}",
                    memory_mb=settings.memory_mb,
                    timeout_s=settings.timeout_s,
                )
            )
        yield running
    for name, image in staged.items():  # /var/task is read-only in Lambda: the function wrote nothing there
        assert tree(image.task_root) == before[name], name


def lambda_answer(function: LambdaProcess, event: dict[str, Any]) -> list[dict[str, Any]]:
    response = function.invoke(event)
    assert response["statusCode"] == 200, response
    predictions: list[dict[str, Any]] = response_json(response)["predictions"]
    return predictions


def test_the_text_direction_image_carries_pillow_for_the_sandbox_user(
    staged: dict[str, StagedImage], rie_binary: Path
) -> None:
    image = staged["text-direction"]
    task = image.task_root
    assert "pillow==" in (task / "model" / "requirements.txt").read_text()
    assert (task / "model" / "processing" / "example.png").is_file()
    assert not (staged["file-type"].task_root / "PIL").exists()  # into this model's image only
    # Lambda runs the function as a user who owns nothing in /var/task: everything readable, nothing
    # writable ("Create a Lambda function using a container image",
    # https://docs.aws.amazon.com/lambda/latest/dg/images-create.html).
    for path in [task, *task.rglob("*")]:
        mode = path.stat().st_mode
        assert mode & 0o022 == 0, f"{path} is writable by the function's user"
        assert mode & (0o005 if path.is_dir() else 0o004), f"{path} is not readable by the function's user"
    # compiled at build time: a read-only /var/task would otherwise recompile Pillow at every cold start
    assert list((task / "PIL" / "__pycache__").glob("Image.*.pyc"))
    # the import as the function does it: as the sandbox user, with nothing but the image on sys.path
    probe = LambdaProcess(image, rie_binary)
    env = probe.environment()
    for path in (Path(probe.python), image.root):  # what LambdaProcess.start does for the function
        grant_search(path)
    script = "import PIL, PIL.Image, PIL._imaging; print(PIL.__file__); print(PIL.__version__)"
    proc = spawn(
        [probe.python, "-S", "-c", script],
        env=env,
        cwd=image.workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        user=probe.user,
        group=None if probe.user is None else SANDBOX_GID,
    )
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out.decode()
    where, version = out.decode().split()
    assert Path(where).is_relative_to(task)
    assert f"pillow=={version}" in (task / "model" / "requirements.txt").read_text()


def test_a_handlers_module_is_compiled_in_the_image(staged: dict[str, StagedImage]) -> None:
    # As mdk_runtime and lambda_handlers are (the Dockerfile's compileall step): the handler is imported
    # from the read-only /var/task/model/processing at every cold start.
    processing = staged["file-type"].task_root / "model" / "processing"
    assert (processing / "handler.py").is_file()
    assert list((processing / "__pycache__").glob("handler.*.pyc")), "handler.py is not compiled in the image"


def test_the_stack_sends_a_raw_png_to_the_function_base64_encoded(template: dict[str, Any]) -> None:
    assert "image/png" in binary_media_types(template)
    assert "application/octet-stream" in binary_media_types(template)
    event = rest_event(
        template,
        "POST",
        "/models/text-direction/predict",
        UPSIDE_DOWN.read_bytes(),
        {"content-type": "image/png"},
    )
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == UPSIDE_DOWN.read_bytes()
    assert event["resource"] == "/models/text-direction/predict"


@pytest.mark.parametrize("sample", TEXT_DIRECTION_SAMPLES, ids=lambda p: p.name)
def test_text_direction_answers_a_raw_png_over_the_emulator(
    functions: dict[str, LambdaProcess],
    template: dict[str, Any],
    services: dict[str, InferenceService],
    sample: Path,
) -> None:
    png = sample.read_bytes()
    event = rest_event(template, "POST", "/models/text-direction/predict", png, {"content-type": "image/png"})
    (got,) = lambda_answer(functions["text-direction"], event)
    same_answer(got, expected(services["text-direction"], png, "image/png"))
    if sample == UPSIDE_DOWN:
        assert got["label"] == "180"


def test_text_direction_answers_base64_in_json_over_the_emulator(
    functions: dict[str, LambdaProcess], template: dict[str, Any], services: dict[str, InferenceService]
) -> None:
    pngs = [p.read_bytes() for p in TEXT_DIRECTION_SAMPLES]
    body = json.dumps({"instances": [{"b64": b64(p)} for p in pngs]})
    event = rest_event(
        template, "POST", "/models/text-direction/predict", body, {"content-type": "application/json"}
    )
    assert event["isBase64Encoded"] is False
    got = lambda_answer(functions["text-direction"], event)
    assert len(got) == len(pngs)
    for answer, png in zip(got, pngs, strict=True):
        same_answer(answer, expected(services["text-direction"], png, "image/png"))


def test_text_direction_refuses_a_png_that_is_not_an_image_over_the_emulator(
    functions: dict[str, LambdaProcess], template: dict[str, Any]
) -> None:
    event = rest_event(
        template, "POST", "/models/text-direction/predict", NOT_AN_IMAGE, {"content-type": "image/png"}
    )
    response = functions["text-direction"].invoke(event)
    assert response["statusCode"] == 422, response
    error = response_json(response)["error"]
    assert error["code"] == "invalid_input"
    assert error["field"] == "body"
    assert error["message"].startswith("body:")


def test_file_type_answers_a_raw_file_over_the_emulator(
    functions: dict[str, LambdaProcess], template: dict[str, Any], services: dict[str, InferenceService]
) -> None:
    data = PDF.read_bytes()
    event = rest_event(
        template, "POST", "/models/file-type/predict", data, {"content-type": "application/octet-stream"}
    )
    assert event["isBase64Encoded"] is True
    (got,) = lambda_answer(functions["file-type"], event)
    same_answer(got, expected(services["file-type"], data, "application/octet-stream"))
    assert got["label"] == "pdf"
    health = functions["file-type"].invoke(rest_event(template, "GET", "/models/file-type/health"))
    assert response_json(health)["warmup"] == "example"  # its example (the PDF) went through the handler


# ---------------------------------------------------------------------------- the SageMaker container


@pytest.fixture(scope="module")
def ocr_container(config: KitConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """ocr-line's model.tar.gz unpacked as SageMaker unpacks it into /opt/ml/model, served over HTTP."""
    work = tmp_path_factory.mktemp("sagemaker")
    archive = write_model_tarball(config.model("ocr-line"), work / "model.tar.gz")
    model_dir = work / "opt-ml-model"
    with tarfile.open(archive) as tar:
        tar.extractall(model_dir, filter="data")
    assert (model_dir / "processing" / "handler.py").is_file()
    settings = settings_for(model_dir)
    with serve(settings, InferenceService.load(settings.model, providers=[CPU])) as running:
        yield running.url


def invocations(url: str, body: bytes, content_type: str, accept: str | None = None) -> httpx.Response:
    headers = {"content-type": content_type, **({"accept": accept} if accept else {})}
    return httpx.post(f"{url}/invocations", content=body, headers=headers, timeout=60)


def test_the_serving_image_pins_every_package_the_ocr_handler_imports() -> None:
    # One serving image serves every SageMaker model: what the handler imports must be in its pins.
    handler = (MODELS / "ocr-line" / "handler.py").read_text()
    imported = set(re.findall(r"^(?:from|import) (\w+)", handler, re.MULTILINE))
    third_party = imported - set(sys.stdlib_module_names) - {"__future__", "mdk_runtime"}
    assert third_party == {"numpy", "PIL"}
    distribution = {"numpy": "numpy", "PIL": "pillow"}
    for flavour in ("cpu", "gpu"):
        pins = (REPO / "sagemaker_endpoints" / f"requirements-{flavour}.txt").read_text().lower()
        for module in third_party:
            assert f"\n{distribution[module]}==" in pins, (flavour, module)


@pytest.mark.parametrize("sample", OCR_SAMPLES, ids=lambda p: p.name)
def test_ocr_line_reads_a_raw_png_in_the_container(
    ocr_container: str, services: dict[str, InferenceService], sample: Path
) -> None:
    png = sample.read_bytes()
    response = invocations(ocr_container, png, "image/png")
    assert response.status_code == 200, response.text
    (got,) = response.json()["predictions"]
    same_answer(got, expected(services["ocr-line"], png, "image/png"))
    assert got["text"].strip()


def test_ocr_line_answers_json_lines_one_record_per_line_in_the_container(
    ocr_container: str, services: dict[str, InferenceService]
) -> None:
    pngs = [p.read_bytes() for p in OCR_SAMPLES]
    lines = [json.dumps({"b64": b64(p)}) for p in pngs]
    lines.insert(1, '{"b64": "broken')  # not JSON
    lines.insert(3, json.dumps({"b64": b64(NOT_AN_IMAGE)}))  # JSON, not an image
    response = invocations(ocr_container, ("\n".join(lines) + "\n").encode(), JSONL, accept=JSONL)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == JSONL
    answers = [json.loads(line) for line in response.text.splitlines()]
    assert len(answers) == len(lines)
    assert answers[1]["error"]["code"] == "malformed_request"
    assert answers[1]["error"]["message"].startswith("line 2:")
    assert answers[3]["error"]["code"] == "invalid_input"
    assert answers[3]["error"]["field"] == "line 4"  # the handler's refusal, placed by the kit
    good = [a for i, a in enumerate(answers) if i not in (1, 3)]
    for got, png in zip(good, pngs, strict=True):
        same_answer(got, expected(services["ocr-line"], png, "image/png"))


def test_ocr_line_refuses_a_png_that_is_not_an_image_in_the_container(ocr_container: str) -> None:
    response = invocations(ocr_container, NOT_AN_IMAGE, "image/png")
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "body"
    assert "not a readable image" in response.json()["error"]["message"]


# ------------------------------------------------------------------------------------- mdk batch run


def mdk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mdk", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "COLUMNS": "400"},
    )


def test_mdk_batch_run_scores_images_as_json_lines(
    tmp_path: Path, services: dict[str, InferenceService]
) -> None:
    pngs = [p.read_bytes() for p in TEXT_DIRECTION_SAMPLES]
    lines = [json.dumps({"b64": b64(p)}) for p in pngs]
    lines.insert(2, json.dumps({"b64": b64(NOT_AN_IMAGE)}))
    data = tmp_path / "lines.jsonl"
    data.write_text("\n".join(lines) + "\n")
    result = mdk(
        "batch", "run", str(data), "--model", "text-direction", "--config", str(CONFIG),
        "--results", str(tmp_path / "out"),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Completed: {len(lines)} lines: {len(pngs)} scored, 1 rejected" in result.stdout
    (output,) = (tmp_path / "out" / "text-direction").glob("*/output/lines.jsonl.out")
    answers = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(answers) == len(lines)
    assert answers[2]["error"]["code"] == "invalid_input"
    good = answers[:2] + answers[3:]
    for got, png in zip(good, pngs, strict=True):
        same_answer(got, expected(services["text-direction"], png, "image/png"))
    assert [a["label"] for a in good][1] == "180"
    manifest = json.loads(next(output.parent.parent.glob("_status.json")).read_text())
    assert manifest["state"] == "Completed"
    assert manifest["input"]["lines"] == len(lines)
    assert manifest["output"]["lines"] == len(lines)
    assert manifest["output"]["error_lines"] == 1
    assert manifest["output"]["errors_by_code"] == {"invalid_input": 1}


# ----------------------------------------------------------------------------------------- mdk serve


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, list[str]]]:
    """`mdk serve text-direction --config models/pretrained.yaml`, as a user runs it: its URL and printout."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mdk",
            "serve",
            "text-direction",
            "--config",
            str(CONFIG),
            "--port",
            str(port),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "400"},
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("ready"):
                break
        assert lines, "mdk serve printed nothing"
        assert lines[-1].startswith("ready"), "\n".join(lines)
        yield f"http://127.0.0.1:{port}", lines
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise


def test_mdk_serve_prints_a_curl_that_sends_the_example_image(
    served: tuple[str, list[str]], services: dict[str, InferenceService]
) -> None:
    url, lines = served
    curl = next(line for line in lines if line.startswith("curl -s -X POST"))
    assert "content-type: image/png" in curl
    assert "--data-binary @" in curl
    result = subprocess.run(
        ["bash", "-c", curl], cwd=REPO, capture_output=True, text=True, timeout=30, check=True
    )
    (got,) = json.loads(result.stdout)["predictions"]
    example = (MODELS / "text-direction/example.png").read_bytes()
    same_answer(got, expected(services["text-direction"], example, "image/png"))
    assert f"{url}/models/text-direction/predict" in shlex.split(curl)


def test_mdk_serve_takes_a_raw_png_and_a_multipart_upload(
    served: tuple[str, list[str]], services: dict[str, InferenceService]
) -> None:
    url, _ = served
    png = UPSIDE_DOWN.read_bytes()
    raw = httpx.post(
        f"{url}/models/text-direction/predict", content=png, headers={"content-type": "image/png"}
    )
    assert raw.status_code == 200, raw.text
    (got,) = raw.json()["predictions"]
    same_answer(got, expected(services["text-direction"], png, "image/png"))
    assert got["label"] == "180"
    pngs = [p.read_bytes() for p in TEXT_DIRECTION_SAMPLES]
    files = [("file", (f"line-{i}.png", p, "image/png")) for i, p in enumerate(pngs)]
    upload = httpx.post(f"{url}/models/text-direction/predict", files=files)
    assert upload.status_code == 200, upload.text
    answers = upload.json()["predictions"]
    assert len(answers) == len(pngs)
    for answer, one in zip(answers, pngs, strict=True):
        same_answer(answer, expected(services["text-direction"], one, "image/png"))


def test_mdk_serve_refuses_a_bad_file_in_an_upload_naming_it(served: tuple[str, list[str]]) -> None:
    url, _ = served
    files = [
        ("file", ("good.png", UPSIDE_DOWN.read_bytes(), "image/png")),
        ("file", ("bad.png", NOT_AN_IMAGE, "image/png")),
    ]
    response = httpx.post(f"{url}/models/text-direction/predict", files=files)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "files[1]"
    assert response.json()["error"]["message"].startswith("files[1]:")


def test_mdk_serve_openapi_lists_the_raw_media_types(served: tuple[str, list[str]]) -> None:
    url, _ = served
    doc = httpx.get(f"{url}/openapi.json").json()
    content = doc["paths"]["/models/text-direction/predict"]["post"]["requestBody"]["content"]
    assert {"application/json", "image/png", "image/jpeg", "image/webp", "multipart/form-data"} <= set(
        content
    )
    assert content["image/png"]["schema"] == {"type": "string", "format": "binary"}


def test_the_file_type_app_takes_raw_bytes_and_documents_them(services: dict[str, InferenceService]) -> None:
    from fastapi.testclient import TestClient

    from lambda_handlers.api import create_app

    client = TestClient(create_app(services["file-type"]))
    data = PDF.read_bytes()
    response = client.post(
        "/models/file-type/predict", content=data, headers={"content-type": "application/octet-stream"}
    )
    assert response.status_code == 200, response.text
    (got,) = response.json()["predictions"]
    same_answer(got, expected(services["file-type"], data, "application/octet-stream"))
    assert got["label"] == "pdf"
    samples = sorted(p for p in (MODELS / "file-type/samples").iterdir())
    upload = client.post(
        "/models/file-type/predict", files=[("file", (p.name, p.read_bytes())) for p in samples]
    )
    assert upload.status_code == 200, upload.text
    assert [a["label"] for a in upload.json()["predictions"]] == [
        expected(services["file-type"], p.read_bytes(), "application/octet-stream")["label"] for p in samples
    ]
    content = client.get("/openapi.json").json()["paths"]["/models/file-type/predict"]["post"]["requestBody"]
    assert {"application/json", "application/octet-stream", "multipart/form-data"} <= set(content["content"])
