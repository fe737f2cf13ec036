"""The SageMaker serving container over real HTTP on loopback: contract, formats, errors, dynamic batching."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from lambda_handlers.rollout_hooks import check_predictions
from mdk_runtime.service import InferenceService, Settings
from tests import onnx_models
from tests.conftest import BundleFactory
from tests.sagemaker.conftest import ServeFactory, free_port, ping_until

JSONL = "application/jsonlines"
IRIS_ROWS = [[6.3, 3.4, 5.6, 2.4], [5.0, 3.4, 1.5, 0.2], [5.9, 3.0, 4.2, 1.5]]


def post(url: str, body: bytes | str, content_type: str, accept: str | None = None) -> httpx.Response:
    headers = {"content-type": content_type}
    if accept:
        headers["accept"] = accept
    return httpx.post(f"{url}/invocations", content=body, headers=headers, timeout=30)


def labels(iris_service: InferenceService, rows: list[list[float]]) -> list[str]:
    reply = iris_service.predict(json.dumps({"instances": rows}).encode(), "application/json", None)
    return [p["label"] for p in json.loads(reply.body)["predictions"]]


# ------------------------------------------------------------------------------------------------
# Contract
# ------------------------------------------------------------------------------------------------


def test_ping_waits_for_the_model_then_answers(serving: ServeFactory, iris_bundle: Path) -> None:
    with serving(iris_bundle, preload=False) as running:
        deadline = time.monotonic() + 30
        statuses = []
        while time.monotonic() < deadline:
            response = httpx.get(f"{running.url}/ping", timeout=2)
            statuses.append(response.status_code)
            if response.status_code == 200:
                break
            time.sleep(0.01)
        assert statuses[-1] == 200
        assert set(statuses) <= {200, 503}
        assert response.json()["warmup"] == "example"


def test_ping_of_a_broken_model_says_why(serving: ServeFactory, bundle: BundleFactory) -> None:
    directory = bundle(onnx_models.two_inputs())
    (directory / "model.onnx").write_bytes(b"corrupt")
    with serving(directory, preload=False) as running:
        response = ping_until(running.url, "cannot load")
        assert response.status_code == 503
        assert "onnxruntime cannot load model.onnx" in response.json()["error"]["message"]
        assert post(running.url, '{"instances": [[1, 2, 3]]}', "application/json").status_code == 503


def test_json_answers_exactly_as_the_lambda_function(
    serving: ServeFactory, iris_bundle: Path, iris_service: InferenceService
) -> None:
    body = json.dumps({"instances": IRIS_ROWS}).encode()
    with serving(iris_bundle) as running:
        response = post(running.url, body, "application/json")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.content == iris_service.predict(body, "application/json", None).body
        bad = post(running.url, '{"instances": [[1, "x", 3, 4]]}', "application/json")
        assert bad.status_code == 422
        assert (
            bad.content
            == iris_service.predict(b'{"instances": [[1, "x", 3, 4]]}', "application/json", None).body
        )
        params = httpx.get(f"{running.url}/execution-parameters").json()
        assert params == {"MaxConcurrentTransforms": 1, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 6}
        assert httpx.get(f"{running.url}/metadata").json()["name"] == "iris"


def test_json_lines_keep_one_answer_per_line_with_errors_in_place(
    serving: ServeFactory, iris_bundle: Path, iris_service: InferenceService
) -> None:
    lines = [
        json.dumps(IRIS_ROWS[0]),
        "{not json",
        json.dumps([1.0, 2.0]),
        json.dumps(IRIS_ROWS[1]),
        "",
        json.dumps(["a", "b", "c", "d"]),
        json.dumps({"features": IRIS_ROWS[2]}),
        json.dumps([1.0, None, 3.0, 4.0]),
    ]
    body = ("\n".join(lines) + "\n").encode()
    with serving(iris_bundle) as running:
        response = post(running.url, body, JSONL)
    assert response.status_code == 200
    assert response.headers["content-type"] == JSONL
    answers = [json.loads(line) for line in response.text.splitlines()]
    assert len(answers) == len(lines)
    good = {0: IRIS_ROWS[0], 3: IRIS_ROWS[1], 6: IRIS_ROWS[2]}
    expected = labels(iris_service, list(good.values()))
    assert [answers[i]["label"] for i in good] == expected
    codes = {i: a["error"]["code"] for i, a in enumerate(answers) if "error" in a}
    assert codes == {
        1: "malformed_request",
        2: "invalid_input",
        4: "malformed_request",
        5: "invalid_input",
        7: "invalid_input",
    }
    assert answers[1]["error"]["message"].startswith("line 2: not valid JSON")
    assert "expected each instance of shape [4]" in answers[2]["error"]["message"]


def test_csv_in_and_out(serving: ServeFactory, iris_bundle: Path, iris_service: InferenceService) -> None:
    body = "6.3,3.4,5.6,2.4\n5.0,3.4,1.5,0.2\n1,2,x,4\n5.9,3.0,4.2,1.5\n1,2,3\n"
    with serving(iris_bundle) as running:
        response = post(running.url, body, "text/csv")
        as_jsonl = post(running.url, body, "text/csv", accept=JSONL)
        as_json = post(running.url, body, "text/csv", accept="application/json")
    assert response.headers["content-type"].startswith("text/csv")
    rows = response.text.splitlines()
    assert len(rows) == 5
    expected = labels(iris_service, [IRIS_ROWS[0], IRIS_ROWS[1], IRIS_ROWS[2]])
    assert [rows[i].split(",")[0] for i in (0, 1, 3)] == expected
    assert all(len(rows[i].split(",")) == 4 for i in (0, 1, 3))  # label and three probabilities
    assert rows[2].startswith("error,invalid_input,line 3: a field is not a number")
    assert rows[4].startswith("error,invalid_input,")
    assert len(as_jsonl.text.splitlines()) == 5
    assert len(as_json.json()["predictions"]) == 5


def test_npy_and_accept_negotiation(serving: ServeFactory, bundle: BundleFactory) -> None:
    directory = bundle(onnx_models.images(), name="images")
    images = np.random.default_rng(0).uniform(size=(3, 3, 224, 224)).astype(np.float32)
    buf = io.BytesIO()
    np.save(buf, images)
    with serving(directory) as running:
        as_npy = post(running.url, buf.getvalue(), "application/x-npy", accept="application/x-npy")
        as_json = post(running.url, buf.getvalue(), "application/x-npy")
        refused = post(running.url, buf.getvalue(), "application/x-npy", accept="image/png")
        csv_refused = post(running.url, "1,2,3\n", "text/csv")
    assert as_npy.headers["content-type"] == "application/x-npy"
    np.testing.assert_allclose(np.load(io.BytesIO(as_npy.content)), images.mean(axis=(2, 3)), rtol=1e-5)
    assert as_json.json()["outputs"]["means"]
    assert refused.status_code == 406
    assert csv_refused.status_code == 415  # 4-D images are not rows of numbers
    assert "text/csv carries rows of numbers" in csv_refused.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{oops", "application/json", 400, "malformed_request"),
        (b"hello", "text/plain", 415, "unsupported_media_type"),
        (b'{"instances": []}', "application/json", 422, "invalid_input"),
        (b"\xff\xfe", JSONL, 200, None),  # one bad record: answered on its line
        (b"x" * 2_000, "application/json", 413, "payload_too_large"),
    ],
)
def test_bad_requests(
    serving: ServeFactory, iris_bundle: Path, body: bytes, content_type: str, status: int, code: str | None
) -> None:
    with serving(iris_bundle, max_body_bytes=1_000) as running:
        response = post(running.url, body, content_type)
    assert response.status_code == status
    if code is not None:
        assert response.json()["error"]["code"] == code
    else:
        assert response.json()["error"]["code"] == "malformed_request"


# ------------------------------------------------------------------------------------------------
# Dynamic batching
# ------------------------------------------------------------------------------------------------


async def _concurrent(
    url: str, bodies: list[bytes], content_type: str = "application/json"
) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        return list(
            await asyncio.gather(
                *(
                    client.post(f"{url}/invocations", content=b, headers={"content-type": content_type})
                    for b in bodies
                )
            )
        )


def test_concurrent_requests_are_coalesced_and_each_caller_gets_its_own_rows(
    serving: ServeFactory, bundle: BundleFactory
) -> None:
    directory = bundle(onnx_models.two_inputs(), name="pair")
    rng = np.random.default_rng(1)
    a = rng.normal(size=(32, 3)).round(3)
    b = rng.normal(size=(32, 3)).round(3)
    bodies = [
        json.dumps({"instances": [{"a": a[i].tolist(), "b": b[i].tolist()}]}).encode() for i in range(32)
    ]
    with serving(directory, max_batch_size=64, max_batch_delay_ms=50) as running:
        responses = asyncio.run(_concurrent(running.url, bodies))
        stats = running.server.batcher.stats
    for i, response in enumerate(responses):
        assert response.status_code == 200
        prediction = response.json()["predictions"][0]
        np.testing.assert_allclose(prediction["sum"], a[i] + b[i], rtol=1e-5)
        np.testing.assert_allclose(prediction["diff"], a[i] - b[i], rtol=1e-5)
    assert stats.requests == 32
    assert stats.batches < 32  # coalesced
    assert stats.mean_rows > 1


def test_fixed_batch_of_one_is_coalesced_and_split_back(serving: ServeFactory, bundle: BundleFactory) -> None:
    directory = bundle(onnx_models.fixed_batch_image(), name="fixed")
    images = np.random.default_rng(2).normal(size=(16, 3, 8, 8)).round(3)
    bodies = [json.dumps({"instances": [images[i].tolist()]}).encode() for i in range(16)]
    with serving(directory, max_batch_size=8, max_batch_delay_ms=50) as running:
        responses = asyncio.run(_concurrent(running.url, bodies))
        stats = running.server.batcher.stats
    for i, response in enumerate(responses):
        np.testing.assert_allclose(response.json()["predictions"][0], images[i].mean(axis=(1, 2)), rtol=1e-4)
    assert stats.batches < 16
    assert stats.rows == 16


def test_requests_of_different_shapes_never_share_a_batch(
    serving: ServeFactory, bundle: BundleFactory
) -> None:
    directory = bundle(onnx_models.tokens(), name="tokens")
    bodies = [
        json.dumps(
            {"instances": [{"input_ids": list(range(1, 2 + i % 3)), "attention_mask": [1] * (1 + i % 3)}]}
        ).encode()
        for i in range(12)
    ]
    with serving(directory, max_batch_size=64, max_batch_delay_ms=50) as running:
        responses = asyncio.run(_concurrent(running.url, bodies))
    for i, response in enumerate(responses):
        assert response.json()["predictions"][0] == list(range(1, 2 + i % 3))


def test_outputs_that_are_not_per_row_turn_batching_off(serving: ServeFactory, bundle: BundleFactory) -> None:
    directory = bundle(onnx_models.pooled_scalar(), name="pooled")
    rows = [[float(i), float(i + 1)] for i in range(8)]
    bodies = [json.dumps({"instances": [row]}).encode() for row in rows]
    with serving(directory, max_batch_size=64, max_batch_delay_ms=50) as running:
        responses = asyncio.run(_concurrent(running.url, bodies))
    for row, response in zip(rows, responses, strict=True):
        assert response.json() == {"predictions": [{"y": row}], "outputs": {"total": sum(row)}}


def test_a_large_jsonl_body_is_scored_in_full(
    serving: ServeFactory, iris_bundle: Path, iris_service: InferenceService
) -> None:
    rng = np.random.default_rng(3)
    rows = rng.uniform(0, 8, size=(20_000, 4)).round(2).tolist()
    body = "\n".join(json.dumps(r) for r in rows).encode()
    with serving(iris_bundle, max_body_bytes=50_000_000) as running:
        response = post(running.url, body, JSONL)
    answers = response.text.splitlines()
    assert len(answers) == 20_000
    sample = [0, 1, 9_999, 19_999]
    assert [json.loads(answers[i])["label"] for i in sample] == labels(
        iris_service, [rows[i] for i in sample]
    )
    metadata = json.loads(iris_service.metadata().body)
    assert check_predictions({"predictions": [json.loads(a) for a in answers[:100]]}, metadata, 100) == []


# ------------------------------------------------------------------------------------------------
# The container process
# ------------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_serve_process_drains_in_flight_requests_on_sigterm(iris_bundle: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "MDK_MODEL_DIR": str(iris_bundle),
        "MDK_HOST": "127.0.0.1",
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "MDK_PROVIDERS": "CPUExecutionProvider",
        "MDK_ORT_THREADS": "1",
        # A batch transform's mini-batch: its answer (150,000 lines) is over InvokeEndpoint's 6 MB.
        "SAGEMAKER_BATCH": "true",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "sagemaker_endpoints.serve", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/ping", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        else:
            pytest.fail("the container never answered /ping with 200")
        rows = np.random.default_rng(4).uniform(0, 8, size=(150_000, 4)).round(2).tolist()
        body = "\n".join(json.dumps(r) for r in rows).encode()
        result: dict[str, Any] = {}

        def slow_request() -> None:
            result["response"] = httpx.post(
                f"{url}/invocations", content=body, headers={"content-type": JSONL}, timeout=120
            )

        worker = threading.Thread(target=slow_request)
        worker.start()
        time.sleep(0.3)  # the request is in flight (or done: the assertions hold either way)
        proc.send_signal(signal.SIGTERM)
        worker.join(timeout=120)
        assert result["response"].status_code == 200
        assert len(result["response"].text.splitlines()) == 150_000
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        output = proc.communicate(timeout=10)[0]
    assert "Traceback" not in output
    assert '"message":"serving"' in output.replace(" ", "")


def test_settings_from_the_environment() -> None:
    from mdk_runtime.errors import ModelLoadError
    from sagemaker_endpoints.server import ServerSettings

    settings = ServerSettings.from_env({"MDK_MAX_BATCH_SIZE": "16", "MDK_PROVIDERS": "CPUExecutionProvider"})
    assert settings.max_batch_size == 16
    assert settings.providers == ("CPUExecutionProvider",)
    assert settings.model.model_dir == Path("/opt/ml/model")
    assert settings.model.max_body_bytes > 100 * 1024 * 1024
    assert settings.port == 8080
    with pytest.raises(ModelLoadError, match="MDK_MAX_BATCH_DELAY_MS: expected an integer from 0 to 10000"):
        ServerSettings.from_env({"MDK_MAX_BATCH_DELAY_MS": "soon"})


def test_cuda_is_asked_for_and_falls_back_to_cpu_with_a_log(
    bundle: BundleFactory, caplog: pytest.LogCaptureFixture
) -> None:
    import onnxruntime as ort

    directory = bundle(onnx_models.two_inputs())
    service = InferenceService.load(
        Settings(model_dir=directory, threads=1), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    assert service.report is not None
    if "CUDAExecutionProvider" in ort.get_available_providers():  # a GPU build of onnxruntime
        assert service.report.providers[0] == "CUDAExecutionProvider"
    else:
        assert service.report.providers == ("CPUExecutionProvider",)
        assert (
            "execution providers not available in this onnxruntime build, falling back: CUDAExecutionProvider"
            in caplog.text
        )


@pytest.mark.parametrize(
    ("body", "content_type", "accept"),
    [
        (json.dumps({"instances": IRIS_ROWS}), "application/json", None),
        ("\n".join(json.dumps(r) for r in IRIS_ROWS) + "\n{bad\n", JSONL, None),
        ("6.3,3.4,5.6,2.4\n1,x,3,4\n", "text/csv", "application/json"),
        ('{"instances": [[1, 2]]}', "application/json", None),
        ("{}", "text/plain", None),
        (json.dumps({"instances": IRIS_ROWS}), "application/json", "image/png"),
    ],
)
def test_the_direct_route_answers_as_the_fastapi_route(
    iris_bundle: Path, body: str, content_type: str, accept: str | None
) -> None:
    from sagemaker_endpoints.server import create_app
    from tests.sagemaker.conftest import settings_for

    settings = settings_for(iris_bundle)
    service = InferenceService.load(settings.model, providers=["CPUExecutionProvider"])
    app = create_app(settings, service=service)
    headers = {"content-type": content_type, **({"accept": accept} if accept else {})}

    async def both() -> tuple[httpx.Response, httpx.Response]:
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://direct") as direct,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app.app), base_url="http://fastapi"
            ) as routed,
        ):
            return (
                await direct.post("/invocations", content=body, headers=headers),
                await routed.post("/invocations", content=body, headers=headers),
            )

    direct, routed = asyncio.run(both())
    assert direct.status_code == routed.status_code
    assert direct.content == routed.content
    assert direct.headers["content-type"] == routed.headers["content-type"]


def test_values_the_model_refuses_fail_only_their_own_request_in_a_coalesced_batch(
    serving: ServeFactory, bundle: BundleFactory
) -> None:
    """An index out of range in one request of a dynamic batch: that caller gets 422
    input_rejected_by_model (the value not echoed), every other caller its rows."""
    from tests.value_models import gather_client_indices

    directory = bundle(gather_client_indices(), name="lookup")
    indices = [[i % 5] for i in range(15)] + [[987654]]
    bodies = [json.dumps({"instances": idx}).encode() for idx in indices]
    with serving(directory, max_batch_size=64, max_batch_delay_ms=50) as running:
        responses = asyncio.run(_concurrent(running.url, bodies))
    for idx, response in zip(indices, responses, strict=True):
        if idx == [987654]:
            assert response.status_code == 422
            assert response.json()["error"]["code"] == "input_rejected_by_model"
            assert "987654" not in response.text
        else:
            assert response.status_code == 200, response.text
            assert response.json()["predictions"] == [[2.0 * idx[0], 2.0 * idx[0] + 1]]


def test_invocations_read_the_sagemaker_sdks_bare_json_array_as_instances(
    serving: ServeFactory, iris_bundle: Path, iris_service: InferenceService
) -> None:
    """``predictor.predict(X)`` with the SDK's default JSONSerializer posts ``[[...], ...]``; as JSON Lines
    a bare list on a line is that one record's row, so both answer the same labels."""
    with serving(iris_bundle) as running:
        bare = post(running.url, json.dumps(IRIS_ROWS), "application/json")
        assert bare.status_code == 200, bare.text
        assert [p["label"] for p in bare.json()["predictions"]] == labels(iris_service, IRIS_ROWS)
        lines = "".join(json.dumps(row) + "\n" for row in IRIS_ROWS)
        jsonl = post(running.url, lines, JSONL, accept=JSONL)
        assert jsonl.status_code == 200, jsonl.text
        assert [json.loads(line)["label"] for line in jsonl.text.splitlines()] == labels(
            iris_service, IRIS_ROWS
        )


