"""Raw bodies of models with processing through the local API Gateway, as API Gateway hands them to a Lambda
proxy integration: a body whose Content-Type is one of the API's binary media types (the stack's list: .npy
and every raw type a model takes, wildcards included) arrives base64-encoded with ``isBase64Encoded``; JSON
and any other type arrive as text ("Binary media types for REST APIs in API Gateway",
https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-payload-encodings.html).

No full local cloud: the local AWS (moto) holds a REST API with one Lambda proxy route, the deployer copies
the stack's binary media types onto it (moto's CloudFormation drops them), and the gateway loads the API from
there as it does after a deploy; the function is a fake that records the event it gets."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from mdk.local.cloud.services.apigateway import Gateway, set_binary_media_types
from mdk.local.cloud.services.lambda_ import Invocation
from stacks.model_api import binary_media_types
from tests.infra.test_processed_api import PNG, processed_config

REGION = "us-east-1"
FUNCTION = f"arn:aws:lambda:{REGION}:123456789012:function:images-fn:live"


class Recorder:
    """A function runner that keeps each event and answers 200."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def invoke(self, name: str, qualifier: str, payload: bytes, *, timeout: float) -> Invocation:
        self.events.append(json.loads(payload))
        answer = {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": "{}"}
        return Invocation(name, qualifier, json.dumps(answer).encode(), False, 1.0)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[Gateway, Recorder, list[str]]]:
    wanted = binary_media_types(processed_config(tmp_path).models)
    with mock_aws():
        session = boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )
        apigw = session.client("apigateway")
        api_id = apigw.create_rest_api(name="local", binaryMediaTypes=["application/x-npy"])["id"]
        root = apigw.get_resources(restApiId=api_id)["items"][0]["id"]
        parent = root
        for part in ("models", "images", "predict"):
            parent = apigw.create_resource(restApiId=api_id, parentId=parent, pathPart=part)["id"]
        apigw.put_method(restApiId=api_id, resourceId=parent, httpMethod="POST", authorizationType="NONE")
        apigw.put_integration(
            restApiId=api_id,
            resourceId=parent,
            httpMethod="POST",
            type="AWS_PROXY",
            integrationHttpMethod="POST",
            uri=f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{FUNCTION}/invocations",
        )
        apigw.create_deployment(restApiId=api_id, stageName="dev")
        set_binary_media_types(apigw, api_id, {"BinaryMediaTypes": wanted})
        runner = Recorder()
        served = Gateway(
            apigateway=apigw,
            runner=runner,  # type: ignore[arg-type]
            endpoints=None,  # type: ignore[arg-type]
            region=REGION,
            credentials=("testing", "testing"),
            port=0,
        )
        try:
            served.load(api_id, "dev")
            yield served, runner, wanted
        finally:
            served._server.server_close()  # never started: stop() would wait for its serve_forever


def send(gateway: Gateway, runner: Recorder, content_type: str, body: bytes) -> dict[str, Any]:
    status, _, answer = gateway.handle(
        "POST", "/dev/models/images/predict", {"content-type": content_type}, body
    )
    assert status == 200, answer
    return runner.events[-1]


def test_the_deployed_api_has_the_stacks_binary_media_types(
    gateway: tuple[Gateway, Recorder, list[str]],
) -> None:
    served, _, wanted = gateway
    assert served.api is not None
    assert list(served.api.binary_types) == wanted
    assert "image/png" in wanted


def test_a_raw_png_reaches_the_function_base64_encoded(gateway: tuple[Gateway, Recorder, list[str]]) -> None:
    served, runner, _ = gateway
    event = send(served, runner, "image/png", PNG)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == PNG


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("image/jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\xff\xd9"),
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Type: image/png\r\n\r\n" + PNG + b"\r\n--b--\r\n",
        ),
        ("text/plain; charset=utf-8", "Grüße".encode()),
        ("application/octet-stream", bytes(range(256))),
        ("audio/wav", b"RIFF\x00\x00\x00\x00WAVE"),  # by the handler's audio/* wildcard
        ("IMAGE/WEBP", b"RIFF\x00\x00\x00\x00WEBPVP8 "),  # media types compare case-insensitively
    ],
)
def test_every_raw_type_a_model_takes_is_base64_encoded(
    gateway: tuple[Gateway, Recorder, list[str]], content_type: str, body: bytes
) -> None:
    served, runner, _ = gateway
    event = send(served, runner, content_type, body)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == body


@pytest.mark.parametrize("content_type", ["application/json", "application/xml"])
def test_other_bodies_reach_the_function_as_text(
    gateway: tuple[Gateway, Recorder, list[str]], content_type: str
) -> None:
    served, runner, _ = gateway
    body = b'{"instances": ["aGVsbG8="]}'
    event = send(served, runner, content_type, body)
    assert event["isBase64Encoded"] is False
    assert event["body"] == body.decode()
