"""The Lambda handler with real API Gateway REST (v1) and HTTP API (v2) event shapes."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import numpy as np
import pytest
from mangum import Mangum

from lambda_handlers import inference
from lambda_handlers.api import create_app
from mdk_runtime.service import InferenceService
from tests.conftest import REPO, ServiceFactory
from tests.events import FakeLambdaContext, Version, api_event, response_body, response_json
from tests.handlers.conftest import GatewayEvent
from tests.template_events import GatewayRefusal, NoRoute

IRIS_ROW = [6.3, 3.4, 5.6, 2.4]
VERSIONS: list[Version] = ["v1", "v2"]


def call(service: InferenceService, event: dict[str, Any], context: FakeLambdaContext) -> dict[str, Any]:
    response: dict[str, Any] = inference.handler(event, context, service=service)
    return response


def emf_documents(output: str) -> list[dict[str, Any]]:
    """The CloudWatch embedded-metric documents among a function's stdout lines."""
    docs = []
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            docs.append(json.loads(line))
    return docs


def metric_names(doc: dict[str, Any]) -> set[str]:
    return {m["Name"] for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}


@pytest.mark.parametrize("version", VERSIONS)
def test_predict(
    version: Version,
    iris_service: InferenceService,
    lambda_context: FakeLambdaContext,
    gateway_event: GatewayEvent,
) -> None:
    body = json.dumps({"instances": [IRIS_ROW]})
    response = call(iris_service, gateway_event(version, body=body), lambda_context)
    assert response["statusCode"] == 200
    assert response["headers"]["content-type"] == "application/json"
    assert response["isBase64Encoded"] is False
    assert response_json(response)["predictions"][0]["label"] == "virginica"
    assert ("multiValueHeaders" in response) == (version == "v1")


@pytest.mark.parametrize("version", VERSIONS)
def test_base64_bodies_as_api_gateway_sends_binary_media(
    version: Version,
    iris_service: InferenceService,
    lambda_context: FakeLambdaContext,
    gateway_event: GatewayEvent,
) -> None:
    body = json.dumps({"instances": [IRIS_ROW]}).encode()
    if version == "v2":  # a user's HTTP API may base64 any body; the stack's REST API sends JSON as text
        response = call(iris_service, api_event(version, body=body, base64_body=True), lambda_context)
        assert response["statusCode"] == 200
    npy = io.BytesIO()
    np.save(npy, np.array([IRIS_ROW], dtype=np.float32))
    headers = {"content-type": "application/x-npy"}
    event = gateway_event(version, body=npy.getvalue(), headers=headers)
    assert event["isBase64Encoded"] is True  # application/x-npy is one of the API's binary media types
    response = call(iris_service, event, lambda_context)
    assert response_json(response)["outputs"]["label"] == [2]


@pytest.mark.parametrize("version", VERSIONS)
def test_npy_response_is_base64(
    version: Version, service: ServiceFactory, lambda_context: FakeLambdaContext, gateway_event: GatewayEvent
) -> None:
    from tests import onnx_models

    svc = service(onnx_models.fixed_batch_two(), name="doubler")
    headers = {"content-type": "application/json", "accept": "application/x-npy"}
    event = gateway_event(
        version, path="/models/doubler/predict", body='{"instances": [[1,2,3]]}', headers=headers
    )
    response = call(svc, event, lambda_context)
    assert response["statusCode"] == 200
    assert response["isBase64Encoded"] is True
    assert np.load(io.BytesIO(response_body(response))).tolist() == [[2.0, 4.0, 6.0]]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", ["/models/iris/health", "/health"])
def test_health_and_metadata(
    version: Version,
    path: str,
    iris_service: InferenceService,
    lambda_context: FakeLambdaContext,
    gateway_event: GatewayEvent,
) -> None:
    if version == "v1" and path == "/health":  # not a route of the stack's REST API: the gateway answers
        with pytest.raises(NoRoute):
            gateway_event(version, "GET", path)
        return
    health = call(iris_service, gateway_event(version, "GET", path), lambda_context)
    assert health["statusCode"] == 200
    assert response_json(health)["status"] == "ok"
    meta = call(
        iris_service, gateway_event(version, "GET", path.replace("health", "metadata")), lambda_context
    )
    assert response_json(meta)["name"] == "iris"


def test_http_api_named_stage_prefix_is_stripped(
    iris_service: InferenceService, lambda_context: FakeLambdaContext
) -> None:
    event = api_event("v2", "GET", "/prod/models/iris/health")
    event["requestContext"]["stage"] = "prod"
    assert call(iris_service, event, lambda_context)["statusCode"] == 200