def test_an_answer_over_invoke_endpoints_limit_is_a_413_with_a_hint(
    serving: ServeFactory, bundle: BundleFactory
) -> None:
    """34 bytes ask for 2,000,000 floats (~8 MB): InvokeEndpoint could not return it, the container says
    so with a 413; in batch transform (no limit) the same request is answered."""
    from sagemaker_endpoints.server import INVOKE_ENDPOINT_RESPONSE_LIMIT
    from tests.value_models import expand_to_client_shape

    directory = bundle(expand_to_client_shape(), name="expander", batched=False)
    body = json.dumps({"inputs": {"shape": [2000, 1000]}})
    with serving(directory, max_response_bytes=INVOKE_ENDPOINT_RESPONSE_LIMIT) as running:
        for accept in ("application/json", "application/x-npy"):
            response = post(running.url, body, "application/json", accept=accept)
            assert response.status_code == 413
            error = response.json()["error"]
            assert error["code"] == "response_too_large"
            assert "6,291,456-byte limit of an InvokeEndpoint response" in error["message"]
            assert "fewer instances" in error["message"]
            assert "batch transform" in error["message"]
        small = post(running.url, json.dumps({"inputs": {"shape": [500, 1000]}}), "application/json")
        assert small.status_code == 200
    with serving(directory, max_response_bytes=None) as running:
        response = post(running.url, body, "application/json", accept="application/x-npy")
        assert response.status_code == 200
        assert np.load(io.BytesIO(response.content)).shape == (2000, 1000)


