"""CodeDeploy's pre-traffic hook: try the new version of a model function before it gets any traffic.

CodeDeploy invokes ``pre_traffic`` with a deployment id and a hook execution id once the new version is
published and before the alias shifts. The hook invokes that version directly (``MDK_TARGET_VERSION_ARN``,
set by the stack to the version being deployed) with API Gateway events, as the API would:

1. ``GET /models/<name>/health`` must answer 200 (the model loaded and warmed up);
2. ``GET /models/<name>/metadata`` gives the schema and the model's example request;
3. ``POST /models/<name>/predict`` with that example (or zeros shaped by the schema) must answer 200 with
   one well-formed prediction per instance: finite numbers, and for classifiers a known label and
   probabilities that sum to 1.

It then reports ``Succeeded`` or ``Failed`` to CodeDeploy; a failure stops the deployment and the alias
stays on the old version, so a broken model never receives traffic. Only boto3 (in the Lambda runtime)
and the standard library are used: the function is a small zip (this file and the route table,
:mod:`mdk_runtime.routes`); its logs are Lambda's JSON logs.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mdk_runtime import routes

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Check:
    """The outcome of trying a version: problems found (none means healthy) and what was tried."""

    problems: list[str]
    tried: list[str]

    @property
    def healthy(self) -> bool:
        return not self.problems


def api_event(
    model: str, route: routes.Route, body: Any = None, *, raw: tuple[str, str] | None = None
) -> dict[str, Any]:
    """A REST API (v1) proxy event for one of the model's routes, as API Gateway would send it.

    ``raw`` is (content type, base64 body): a binary body (an image), which API Gateway hands a proxy
    integration base64-encoded with ``isBase64Encoded`` true for the API's binary media types.
    """
    path, method = routes.model_path(model, route.action), route.method
    text = None if body is None else json.dumps(body)
    headers = {"content-type": "application/json", "accept": "application/json"}
    if raw is not None:
        headers["content-type"], text = raw
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": path,
            "stage": "pre-traffic",
            "requestId": "mdk-pre-traffic-hook",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "mdk-pre-traffic-hook"},
        },
        "body": text,
        "isBase64Encoded": raw is not None,
    }


def synthetic_request(schema: Mapping[str, Any]) -> dict[str, Any]:
    """One instance of zeros shaped like the inputs (unknown sizes as 1), for models without an example."""

    def zeros(dims: list[Any], dtype: str) -> Any:
        value: Any = "" if dtype == "string" else (False if dtype == "bool" else 0)
        for dim in reversed(dims):
            value = [value] * (dim if isinstance(dim, int) and dim > 0 else 1)
        return value

    inputs = schema.get("inputs") or []
    batched = schema.get("batched", True)
    item: dict[str, Any] = {}
    for spec in inputs:
        dims = list(spec.get("shape") or [])
        item[spec["name"]] = zeros(dims[1:] if batched and dims else dims, spec.get("dtype", "float32"))
    if len(item) == 1:
        return {"instances": [next(iter(item.values()))]}
    return {"instances": [item]}


def _numbers(value: Any) -> list[Any]:
    """Every leaf of a JSON value (null included: orjson writes NaN as null)."""
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _numbers(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _numbers(v)]
    return [value]


def check_predictions(doc: Any, metadata: Mapping[str, Any], instances: int) -> list[str]:
    """Problems with a predict answer: shape of the document, count, non-finite values, classifier sanity."""
    if not isinstance(doc, dict) or not isinstance(doc.get("predictions"), list):
        return ["predict did not answer a JSON object with a 'predictions' list"]
    predictions = doc["predictions"]
    problems = []
    if len(predictions) != instances:
        problems.append(f"predict answered {len(predictions)} predictions for {instances} instances")
    schema = metadata.get("schema") or {}
    labels = schema.get("labels")
    for i, prediction in enumerate(predictions):
        leaves = _numbers(
            prediction.get("probabilities", prediction) if isinstance(prediction, dict) else prediction
        )
        if any(leaf is None or (isinstance(leaf, float) and not math.isfinite(leaf)) for leaf in leaves):
            problems.append(f"predictions[{i}] holds NaN or infinite values (null in JSON)")
        if schema.get("classifier") and isinstance(prediction, dict):
            scores = prediction.get("probabilities")
            if "label" not in prediction:
                problems.append(f"predictions[{i}] has no label")
            elif labels and isinstance(prediction["label"], str) and prediction["label"] not in labels:
                problems.append(f"predictions[{i}].label is not one of the model's labels")
            if (
                isinstance(scores, dict)
                and scores
                and all(isinstance(v, int | float) for v in scores.values())
            ):
                total = sum(scores.values())
                if not math.isfinite(total) or abs(total - 1.0) > 1e-3:
                    problems.append(f"predictions[{i}].probabilities sum to {total:.4g}, not 1")
    return problems


def _call(invoke: Invoke, event: dict[str, Any], what: str, tried: list[str]) -> tuple[int, Any, str | None]:
    tried.append(what)
    try:
        response = invoke(event)
    except Exception as exc:  # noqa: BLE001 - any failure to invoke the version fails the check
        return 0, None, f"{what}: invoking the new version failed: {type(exc).__name__}: {exc}"
    if "errorType" in response or "statusCode" not in response:
        kind = response.get("errorType", "no statusCode")
        return 0, None, f"{what}: the function failed ({kind}: {str(response.get('errorMessage', ''))[:200]})"
    status = int(response["statusCode"])
    try:
        doc = json.loads(response.get("body") or "null")
    except json.JSONDecodeError:
        doc = None
    if status != 200:
        message = doc.get("error", {}).get("message") if isinstance(doc, dict) else None
        return status, doc, f"{what}: answered {status}" + (f": {message}" if message else "")
    return status, doc, None


def check_version(model: str, invoke: Invoke) -> Check:  # noqa: PLR0911 - one return per way it fails
    """Health, metadata and a real prediction from the version behind ``invoke``."""
    tried: list[str] = []
    _, _, problem = _call(invoke, api_event(model, routes.HEALTH), "GET health", tried)
    if problem:
        return Check([problem], tried)
    _, metadata, problem = _call(invoke, api_event(model, routes.METADATA), "GET metadata", tried)
    if problem or not isinstance(metadata, dict):
        return Check([problem or "GET metadata: not a JSON object"], tried)
    if metadata.get("name") != model:
        return Check(
            [f"GET metadata: the version serves model {metadata.get('name')!r}, not {model!r}"], tried
        )
    body = metadata.get("example_body")
    if isinstance(body, dict) and isinstance(body.get("b64"), str):
        # A model with processing whose example is a file its clients send (an image, a text): one instance.
        raw = (str(body.get("content_type") or "application/octet-stream"), body["b64"])
        event = api_event(model, routes.PREDICT, raw=raw)
        _, doc, problem = _call(invoke, event, "POST predict", tried)
        if problem:
            return Check([problem], tried)
        return Check(check_predictions(doc, metadata, 1), tried)
    request = metadata.get("example") or synthetic_request(metadata.get("schema") or {})
    instances = request.get("instances") if isinstance(request, dict) else request
    if not isinstance(instances, list) or not instances:
        return Check(["the model's example request has no 'instances' to try"], tried)
    _, doc, problem = _call(invoke, api_event(model, routes.PREDICT, request), "POST predict", tried)
    if problem:
        return Check([problem], tried)
    return Check(check_predictions(doc, metadata, len(instances)), tried)


def lambda_invoker(client: Any, function_arn: str) -> Invoke:
    """Invoke one version synchronously and decode its answer (the function's JSON result)."""

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        result = client.invoke(
            FunctionName=function_arn, InvocationType="RequestResponse", Payload=json.dumps(event)
        )
        payload = result["Payload"].read()
        answer = json.loads(payload) if payload else {}
        if result.get("FunctionError") and isinstance(answer, dict):
            answer.setdefault("errorType", result["FunctionError"])
        return answer if isinstance(answer, dict) else {"errorType": "NotAnObject"}

    return invoke


def pre_traffic(
    event: Mapping[str, Any],
    context: Any,
    *,
    lambda_client: Any = None,
    codedeploy: Any = None,
    environ: Mapping[str, str] = os.environ,
) -> dict[str, str]:
    """The hook CodeDeploy calls. Reports the outcome to CodeDeploy and returns it (for logs and tests)."""
    import boto3

    deployment_id = event["DeploymentId"]
    execution_id = event["LifecycleEventHookExecutionId"]
    codedeploy = codedeploy or boto3.client("codedeploy")
    try:
        target = environ["MDK_TARGET_VERSION_ARN"]
        model = environ["MDK_MODEL_NAME"]
        check = check_version(model, lambda_invoker(lambda_client or boto3.client("lambda"), target))
    except Exception as exc:  # noqa: BLE001 - CodeDeploy must hear back whatever happens
        check = Check([f"the hook failed: {type(exc).__name__}: {exc}"], [])
        target, model = environ.get("MDK_TARGET_VERSION_ARN", "?"), environ.get("MDK_MODEL_NAME", "?")
    status = "Succeeded" if check.healthy else "Failed"
    record = {"deployment": deployment_id, "model": model, "version": target, "status": status,
              "tried": check.tried, "problems": check.problems}  # fmt: skip
    (log.info if check.healthy else log.error)("pre-traffic check %s", status, extra={"check": record})
    codedeploy.put_lifecycle_event_hook_execution_status(
        deploymentId=deployment_id, lifecycleEventHookExecutionId=execution_id, status=status
    )
    return {"status": status, "problems": "; ".join(check.problems)}