BAD_REQUESTS: list[tuple[str, str, Any, dict[str, str] | None, int, str]] = [
    ("POST", "/models/iris/predict", "{not json", None, 400, "malformed_request"),
    ("POST", "/models/iris/predict", None, None, 400, "malformed_request"),
    ("POST", "/models/iris/predict", '{"instances": [[1, 2]]}', None, 422, "invalid_input"),
    ("POST", "/models/iris/predict", '{"instances": [["a", 2, 3, 4]]}', None, 422, "invalid_input"),
    ("POST", "/models/iris/predict", "a=1", {"content-type": "application/x-www-form-urlencoded"}, 415,
     "unsupported_media_type"),
    ("POST", "/models/iris/predict", '{"instances": [[1, 2, 3, 4]]}', {"accept": "text/csv"}, 406,
     "not_acceptable"),
    ("GET", "/models/iris/predict", None, None, 405, "method_not_allowed"),
    ("POST", "/models/iris/health", "{}", None, 405, "method_not_allowed"),
    ("DELETE", "/models/iris/metadata", None, None, 405, "method_not_allowed"),
    ("POST", "/models/other/predict", '{"instances": [[1, 2, 3, 4]]}', None, 404, "not_found"),
    ("GET", "/models/iris", None, None, 404, "not_found"),
    ("GET", "/", None, None, 404, "not_found"),
]  # fmt: skip


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("method", "path", "body", "headers", "status", "code"), BAD_REQUESTS)
def test_bad_requests_get_clear_4xx(
    version: Version,
    method: str,
    path: str,
    body: Any,
    headers: dict[str, str] | None,
    status: int,
    code: str,
    iris_service: InferenceService,
    lambda_context: FakeLambdaContext,
    gateway_event: GatewayEvent,
) -> None:
    if headers is not None:
        headers = {"content-type": "application/json", **headers}
    if version == "v1" and code in ("method_not_allowed", "not_found"):
        # The stack's REST API has no such method: API Gateway answers 403 itself, the function never runs.
        with pytest.raises(NoRoute):
            gateway_event(version, method, path, body, headers)
        return
    if version == "v1" and code == "malformed_request":
        # The predict method's request validator refuses a missing or non-JSON body (400, same code).
        with pytest.raises(GatewayRefusal):
            gateway_event(version, method, path, body, headers)
        return
    response = call(iris_service, gateway_event(version, method, path, body, headers), lambda_context)
    assert response["statusCode"] == status
    error = response_json(response)["error"]
    assert error["code"] == code
    assert error["message"]


@pytest.mark.parametrize("version", VERSIONS)
def test_broken_transport_encodings(
    version: Version,
    iris_service: InferenceService,
    lambda_context: FakeLambdaContext,
    gateway_event: GatewayEvent,
) -> None:
    event = gateway_event(version, body='{"instances": [[1, 2, 3, 4]]}')
    event["isBase64Encoded"] = True
    event["body"] = "***not base64***"
    response = call(iris_service, event, lambda_context)
    assert response["statusCode"] == 400
    assert "base64" in response_json(response)["error"]["message"]
    lone_surrogate = gateway_event(version, body='{"instances": [[1, 2, 3, 4]]}')
    lone_surrogate["body"] = '{"instances": [["\ud800", 1, 2, 3]]}'  # as json.loads gives it from "\\ud800"
    assert call(iris_service, lone_surrogate, lambda_context)["statusCode"] == 400


def test_not_an_api_gateway_event(iris_service: InferenceService, lambda_context: FakeLambdaContext) -> None:
    response = call(iris_service, {"instances": [IRIS_ROW]}, lambda_context)
    assert response["statusCode"] == 400
    assert "API Gateway proxy event" in response_json(response)["error"]["message"]


def test_too_large_body_points_to_batch(
    service: ServiceFactory, lambda_context: FakeLambdaContext, gateway_event: GatewayEvent
) -> None:
    from tests import onnx_models

    svc = service(onnx_models.two_inputs(), name="pair", max_body_bytes=100)
    body = json.dumps({"inputs": {"a": [[0.5, 0.5, 0.5]] * 5, "b": [[0.5, 0.5, 0.5]] * 5}})
    response = call(svc, gateway_event("v1", path="/models/pair/predict", body=body), lambda_context)
    assert response["statusCode"] == 413
    assert "batch" in response_json(response)["error"]["message"]


