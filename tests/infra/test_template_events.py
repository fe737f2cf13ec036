"""The event builder matches routes as API Gateway does, and refuses what API Gateway refuses.

A small REST API template in CloudFormation's own shape (what ``cdk synth`` writes for these resources);
the kit's real template is exercised by test_routes.py.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.template_events import (
    GatewayRefusal,
    NoRoute,
    NotLambdaProxy,
    rest_event,
    route_for,
    schema_problems,
)

ROOT = {"Fn::GetAtt": ["Api", "RootResourceId"]}
PROXY = {"Type": "AWS_PROXY", "IntegrationHttpMethod": "POST", "Uri": "arn:function"}


def _resource(parent: Any, part: str) -> dict[str, Any]:
    return {"Type": "AWS::ApiGateway::Resource", "Properties": {"ParentId": parent, "PathPart": part}}


def _method(resource: str, verb: str, integration: dict[str, Any], **extra: Any) -> dict[str, Any]:
    target = ROOT if resource == "root" else {"Ref": resource}
    props = {"ResourceId": target, "HttpMethod": verb, "Integration": integration, **extra}
    return {"Type": "AWS::ApiGateway::Method", "Properties": props}


TEMPLATE: dict[str, Any] = {
    "Resources": {
        "Api": {
            "Type": "AWS::ApiGateway::RestApi",
            "Properties": {"BinaryMediaTypes": ["application/x-npy"]},
        },
        "Stage": {"Type": "AWS::ApiGateway::Stage", "Properties": {"StageName": "prod"}},
        "Models": _resource(ROOT, "models"),
        "Iris": _resource({"Ref": "Models"}, "iris"),
        "IrisPredict": _resource({"Ref": "Iris"}, "predict"),
        "Name": _resource({"Ref": "Models"}, "{name}"),
        "NamePredict": _resource({"Ref": "Name"}, "predict"),
        "Files": _resource(ROOT, "files"),
        "FilesProxy": _resource({"Ref": "Files"}, "{proxy+}"),
        "Sm": _resource({"Ref": "Models"}, "sm"),
        "SmPredict": _resource({"Ref": "Sm"}, "predict"),
        "Body": {
            "Type": "AWS::ApiGateway::RequestValidator",
            "Properties": {"ValidateRequestBody": True, "ValidateRequestParameters": True},
        },
        "Request": {
            "Type": "AWS::ApiGateway::Model",
            "Properties": {
                "ContentType": "application/json",
                "Schema": {
                    "$schema": "http://json-schema.org/draft-04/schema#",
                    "type": "object",
                    "properties": {"instances": {"type": "array", "minItems": 1}},
                    "additionalProperties": False,
                    "minProperties": 1,
                },
            },
        },
        "IrisPost": _method(
            "IrisPredict",
            "POST",
            PROXY,
            AuthorizationType="AWS_IAM",
            RequestValidatorId={"Ref": "Body"},
            RequestModels={"application/json": {"Ref": "Request"}},
        ),
        "NamePost": _method("NamePredict", "POST", PROXY, AuthorizationType="NONE", ApiKeyRequired=True),
        "FilesAny": _method("FilesProxy", "ANY", PROXY),
        "SmPost": _method("SmPredict", "POST", {"Type": "AWS", "Uri": "arn:sagemaker"}),
    }
}


def test_a_literal_part_wins_over_a_path_parameter() -> None:
    event = rest_event(TEMPLATE, "POST", "/models/iris/predict", body='{"instances": [[1]]}')
    assert event["resource"] == event["requestContext"]["resourcePath"] == "/models/iris/predict"
    assert event["pathParameters"] is None
    assert event["requestContext"]["identity"]["userArn"].startswith("arn:aws:sts::")  # AWS_IAM: the signer
    other = rest_event(TEMPLATE, "POST", "/models/wine/predict", body="{}")
    assert other["resource"] == "/models/{name}/predict"
    assert other["pathParameters"] == {"name": "wine"}
    assert other["headers"]["x-api-key"] == other["requestContext"]["identity"]["apiKey"]  # ApiKeyRequired
    assert other["requestContext"]["stage"] == "prod"
    assert other["requestContext"]["path"] == "/prod/models/wine/predict"


def test_a_greedy_parameter_takes_the_rest_of_the_path_under_any_verb() -> None:
    route, params = route_for(TEMPLATE, "DELETE", "/files/a/b/c.txt")
    assert route.path == "/files/{proxy+}"
    assert params == {"proxy": "a/b/c.txt"}
    with pytest.raises(NoRoute):
        rest_event(TEMPLATE, "GET", "/files")  # {proxy+} needs at least one part


def test_routes_and_methods_the_api_lacks_are_refused_by_the_gateway() -> None:
    for verb, path in (
        ("GET", "/models/iris/predict"),
        ("POST", "/models/iris"),
        ("GET", "/"),
        ("POST", "/x"),
    ):
        with pytest.raises(NoRoute):
            rest_event(TEMPLATE, verb, path)
    with pytest.raises(NotLambdaProxy):  # an AWS integration sends no Lambda event
        rest_event(TEMPLATE, "POST", "/models/sm/predict", body="{}")


def test_bodies_of_binary_media_types_arrive_base64() -> None:
    npy = b"\x93NUMPY\x01\x00"
    event = rest_event(
        TEMPLATE, "POST", "/models/wine/predict", body=npy, headers={"Content-Type": "application/x-npy"}
    )
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == npy
    text = rest_event(TEMPLATE, "POST", "/models/wine/predict", body='{"a": 1}')
    assert text["isBase64Encoded"] is False
    assert text["body"] == '{"a": 1}'


def test_a_body_validating_method_refuses_bodies_off_its_model() -> None:
    for body in (None, "{not json", "[]", '{"instances": []}', '{"instances": [1], "extra": 2}'):
        with pytest.raises(GatewayRefusal):
            rest_event(TEMPLATE, "POST", "/models/iris/predict", body=body)
    assert schema_problems({"type": ["object", "array"]}, True) == ["$: expected object or array"]
    with pytest.raises(NotImplementedError):  # a keyword the checker cannot read is never ignored
        schema_problems({"pattern": "^a"}, "a")
