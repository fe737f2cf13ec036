"""Every route the stack defines reaches a handler that accepts the event API Gateway sends for it.

The events are built from the synthesized template (tests/template_events.py), never by hand: the
prediction store's handler once read a ``name`` path parameter that its route never had.
"""

from __future__ import annotations

import json
from typing import Any, cast

import boto3
import pytest
from moto import mock_aws

from lambda_handlers import predictions
from mdk_runtime.routes import METHODS
from mdk_runtime.routes import match as match_route
from tests.batch.conftest import create_store_table
from tests.events import FakeLambdaContext, response_json
from tests.infra.conftest import Synth, resources
from tests.infra.layout import imported
from tests.template_events import NoRoute, rest_event, routes


def _integrated(route_integration: dict[str, Any]) -> str:
    return json.dumps(route_integration.get("Uri", ""))


def test_every_model_route_is_one_the_inference_handler_serves(synth_variant: Synth) -> None:
    template = synth_variant.merged_json
    served = 0
    for route in routes(template):
        parts = [p for p in route.path.split("/") if p]
        if len(parts) != 3 or parts[0] != "models" or route.verb == "OPTIONS":
            continue
        model, action = parts[1], parts[2]
        event = rest_event(
            template,
            route.verb,
            f"/models/{model}/{action}",
            body='{"instances": [[1, 2, 3, 4]]}' if route.verb == "POST" else None,
        )
        assert event["resource"] == route.path
        assert event["pathParameters"] is None
        assert match_route(event["path"], model) == action, route
        assert METHODS[action] == route.verb
        assert route.integration["Type"] == "AWS_PROXY"
        served += 1
    assert served == 3 * len(synth_variant.config.models)  # predict, metadata, health of each model


def test_the_prediction_store_route_answers_with_the_event_its_stack_sends(
    synth_variant: Synth, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = synth_variant.merged_json
    [(function_id, function)] = [
        (k, v["Properties"])
        for k, v in resources(synth_variant.shared_json, "AWS::Lambda::Function").items()
        if k.startswith("BatchPredictions")
    ]
    [store_route] = [r for r in routes(template) if r.path.endswith("/predictions/{id}")]
    # the model stack's route calls the shared stack's function, by the ARN that stack exports
    arn = imported(synth_variant, "predictions-function-arn", {"Fn::GetAtt": [function_id, "Arn"]})
    assert json.dumps(arn) in _integrated(store_route.integration)
    assert store_route.path == "/models/iris-fast/predictions/{id}"
    event = rest_event(template, "GET", "/models/iris-fast/predictions/customer-42")
    assert event["pathParameters"] == {"id": "customer-42"}  # the only parameter API Gateway sends
    with pytest.raises(NoRoute):  # a model without a store has no such route at the gateway
        rest_event(template, "GET", "/models/iris-big-bang/predictions/customer-42")

    assert set(function["Environment"]["Variables"]) >= {"MDK_STORE_TABLE"}  # and no list of models
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("MDK_STORE_TABLE", "predictions")
    with mock_aws():
        create_store_table(boto3.client("dynamodb", region_name="us-east-1"), "predictions")
        table = boto3.resource("dynamodb", region_name="us-east-1").Table("predictions")
        table.put_item(
            Item={
                "model": "iris-fast",
                "id": "customer-42",
                "prediction": json.dumps({"label": "setosa"}),
                "model_version": "3",
                "run_id": "r1",
                "stored_at": "2026-12-01T00:00:00Z",
            }
        )
        predictions.reset()
        try:
            response = predictions.handler(event, cast(Any, FakeLambdaContext()))
            missing = predictions.handler(
                rest_event(template, "GET", "/models/iris-fast/predictions/nobody"),
                cast(Any, FakeLambdaContext()),
            )
        finally:
            predictions.reset()
    assert response["statusCode"] == 200, response
    assert response_json(response)["prediction"] == {"label": "setosa"}
    assert response_json(response)["model"] == "iris-fast"
    assert missing["statusCode"] == 404
    assert response_json(missing)["error"]["message"].startswith("no stored prediction for this id")
