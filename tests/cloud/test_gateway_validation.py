"""The local API Gateway runs the REST API's request validators, as API Gateway does: a body off the predict
method's model (for the request's Content-Type, ``application/json`` without one) is refused with the
stack's ``BAD_REQUEST_BODY`` gateway response before any function runs; and a literal path part is
preferred to a ``{param}`` part when routes overlap."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from mdk.local.cloud.cloud import LocalCloud
from mdk.local.cloud.services import cloudwatch
from mdk.local.cloud.services.apigateway import Api, Gateway, Method
from mdk.local.cloud.services.lambda_ import Invocation
from tests.cloud.test_gateway_edge import FUNCTION, ROWS, kit_error, post, predict_url, sign

REFUSAL = {
    "code": "malformed_request",
    "message": "request body: expected a JSON object with either instances (a list) or inputs, "
    "or a JSON list of instances",
}


def test_the_deployed_api_carries_its_validator_and_model(cloud: LocalCloud) -> None:
    """What the stack's method holds on AWS is in the local AWS: moto's CloudFormation drops it."""
    apigw = cloud.session.client("apigateway")
    assert cloud.gateway.api is not None
    api_id = cloud.gateway.api.id
    [resource] = [
        r
        for r in apigw.get_resources(restApiId=api_id, limit=500)["items"]
        if r["path"] == "/models/iris/predict"
    ]
    method = apigw.get_method(restApiId=api_id, resourceId=resource["id"], httpMethod="POST")
    validators = {v["id"]: v for v in apigw.get_request_validators(restApiId=api_id)["items"]}
    assert validators[method["requestValidatorId"]]["validateRequestBody"] is True
    [model] = method["requestModels"].values()
    schema = json.loads(apigw.get_model(restApiId=api_id, modelName=model)["schema"])
    assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    assert set(schema["properties"]) == {"instances", "inputs"}


def invoked(cloud: LocalCloud, send: Any) -> tuple[Any, list[Invocation]]:
    seen: list[Invocation] = []
    cloud.runner.observers.append(lambda result, _alias: seen.append(result))
    try:
        answer = send()
    finally:
        cloud.runner.observers.pop()
    return answer, [r for r in seen if r.function == FUNCTION]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"foo": 1}', "application/json"),
        (b'"text"', "application/json"),
        (b"{not json", "application/json"),
        (b'{"instances": []}', "application/json; charset=utf-8"),
        (b'{"foo": 1}', None),  # no Content-Type: API Gateway takes application/json
        (b"", "application/json"),
    ],
)
def test_a_body_off_the_model_is_refused_before_the_function_runs(
    cloud: LocalCloud, body: bytes, content_type: str | None
) -> None:
    headers = sign(predict_url(cloud), body, {"Content-Type": content_type} if content_type else {})
    if content_type is None:
        headers.pop("Content-Type", None)
    started = datetime.now(UTC)
    (status, response_headers, answer), calls = invoked(cloud, lambda: post(cloud, body, headers))
    assert status == 400, answer
    assert response_headers["x-amzn-errortype"] == "BAD_REQUEST_BODY"
    assert kit_error(answer) == REFUSAL
    assert calls == []  # the function never saw it
    cloud.metrics.flush()
    samples = cloudwatch.metric_values(
        cloud.region, "AWS/Lambda", "Invocations", {"FunctionName": FUNCTION}, started
    )
    assert samples.count == 0


@pytest.mark.parametrize("document", [ROWS, {"instances": ROWS}, {"inputs": {"input": ROWS}}])
def test_bodies_on_the_model_reach_the_function(cloud: LocalCloud, document: Any) -> None:
    body = json.dumps(document).encode()
    headers = sign(predict_url(cloud), body, {"Content-Type": "application/json"})
    (status, response_headers, answer), calls = invoked(cloud, lambda: post(cloud, body, headers))
    assert len(calls) == 1, answer  # the gateway let it through
    assert "x-amzn-errortype" not in response_headers
    if isinstance(document, dict) and "inputs" in document:
        assert status in (200, 400, 422), answer  # the function judges the tensors' names and shapes
    else:
        assert status == 200, answer
        assert [p["label"] for p in json.loads(answer)["predictions"]] == ["virginica", "virginica"]


def _method(path: str, verb: str = "GET") -> Method:
    return Method(
        resource_path=path, http_method=verb, authorization="NONE", api_key_required=False, integration={}
    )


@pytest.mark.parametrize("order", [1, -1])
def test_a_literal_path_part_wins_over_a_parameter(order: int) -> None:
    """API Gateway prefers ``/items/special`` to ``/items/{id}`` for ``/items/special``, whatever the order
    the resources were created in; ``/items/other`` is the parameter's; the verb's own method wins over ANY."""
    api = Api(
        "api",
        "dev",
        (),
        methods=[_method("/items/{id}"), _method("/items/special"), _method("/{proxy+}", "ANY")][::order],
    )
    gateway = Gateway.__new__(Gateway)
    method, params = gateway._match(api, "GET", "/items/special")
    assert (method.resource_path, params) == ("/items/special", {})
    method, params = gateway._match(api, "GET", "/items/a%20b")
    assert (method.resource_path, params) == ("/items/{id}", {"id": "a%20b"})  # as sent: percent-encoded
    method, params = gateway._match(api, "POST", "/items/special")
    assert (method.resource_path, params) == ("/{proxy+}", {"proxy": "items/special"})
