"""The pre-traffic hook against botocore's Stubber: Lambda answers with what the real inference handler
answers for the same events, CodeDeploy must hear Succeeded or Failed."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from onnx import TensorProto, helper

from lambda_handlers import inference
from lambda_handlers.rollout_hooks import api_event, check_predictions, pre_traffic, synthetic_request
from mdk_runtime import routes
from mdk_runtime.service import InferenceService, Settings
from tests import onnx_models
from tests.conftest import BundleFactory
from tests.events import FakeLambdaContext
from tests.template_events import rest_event

VERSION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:mdk-dev-model-iris-ModelirisFunction:7"
ENV = {"MDK_TARGET_VERSION_ARN": VERSION_ARN, "MDK_MODEL_NAME": "iris"}
HOOK_EVENT = {"DeploymentId": "d-ABCDEF123", "LifecycleEventHookExecutionId": "hook-execution-1"}


def clients() -> tuple[Any, Any]:
    session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")
    return session.client("lambda"), session.client("codedeploy")


def payload(answer: dict[str, Any]) -> StreamingBody:
    data = json.dumps(answer).encode()
    return StreamingBody(io.BytesIO(data), len(data))


def answers_of(service: InferenceService, model: str) -> list[dict[str, Any]]:
    """What the real handler answers to the hook's three calls, in order."""
    context = FakeLambdaContext()
    health = inference.handler(api_event(model, routes.HEALTH), context, service=service)
    metadata = inference.handler(api_event(model, routes.METADATA), context, service=service)
    answers = [health, metadata]
    if health["statusCode"] == 200 and metadata["statusCode"] == 200:
        meta = json.loads(metadata["body"])
        request = meta.get("example") or synthetic_request(meta["schema"])
        answers.append(inference.handler(api_event(model, routes.PREDICT, request), context, service=service))
    return answers


@pytest.fixture
def stubbed() -> Iterator[tuple[Any, Stubber, Any, Stubber]]:
    lambda_client, codedeploy = clients()
    with Stubber(lambda_client) as lam, Stubber(codedeploy) as cd:
        yield lambda_client, lam, codedeploy, cd
        lam.assert_no_pending_responses()
        cd.assert_no_pending_responses()


def expect_invokes(lam: Stubber, answers: list[dict[str, Any]], function_error: str | None = None) -> None:
    for answer in answers:
        response: dict[str, Any] = {"StatusCode": 200, "Payload": payload(answer), "ExecutedVersion": "7"}
        if function_error:
            response["FunctionError"] = function_error
        lam.add_response(
            "invoke",
            response,
            {"FunctionName": VERSION_ARN, "InvocationType": "RequestResponse", "Payload": Any_()},
        )


def expect_report(cd: Stubber, status: str) -> None:
    cd.add_response(
        "put_lifecycle_event_hook_execution_status",
        {"lifecycleEventHookExecutionId": "hook-execution-1"},
        {
            "deploymentId": "d-ABCDEF123",
            "lifecycleEventHookExecutionId": "hook-execution-1",
            "status": status,
        },
    )


class Any_:  # noqa: N801 - reads as a placeholder in expected parameters
    """Matches any value in Stubber's expected parameters."""

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0


def run_hook(lambda_client: Any, codedeploy: Any, env: dict[str, str] = ENV) -> dict[str, str]:
    return pre_traffic(
        HOOK_EVENT, FakeLambdaContext(), lambda_client=lambda_client, codedeploy=codedeploy, environ=env
    )


def test_a_healthy_model_succeeds(stubbed: Any, iris_service: InferenceService) -> None:
    lambda_client, lam, codedeploy, cd = stubbed
    expect_invokes(lam, answers_of(iris_service, "iris"))
    expect_report(cd, "Succeeded")
    assert run_hook(lambda_client, codedeploy) == {"status": "Succeeded", "problems": ""}


def test_a_model_that_failed_to_load_fails(stubbed: Any, bundle: BundleFactory) -> None:
    lambda_client, lam, codedeploy, cd = stubbed
    directory = bundle(onnx_models.two_inputs(), name="iris")
    (directory / "model.onnx").write_bytes(b"corrupt")
    broken = InferenceService.load(Settings(model_dir=directory))
    answers = answers_of(broken, "iris")
    assert len(answers) == 2
    assert answers[0]["statusCode"] == 503
    expect_invokes(lam, answers[:1])  # the hook stops at the failed health check
    expect_report(cd, "Failed")
    result = run_hook(lambda_client, codedeploy)
    assert result["status"] == "Failed"
    assert "GET health: answered 503" in result["problems"]


def nan_model() -> Any:
    """features [N, 4] -> probabilities = sqrt(features - 10): NaN for every real input."""
    ten = helper.make_tensor("ten", TensorProto.FLOAT, [], [10.0])
    graph = helper.make_graph(
        [helper.make_node("Sub", ["features", "ten"], ["d"]), helper.make_node("Sqrt", ["d"], ["scores"])],
        "nan_model",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 4])],
        initializer=[ten],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_nan_predictions_fail(stubbed: Any, bundle: BundleFactory) -> None:
    lambda_client, lam, codedeploy, cd = stubbed
    service = InferenceService.load(
        Settings(model_dir=bundle(nan_model(), name="iris", example={"instances": [[5.1, 3.5, 1.4, 0.2]]}))
    )
    answers = answers_of(service, "iris")
    assert answers[2]["statusCode"] == 200  # served: NaN is the model's fault, not the request's
    expect_invokes(lam, answers)
    expect_report(cd, "Failed")
    result = run_hook(lambda_client, codedeploy)
    assert "predictions[0] holds NaN or infinite values" in result["problems"]


