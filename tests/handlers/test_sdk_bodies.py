"""The SageMaker Python SDK's default JSON (a bare array, what ``predictor.predict(X)`` sends) on the
Lambda function and on ``mdk serve``'s app: read as ``instances`` for a single-input model."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from lambda_handlers import inference
from lambda_handlers.api import create_app
from mdk_runtime.service import InferenceService
from tests import onnx_models
from tests.conftest import ServiceFactory
from tests.events import FakeLambdaContext, Version, response_json
from tests.handlers.conftest import GatewayEvent

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.3, 3.4, 5.6, 2.4]]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_the_lambda_function_reads_a_bare_list_as_instances(
    version: Version,
    iris_service: InferenceService,
    lambda_context: FakeLambdaContext,
    gateway_event: GatewayEvent,
) -> None:
    bare: dict[str, Any] = inference.handler(
        gateway_event(version, body=json.dumps(ROWS)), lambda_context, service=iris_service
    )
    wrapped: dict[str, Any] = inference.handler(
        gateway_event(version, body=json.dumps({"instances": ROWS})), lambda_context, service=iris_service
    )
    assert bare["statusCode"] == 200, bare["body"]
    assert bare["body"] == wrapped["body"]
    assert [p["label"] for p in response_json(bare)["predictions"]] == ["setosa", "virginica"]


def test_the_lambda_function_refuses_a_bare_list_for_several_inputs(
    service: ServiceFactory, lambda_context: FakeLambdaContext, gateway_event: GatewayEvent
) -> None:
    pair = service(onnx_models.two_inputs(), name="pair")
    body = json.dumps([{"a": [1, 2, 3], "b": [4, 5, 6]}])
    response: dict[str, Any] = inference.handler(
        gateway_event("v1", path="/models/pair/predict", body=body), lambda_context, service=pair
    )
    assert response["statusCode"] == 400
    assert '{"inputs": {name: tensor, ...}}' in response_json(response)["error"]["message"]


def test_mdk_serve_reads_a_bare_list_as_instances(iris_service: InferenceService) -> None:
    # `mdk serve` runs this app (lambda_handlers.api.create_app) under uvicorn.
    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(iris_service))
        async with httpx.AsyncClient(transport=transport, base_url="http://mdk.local") as client:
            return await client.post(
                "/models/iris/predict", content=json.dumps(ROWS), headers={"content-type": "application/json"}
            )

    bare = asyncio.get_event_loop().run_until_complete(post())
    assert bare.status_code == 200, bare.text
    assert [p["label"] for p in bare.json()["predictions"]] == ["setosa", "virginica"]
