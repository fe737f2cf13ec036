"""The prediction store's route with record ids a URL must percent-encode: a REST API hands the function the
path parameter as the client sent it (``a%20b%3Ac``), which the function decodes before reading the store;
the event comes from the synthesized stack's API, as the local gateway sends it (the URL's path as is)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast
from urllib.parse import quote

import boto3
import pytest
from moto import mock_aws

from lambda_handlers import predictions
from tests.batch.conftest import create_store_table
from tests.events import FakeLambdaContext, response_json
from tests.infra.conftest import synth_config, write_config
from tests.template_events import rest_event

CONFIG = """project: ids
models:
  - name: stored
    artifact: MODELS/iris/v1/model.onnx
    runtime: lambda
    batch: {id_field: id, store: {ttl_days: 30}}
"""
IDS = ["a b:c", "caf\u00e9 #1?", "x+y", "100%"]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("store-synth")
    return synth_config(write_config(directory, CONFIG), directory / "out", with_nag=False).merged_json


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("MDK_STORE_TABLE", "predictions")
    with mock_aws():
        create_store_table(boto3.client("dynamodb", region_name="us-east-1"), "predictions")
        table = boto3.resource("dynamodb", region_name="us-east-1").Table("predictions")
        for record_id in IDS:
            table.put_item(
                Item={"model": "stored", "id": record_id, "prediction": json.dumps({"id": record_id})}
            )
        predictions.reset()
        try:
            yield table
        finally:
            predictions.reset()


def get(event: dict[str, Any]) -> tuple[int, Any]:
    response = predictions.handler(event, cast(Any, FakeLambdaContext()))
    return response["statusCode"], response_json(response)


@pytest.mark.parametrize("record_id", IDS)
def test_a_percent_encoded_id_is_read_decoded(template: dict[str, Any], store: Any, record_id: str) -> None:
    path = f"/models/stored/predictions/{quote(record_id, safe='')}"
    event = rest_event(template, "GET", path)
    assert event["pathParameters"] == {"id": quote(record_id, safe="")}  # as sent: still encoded
    status, body = get(event)
    assert status == 200, body
    assert (body["id"], body["prediction"]) == (record_id, {"id": record_id})


def test_an_id_that_is_not_utf8_once_decoded_is_a_400(template: dict[str, Any], store: Any) -> None:
    status, body = get(rest_event(template, "GET", "/models/stored/predictions/a%FF"))
    assert status == 400
    assert body["error"]["code"] == "malformed_request"
    assert body["error"]["field"] == "id"