def test_a_crashing_function_fails(stubbed: Any) -> None:
    lambda_client, lam, codedeploy, cd = stubbed
    crash = {"errorMessage": "Task timed out after 10.00 seconds", "errorType": "Sandbox.Timedout"}
    expect_invokes(lam, [crash], function_error="Unhandled")
    expect_report(cd, "Failed")
    result = run_hook(lambda_client, codedeploy)
    assert "the function failed (Sandbox.Timedout" in result["problems"]


def test_an_invoke_error_fails(stubbed: Any) -> None:
    lambda_client, lam, codedeploy, cd = stubbed
    lam.add_client_error("invoke", service_error_code="ResourceNotFoundException", http_status_code=404)
    expect_report(cd, "Failed")
    result = run_hook(lambda_client, codedeploy)
    assert "GET health: invoking the new version failed: ResourceNotFoundException" in result["problems"]


def test_the_version_must_serve_the_expected_model(stubbed: Any, iris_service: InferenceService) -> None:
    lambda_client, lam, codedeploy, cd = stubbed
    expect_invokes(lam, answers_of(iris_service, "iris")[:2])
    expect_report(cd, "Failed")
    result = run_hook(lambda_client, codedeploy, {**ENV, "MDK_MODEL_NAME": "other"})
    # the routes of model "other" answer 404 from a function serving iris
    assert result["status"] == "Failed"


def test_missing_configuration_still_reports_failed(stubbed: Any) -> None:
    lambda_client, _, codedeploy, cd = stubbed
    expect_report(cd, "Failed")
    result = run_hook(lambda_client, codedeploy, {})
    assert "the hook failed: KeyError" in result["problems"]


def test_models_without_an_example_get_a_synthetic_request(stubbed: Any, service: Any) -> None:
    lambda_client, lam, codedeploy, cd = stubbed
    svc = service(onnx_models.tokens(), name="iris")
    meta = json.loads(svc.metadata().body)
    # the synthetic request the warm-up ran is the metadata's example, which the hook then sends
    assert meta["example_source"] == "synthetic"
    assert meta["example"] == {"instances": [{"input_ids": [0], "attention_mask": [0]}]}
    assert synthetic_request(meta["schema"]) == meta["example"]
    expect_invokes(lam, answers_of(svc, "iris"))
    expect_report(cd, "Succeeded")
    assert run_hook(lambda_client, codedeploy)["status"] == "Succeeded"


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({"outputs": {}}, "did not answer a JSON object with a 'predictions' list"),
        ({"predictions": []}, "answered 0 predictions for 1 instances"),
        (
            {"predictions": [{"label": "setosa", "probabilities": {"setosa": 0.5, "virginica": 0.1}}]},
            "sum to 0.6",
        ),
        (
            {"predictions": [{"label": "tulip", "probabilities": {"setosa": 1.0}}]},
            "not one of the model's labels",
        ),
        ({"predictions": [{"probabilities": {"setosa": 1.0}}]}, "has no label"),
    ],
)
def test_well_formed_predictions(doc: Any, problem: str, iris_service: InferenceService) -> None:
    metadata = json.loads(iris_service.metadata().body)
    assert any(problem in p for p in check_predictions(doc, metadata, 1)), check_predictions(doc, metadata, 1)


def _imports(source: str) -> set[str]:
    return {line.split()[1] for line in source.splitlines() if line.startswith(("import ", "from "))}


def test_hook_module_needs_only_the_standard_library_and_boto3() -> None:
    """The hook's zip holds it and the route table (stacks/lambda_model.py), which is stdlib only too."""
    repo = Path(__file__).resolve().parents[2]
    source = (repo / "lambda_handlers" / "rollout_hooks.py").read_text()
    stdlib = {"__future__", "json", "logging", "math", "os", "collections", "dataclasses", "typing"}
    imports = _imports(source)
    assert {name.split(".")[0] for name in imports} <= stdlib | {"mdk_runtime"}
    assert {name for name in imports if name.startswith("mdk_runtime")} == {"mdk_runtime"}  # routes only
    assert "from mdk_runtime import routes" in source
    table = _imports((repo / "layers" / "python" / "mdk_runtime" / "routes.py").read_text())
    assert {name.split(".")[0] for name in table} <= stdlib
    assert "import boto3" in source  # inside pre_traffic: in the Lambda runtime, not bundled


@pytest.mark.parametrize(("method", "action", "body"), [("GET", "health", None), ("GET", "metadata", None),
                                                         ("POST", "predict", {"instances": [[1, 2, 3, 4]]})])  # fmt: skip
def test_the_hooks_events_are_the_ones_the_stacks_api_sends(
    method: str, action: str, body: Any, api_template: dict[str, Any]
) -> None:
    """The hook calls the version directly, with events it builds itself: each must be what the stack's
    REST API sends for that route (resource, path parameters, method, body encoding), or the hook
    would pass a version that fails behind the API (or fail one that works)."""
    [route] = [r for r in routes.MODEL_ROUTES if r.action == action]
    hook = api_event("iris", route, body)
    text = None if body is None else json.dumps(body)
    gateway = rest_event(api_template, method, f"/models/iris/{action}", text)
    for key in ("resource", "path", "httpMethod", "pathParameters", "isBase64Encoded", "body"):
        assert hook[key] == gateway[key], key
    assert hook["requestContext"]["resourcePath"] == gateway["requestContext"]["resourcePath"]
    assert hook["headers"]["content-type"] == "application/json"
