"""Fuzzing the deployed API with schemathesis, from the API's own OpenAPI document.

The document is the one the Lambda function's app publishes for each model (request schema generated
from the ONNX graph); its ``/models/<name>/…`` operations are called through the local cloud's gateway,
SigV4-signed, so each case crosses API Gateway's emulation, the alias, the function under the RIE (iris)
or the SageMaker integration and the serving container (digits). Checks: never a server error (5xx) and
every refusal is the kit's error shape with a message. ``MDK_FUZZ_EXAMPLES`` sets the examples per
operation (``make reliability`` raises it).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import requests
import schemathesis
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, settings

from lambda_handlers.api import create_app
from mdk.bundle import write_bundle
from mdk.config import load_config
from mdk.local.cloud.cloud import ACCESS_KEY, SECRET_KEY, LocalCloud
from mdk_runtime.service import InferenceService, Settings
from tests.cloud.conftest import REPO

EXAMPLES = int(os.environ.get("MDK_FUZZ_EXAMPLES", "25"))


def _document() -> dict[str, Any]:
    """Every model's published operations under /models/<name>/, as API Gateway exposes them."""
    paths: dict[str, Any] = {}
    document: dict[str, Any] = {}
    for model in load_config(REPO / "models.yaml").models:
        bundle = write_bundle(model, REPO / "build" / "fuzz" / model.name)
        doc = create_app(InferenceService.load(Settings(model_dir=bundle))).openapi()
        prefix = f"/models/{model.name}/"
        for path, operations in doc["paths"].items():
            if path.startswith(prefix) and (model.runtime == "lambda" or path.endswith("/predict")):
                paths[path] = operations
        document = {**doc, "components": {**document.get("components", {}), **doc.get("components", {})}}
    document["paths"] = paths
    document["info"] = {"title": "mdk API (deployed routes)", "version": "1"}
    return document


@schemathesis.serializer("application/x-npy")
def _npy(_context: Any, value: Any) -> bytes:
    """The schema says binary: whatever bytes were generated go as the body (mostly not a valid .npy)."""
    return value if isinstance(value, bytes) else str(value).encode()


schema = schemathesis.openapi.from_dict(_document())


class SigV4(requests.auth.AuthBase):
    """Sign each request as `mdk predict` and curl --aws-sigv4 do, with the local credentials."""

    def __call__(self, prepared: requests.PreparedRequest) -> requests.PreparedRequest:
        body = prepared.body if isinstance(prepared.body, bytes) else str(prepared.body or "").encode()
        request = AWSRequest(
            method=prepared.method, url=prepared.url, data=body, headers=dict(prepared.headers)
        )
        SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "execute-api", "us-east-1").add_auth(request)
        prepared.headers.update(dict(request.headers))
        return prepared


@pytest.fixture(scope="module")
def base_url(cloud: LocalCloud) -> str:
    return cloud.gateway.url.rstrip("/")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_case_is_a_server_error_and_every_refusal_says_why(case: Any, base_url: str) -> None:
    response = case.call(base_url=base_url, auth=SigV4(), timeout=60)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:500]}"
    )
    if response.status_code >= 400:
        body = json.loads(response.text)
        assert body["error"]["message"], body
        assert body["error"]["code"], body


def test_the_fuzzed_document_covers_every_deployed_route() -> None:
    operations = {(path, method) for path, item in schema.raw_schema["paths"].items() for method in item}
    assert operations == {
        ("/models/iris/predict", "post"),
        ("/models/iris/metadata", "get"),
        ("/models/iris/health", "get"),
        ("/models/digits/predict", "post"),
    }