def test_the_response_limit_is_invoke_endpoints_except_in_batch_transform() -> None:
    from mdk_runtime.errors import ModelLoadError
    from sagemaker_endpoints.server import INVOKE_ENDPOINT_RESPONSE_LIMIT, ServerSettings

    def limit(**env: str) -> int | None:
        return ServerSettings.from_env({"MDK_DEVICE": "cpu", **env}).max_response_bytes

    assert INVOKE_ENDPOINT_RESPONSE_LIMIT == 6_291_456
    assert limit() == INVOKE_ENDPOINT_RESPONSE_LIMIT
    assert limit(SAGEMAKER_BATCH="true") is None  # SageMaker sets it in a transform job's container
    assert limit(MDK_MAX_RESPONSE_BYTES="1000") == 1000
    assert limit(MDK_MAX_RESPONSE_BYTES="0") is None
    with pytest.raises(ModelLoadError, match="MDK_MAX_RESPONSE_BYTES"):
        limit(MDK_MAX_RESPONSE_BYTES="6MB")


def test_a_record_the_model_refuses_gets_an_error_on_its_line_and_the_others_their_answers(
    serving: ServeFactory, bundle: BundleFactory
) -> None:
    """Batch transform's JSON Lines: an index out of range on line 2 answers an error record there (not
    the value), lines 1 and 3 their rows: one bad record does not fail the mini-batch."""
    from tests.value_models import gather_client_indices

    directory = bundle(gather_client_indices(), name="lookup")
    with serving(directory) as running:
        response = post(running.url, "1\n987654\n4\n", JSONL, accept=JSONL)
    assert response.status_code == 200, response.text
    answers = [json.loads(line) for line in response.text.splitlines()]
    assert answers[0] == [2.0, 3.0]
    assert answers[2] == [8.0, 9.0]
    assert answers[1]["error"]["code"] == "input_rejected_by_model"
    assert answers[1]["error"]["message"].startswith("line 2: the model refused the values of input 'idx'")
    assert "987654" not in response.text
