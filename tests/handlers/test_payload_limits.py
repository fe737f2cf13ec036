"""Answers over Lambda's 6 MB synchronous response limit: the function sizes its serialized result and
answers 413 ``response_too_large`` with what to do instead, rather than a result Lambda would refuse."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pytest
from awslambdaric.lambda_runtime_marshaller import to_json

from lambda_handlers import inference
from lambda_handlers.http import LAMBDA_RESPONSE_LIMIT, invocation_size, oversized, to_response
from mdk_runtime.service import InferenceService, Reply
from tests.conftest import ServiceFactory
from tests.events import FakeLambdaContext, Version, response_body, response_json
from tests.handlers.conftest import GatewayEvent
from tests.handlers.test_inference_handler import emf_documents, metric_names
from tests.value_models import expand_to_client_shape


@pytest.fixture
def expander(service: ServiceFactory) -> InferenceService:
    svc = service(expand_to_client_shape(), name="expander", batched=False)
    assert svc.model is not None, svc.load_error
    return svc


def call(service: InferenceService, event: dict[str, Any], context: FakeLambdaContext) -> dict[str, Any]:
    response: dict[str, Any] = inference.handler(event, context, service=service)
    return response


def test_the_limit_is_lambdas_six_mebibytes() -> None:
    assert LAMBDA_RESPONSE_LIMIT == 6_291_456


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("accept", ["application/json", "application/x-npy"])
def test_a_small_request_for_a_huge_answer_is_a_413_with_a_hint(
    version: Version,
    accept: str,
    expander: InferenceService,
    lambda_context: FakeLambdaContext,
    capfd: pytest.CaptureFixture[str],
    gateway_event: GatewayEvent,
) -> None:
    """34 bytes ask for 2,000,000 floats: ~8 MB of JSON, or 8 MB of .npy that base64 makes ~10.7 MB."""
    body = json.dumps({"inputs": {"shape": [2000, 1000]}})
    headers = {"content-type": "application/json", "accept": accept}
    capfd.readouterr()
    response = call(
        expander,
        gateway_event(version, path="/models/expander/predict", body=body, headers=headers),
        lambda_context,
    )
    assert response["statusCode"] == 413
    assert len(to_json(response).encode()) <= LAMBDA_RESPONSE_LIMIT
    error = response_json(response)["error"]
    assert error["code"] == "response_too_large"
    assert "6,291,456-byte limit" in error["message"]
    assert "fewer instances" in error["message"]
    assert "batch transform" in error["message"]
    assert ("application/x-npy" in error["message"]) == (accept == "application/json")
    docs = emf_documents(capfd.readouterr().out)
    names = set().union(*(metric_names(d) for d in docs))
    assert "ClientErrors" in names
    assert "ServerErrors" not in names
    assert next(d for d in docs if "ErrorsByCode" in metric_names(d))["ErrorCode"] == "response_too_large"


def test_an_answer_within_the_limit_is_sent(
    expander: InferenceService, lambda_context: FakeLambdaContext, gateway_event: GatewayEvent
) -> None:
    # 500,000 floats as .npy: 2 MB, 2.7 MB in base64; as JSON ~2 MB.
    for accept in ("application/json", "application/x-npy"):
        body = json.dumps({"inputs": {"shape": [500, 1000]}})
        headers = {"content-type": "application/json", "accept": accept}
        response = call(
            expander,
            gateway_event("v1", path="/models/expander/predict", body=body, headers=headers),
            lambda_context,
        )
        assert response["statusCode"] == 200
        assert oversized(response) is None
        assert len(to_json(response).encode()) <= LAMBDA_RESPONSE_LIMIT
    assert np.load(__import__("io").BytesIO(response_body(response))).shape == (500, 1000)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (
            b'{"predictions":[{"label":"a \\"quoted\\" \\\\ label","p":[0.5,1e-7]}]}' * 1000,
            "application/json",
        ),
        ('{"label":"caf\u00e9 \u732b \U0001f600"}'.encode() * 1000, "application/json"),
        (bytes(range(256)) * 1000, "application/x-npy"),
    ],
    ids=["ascii-with-escapes", "non-ascii", "binary"],
)
@pytest.mark.parametrize("v2", [False, True])
@pytest.mark.parametrize("runtime", ["AWS_Lambda_python3.11", "AWS_Lambda_python3.12"])
def test_the_size_is_what_the_runtime_serializes(
    body: bytes, content_type: str, v2: bool, runtime: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exact where the runtime escapes non-ASCII (before Python 3.12), an upper bound where it does not."""
    monkeypatch.setitem(os.environ, "AWS_EXECUTION_ENV", runtime)
    response = to_response(Reply(200, body, content_type), v2=v2)
    serialized = len(to_json(response).encode())
    size = invocation_size(response)
    if runtime.endswith("3.11") or body.isascii():
        assert size == serialized
    else:
        assert serialized <= size
    assert oversized(response, limit=size) is None
    assert oversized(response, limit=size - 1) == size
