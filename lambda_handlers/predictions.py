"""``GET /models/<name>/predictions/{id}``: a prediction a batch run stored, by the record's id.

API Gateway authenticates the call as it does every model route; this function reads one item of the
prediction store and answers in the API's shapes (errors as ``{"error": {"code", "message"}}``).

Each model's route is its own literal resource (``/models/iris/predictions/{id}``), so that each keeps
the model's own method auth: ``id`` is the only path parameter, and the model is read from the event's
``resource`` (the route's template path, which API Gateway sends as defined, not from the client's URL).

The function serves any model's items and lists no model: the route is the gate. Only the stack of a
model with ``batch.store`` has the route (and the permission for its API to invoke this function), and
only such a model's runs write items; the model comes from the route's template path, never from the
client. So the shared stack that deploys the function names no model (a model's store is its own
stack's change), and a request costs no look-up of the model's settings: an item of a model whose store
was turned off stays unreachable once its route is gone, and expires with its TTL.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from mdk_runtime.errors import MalformedRequest, MdkError, RouteNotFound

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

logger = Logger(service="mdk-predictions")
MAX_ID_BYTES = 1024  # DynamoDB's limit for a sort key


@lru_cache(maxsize=1)
def _table() -> Table:
    return cast("Table", boto3.resource("dynamodb").Table(os.environ["MDK_STORE_TABLE"]))


def reset() -> None:
    _table.cache_clear()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        return _reply(200, lookup(event))
    except MdkError as exc:
        return _reply(exc.status, exc.to_body())


def lookup(event: dict[str, Any]) -> dict[str, Any]:
    if event.get("httpMethod", "GET") != "GET":
        raise MalformedRequest("only GET reads stored predictions")
    params = event.get("pathParameters") or {}
    model, record_id = _model_of(event.get("resource") or ""), params.get("id")
    if not model:
        raise RouteNotFound("this route serves no stored predictions", field="name")
    try:
        record_id = _decoded(record_id or "")
    except UnicodeDecodeError:
        raise MalformedRequest("expected a record id in UTF-8, percent-encoded", field="id") from None
    if not record_id or len(record_id.encode()) > MAX_ID_BYTES:
        raise MalformedRequest(f"expected a record id of 1 to {MAX_ID_BYTES} bytes", field="id")
    item = _table().get_item(Key={"model": model, "id": record_id}).get("Item")
    if item is None:
        raise RouteNotFound("no stored prediction for this id (not scored yet, or expired)", field="id")
    logger.info("stored prediction served", extra={"model": model, "run_id": item.get("run_id")})
    return {
        "model": model,
        "id": item["id"],
        "prediction": json.loads(cast(str, item["prediction"])),  # stored as JSON text (batch_status)
        "model_version": item.get("model_version"),
        "run_id": item.get("run_id"),
        "stored_at": item.get("stored_at"),
    }


def _decoded(value: str) -> str:
    """The record id as the client meant it. A REST API (this function's only caller: the route is its
    resource) hands the function the path and its parameters as the client sent them, still
    percent-encoded (``/predictions/a%20b`` arrives as ``a%20b``: serverless/serverless#5037,
    https://github.com/serverless/serverless/issues/5037; the event's fields are in "Input format of a
    Lambda function for proxy integration",
    https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html).
    ``+`` is a plus in a path, never a space."""
    return unquote(value, errors="strict")


def _model_of(resource: str) -> str | None:
    """The model of a ``/models/<name>/predictions/{id}`` route (its template path, as the stack built it)."""
    parts = resource.split("/")
    if len(parts) == 5 and parts[1] == "models" and parts[3] == "predictions" and parts[4] == "{id}":
        return parts[2]
    return None


def _reply(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
        "body": json.dumps(body),
    }