@pytest.mark.parametrize("spec_readable", [True, False])
def test_broken_model_answers_503_on_every_model_route(
    spec_readable: bool,
    bundle: Any,
    lambda_context: FakeLambdaContext,
    gateway_event: GatewayEvent,
) -> None:
    from mdk_runtime.service import Settings
    from tests import onnx_models

    directory = bundle(onnx_models.two_inputs(), name="pair")
    (directory / "model.onnx").write_bytes(b"corrupt")
    if not spec_readable:
        (directory / "mdk-model.json").write_text("{")
    svc = InferenceService.load(Settings(model_dir=directory))
    assert svc.name == ("pair" if spec_readable else "unknown")
    for method, path in (
        ("GET", "/models/pair/health"),
        ("GET", "/models/pair/metadata"),
        ("POST", "/models/pair/predict"),
    ):
        body = '{"inputs": {}}' if method == "POST" else None
        response = call(svc, gateway_event("v1", method, path, body), lambda_context)
        assert response["statusCode"] == 503
        assert response_json(response)["error"]["code"] == "model_not_ready"


# ------------------------------------------------------------------------------------------------
# The direct route and the FastAPI app behind Mangum answer alike
# ------------------------------------------------------------------------------------------------

EQUIVALENCE = [
    ("POST", "/models/iris/predict", json.dumps({"instances": [IRIS_ROW, [5.0, 3.4, 1.5, 0.2]]}), None),
    ("POST", "/predict", json.dumps({"inputs": {"features": [IRIS_ROW]}}), None),
    ("GET", "/models/iris/metadata", None, None),
    ("GET", "/models/iris/health", None, None),
    ("POST", "/models/iris/predict", "{bad", None),
    ("POST", "/models/iris/predict", '{"instances": [[1, "x", 3, 4]]}', None),
    ("POST", "/models/iris/predict", "{}", {"content-type": "text/plain"}),
    ("POST", "/models/iris/predict", "{}", {"content-type": "application/json", "accept": "image/png"}),
    ("GET", "/models/iris/predict", None, None),
    ("PUT", "/health", None, None),
]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("method", "path", "body", "headers"), EQUIVALENCE)
def test_direct_routes_answer_exactly_as_the_fastapi_app(
    version: Version,
    method: str,
    path: str,
    body: str | None,
    headers: dict[str, str] | None,
    iris_service: InferenceService,
    lambda_context: FakeLambdaContext,
    gateway_event: GatewayEvent,
) -> None:
    try:
        event = gateway_event(version, method, path, body, headers)
    except (NoRoute, GatewayRefusal):
        # API Gateway answers these itself (no such route or method, a body off the model): the function
        # behind the stack's REST API never sees them; HTTP API (v2) events still compare both paths.
        assert version == "v1"
        return
    direct = call(iris_service, event, lambda_context)
    via_app = Mangum(create_app(iris_service), lifespan="off")(event, lambda_context)
    for key in ("statusCode", "body", "isBase64Encoded"):
        assert direct[key] == via_app[key], key
    assert direct["headers"]["content-type"] == via_app["headers"]["content-type"]


