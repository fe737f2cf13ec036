"""Recorded API Gateway events (tests/events/*.json), changed only where a test needs it."""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote_plus

EVENTS = Path(__file__).parent / "events"
Version = Literal["v1", "v2"]
FILES = {"v1": "apigateway-aws-proxy.json", "v2": "apigateway-http-api-proxy.json"}


@cache
def _recorded(version: Version) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / FILES[version]).read_text())
    return data


def api_event(
    version: Version,
    method: str = "POST",
    path: str = "/models/iris/predict",
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    *,
    base64_body: bool = False,
) -> dict[str, Any]:
    """A real API Gateway proxy event of either version, with this request's method/path/headers/body.

    ``headers=None`` keeps the recorded headers plus ``content-type: application/json``.
    """
    event = copy.deepcopy(_recorded(version))
    if headers is None:
        headers = {**event.get("headers", {}), "content-type": "application/json"}
    raw = body.encode() if isinstance(body, str) else body
    if raw is None:
        event["body"] = None
        event["isBase64Encoded"] = False
    elif base64_body:
        event["body"] = base64.b64encode(raw).decode()
        event["isBase64Encoded"] = True
    else:
        event["body"] = raw.decode()
        event["isBase64Encoded"] = False
    if version == "v1":
        # The kit's model routes are literal resources (/models/iris/predict): API Gateway sends the route
        # as ``resource`` and no path parameters (tests/template_events.py builds any route from a template).
        event["resource"] = event["requestContext"]["resourcePath"] = path
        event["pathParameters"] = None
        event["httpMethod"] = method
        event["path"] = path
        event["requestContext"]["httpMethod"] = method
        event["requestContext"]["path"] = f"/{event['requestContext']['stage']}{path}"
        event["headers"] = headers
        event["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
    else:
        event["rawPath"] = path
        event["requestContext"]["http"]["method"] = method
        event["requestContext"]["http"]["path"] = path
        event["routeKey"] = event["requestContext"]["routeKey"] = "$default"
        # HTTP APIs deliver header names in lower case.
        event["headers"] = {k.lower(): v for k, v in headers.items()}
    return event


def response_body(response: dict[str, Any]) -> bytes:
    body = response.get("body") or ""
    return base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()


def response_json(response: dict[str, Any]) -> Any:
    return json.loads(response_body(response))


@dataclass
class FakeLambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str = "mdk-test-iris"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:mdk-test-iris:live"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    function_version: str = "1"
    log_group_name: str = "/aws/lambda/mdk-test-iris"
    log_stream_name: str = "2026/11/29/[1]abcdef"
    client_context: Any = None
    identity: Any = None
    remaining_ms: int = 10_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@cache
def _recorded_file(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return data


def s3_object_created(
    bucket: str, key: str, *, version_id: str | None, sequencer: str, size: int, etag: str = "0"
) -> dict[str, Any]:
    """EventBridge's "Object Created" for one object (the key URL-encoded, as S3 sends it)."""
    event = copy.deepcopy(_recorded_file("s3-object-created.json"))
    event["resources"] = [f"arn:aws:s3:::{bucket}"]
    event["detail"]["bucket"]["name"] = bucket
    obj = event["detail"]["object"]
    obj.update(key=quote_plus(key, safe="/"), size=size, etag=etag, sequencer=sequencer)
    if version_id is None:
        del obj["version-id"]
    else:
        obj["version-id"] = version_id
    return event


def transform_state_change(
    job_name: str, status: str, *, output_path: str, failure_reason: str | None = None
) -> dict[str, Any]:
    """EventBridge's "SageMaker Transform Job State Change" for one of the kit's jobs."""
    event = copy.deepcopy(_recorded_file("sagemaker-transform-job-state-change.json"))
    arn = f"arn:aws:sagemaker:us-east-1:123456789012:transform-job/{job_name}"
    event["resources"] = [arn]
    detail = event["detail"]
    detail.update(TransformJobName=job_name, TransformJobArn=arn, TransformJobStatus=status)
    detail["TransformOutput"]["S3OutputPath"] = output_path
    if failure_reason is not None:
        detail["FailureReason"] = failure_reason
    return event