def test_docs_and_openapi_are_served_by_the_app(
    iris_service: InferenceService,
    lambda_context: FakeLambdaContext,
    gateway_event: GatewayEvent,
) -> None:
    # Not routes of the stack's REST API (it routes the model's three): an HTTP API in front of the
    # function ($default route) or `mdk serve` reaches them.
    spec = call(iris_service, gateway_event("v2", "GET", "/openapi.json"), lambda_context)
    assert spec["statusCode"] == 200
    paths = response_json(spec)["paths"]
    assert {"/predict", "/models/iris/predict", "/models/iris/metadata", "/models/iris/health"} <= set(paths)
    request_schema = paths["/models/iris/predict"]["post"]["requestBody"]["content"]["application/json"]
    instances = request_schema["schema"]["oneOf"][0]["properties"]["instances"]
    assert instances["items"]["minItems"] == instances["items"]["maxItems"] == 4
    # The bare list every serving path reads (the SageMaker SDK's default JSON) is in the document too.
    schema = request_schema["schema"]
    jsonschema.validate([[5.1, 3.5, 1.4, 0.2]], schema)
    jsonschema.validate({"instances": [[5.1, 3.5, 1.4, 0.2]]}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([[5.1, 3.5]], schema)
    docs = call(iris_service, gateway_event("v2", "GET", "/docs"), lambda_context)
    assert docs["statusCode"] == 200
    assert "text/html" in docs["headers"]["content-type"]


# ------------------------------------------------------------------------------------------------
# Observability: EMF metrics, structured logs, no payloads
# ------------------------------------------------------------------------------------------------


def test_metrics_per_request_and_errors_by_code(
    iris_service: InferenceService,
    lambda_context: FakeLambdaContext,
    capfd: pytest.CaptureFixture[str],
    gateway_event: GatewayEvent,
) -> None:
    call(iris_service, gateway_event("v1", body=json.dumps({"instances": [IRIS_ROW] * 3})), lambda_context)
    ok = emf_documents(capfd.readouterr().out)
    assert {"Latency", "Instances"} <= set().union(*(metric_names(d) for d in ok))
    served = next(d for d in ok if "Instances" in metric_names(d))
    assert served["Instances"] == [3.0]
    assert served["Latency"][0] > 0

    call(iris_service, gateway_event("v1", body='{"instances": [[1]]}'), lambda_context)
    bad = emf_documents(capfd.readouterr().out)
    by_code = next(d for d in bad if "ErrorsByCode" in metric_names(d))
    assert by_code["ErrorCode"] == "invalid_input"
    assert ["ErrorCode"] in [dims[-1:] for dims in by_code["_aws"]["CloudWatchMetrics"][0]["Dimensions"]]
    assert any("ClientErrors" in metric_names(d) for d in bad)


def test_logs_are_json_and_never_carry_payloads(
    iris_service: InferenceService,
    lambda_context: FakeLambdaContext,
    capfd: pytest.CaptureFixture[str],
    log_lines: io.StringIO,
    gateway_event: GatewayEvent,
) -> None:
    marker = "payload-marker-93c1"
    body = json.dumps({"instances": [[1, 2, marker, 4]], marker: 1})
    with pytest.raises(GatewayRefusal):  # off the REST API's model: only an HTTP API passes it on
        gateway_event("v1", body=body)
    call(iris_service, gateway_event("v2", body=body), lambda_context)
    call(
        iris_service, gateway_event("v1", body=json.dumps({"instances": [[1, 2, marker, 4]]})), lambda_context
    )
    output = capfd.readouterr().out + log_lines.getvalue()
    assert marker not in output
    logs = [json.loads(line) for line in output.splitlines() if line.startswith("{") and '"_aws"' not in line]
    rejected = [entry for entry in logs if entry.get("message") == "request rejected"]
    assert rejected
    assert all(entry["level"] == "INFO" and entry["status"] in (400, 422) for entry in rejected)
    assert all(entry["request_id"] == lambda_context.aws_request_id for entry in rejected)


# ------------------------------------------------------------------------------------------------
# Deadlines: a prediction still running near the function's timeout is stopped and answered 504
# ------------------------------------------------------------------------------------------------


def test_request_deadline_leaves_a_margin_within_the_function_and_api_gateway_limits() -> None:
    assert inference.request_deadline(FakeLambdaContext(remaining_ms=3000), now=100.0) == pytest.approx(102.7)
    assert inference.request_deadline(FakeLambdaContext(remaining_ms=500), now=0.0) == pytest.approx(0.4)
    # A 15-minute function behind API Gateway: 29 s is all the caller waits for.
    assert inference.request_deadline(FakeLambdaContext(remaining_ms=900_000), now=0.0) == pytest.approx(28.0)
    assert inference.request_deadline(None, now=0.0) == pytest.approx(28.0)


def test_a_prediction_past_the_deadline_is_stopped_and_answered_504(
    service: ServiceFactory,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    gateway_event: GatewayEvent,
) -> None:
    """The slowed iris model spins for hours on a feature above 100; the function's context says 1.5 s
    are left: the run is stopped at the deadline, the caller gets a 504 naming it, the metrics count an
    inference_timeout, and the sandbox goes on serving."""
    from tests.onnx_models import slowed

    slow = service(
        slowed(REPO / "models/iris/v1/model.onnx", tmp_path / "slow.onnx"),
        name="iris",
        labels=["setosa", "versicolor", "virginica"],
    )
    assert slow.model is not None, slow.load_error
    context = FakeLambdaContext(remaining_ms=1500)
    capfd.readouterr()

    response = call(
        slow, gateway_event("v1", body=json.dumps({"instances": [[1000.0, 3.4, 5.6, 2.4]]})), context
    )
    assert response["statusCode"] == 504
    error = response_json(response)["error"]
    assert error["code"] == "inference_timeout"
    assert "deadline" in error["message"]
    docs = emf_documents(capfd.readouterr().out)
    by_code = next(d for d in docs if "ErrorsByCode" in metric_names(d))
    assert by_code["ErrorCode"] == "inference_timeout"
    assert any("ServerErrors" in metric_names(d) for d in docs)

    # Ordinary inputs of the same model are answered, before and after a stopped run.
    response = call(slow, gateway_event("v1", body=json.dumps({"instances": [IRIS_ROW]})), context)
    assert response["statusCode"] == 200
    assert response_json(response)["predictions"][0]["label"] == "virginica"
