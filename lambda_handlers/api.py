"""The model's HTTP API as a FastAPI app: what the local server runs and what Lambda falls back to.

Routes only translate HTTP to :class:`~mdk_runtime.service.InferenceService` calls (async routes
taking the raw ``Request``: no pydantic body parsing, no thread-pool hop).  The OpenAPI document
describes the real request and response bodies, generated from the model's signature.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from lambda_handlers.http import unknown_route, wrong_method
from mdk_runtime import routes
from mdk_runtime.errors import MalformedRequest, MdkError
from mdk_runtime.media import JSON, NPY
from mdk_runtime.openapi import (
    ERROR_SCHEMA,
    processed_request_content,
    processed_response_schema,
    request_schema,
    response_schema,
)
from mdk_runtime.service import InferenceService, Reply, error_reply


def _respond(reply: Reply) -> Response:
    return Response(content=reply.body, status_code=reply.status, media_type=reply.content_type)


def _error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"description": "error", "content": {JSON: {"schema": ERROR_SCHEMA}}} for code in codes}


def create_app(service: InferenceService) -> FastAPI:
    """One app per model; routes at ``/<action>`` and ``/models/<name>/<action>``, as the route table
    (:mod:`mdk_runtime.routes`) has them."""
    name = service.name
    app = FastAPI(
        title=f"mdk model: {name}",
        version=service.version,
        description="Predictions from an ONNX model served by mdk (the Model Deployment Kit).",
        redoc_url=None,
    )
    predict_body: dict[str, Any] = {"type": "object"}
    predict_ok: dict[str, Any] = {"type": "object"}
    request_content: dict[str, Any] | None = None
    if service.model is not None:
        predict_body = request_schema(service.model.signature)
        predict_ok = response_schema(service.model.signature)
    if service.processor is not None:
        predict_ok = processed_response_schema()
        if service.processor.takes_input:
            request_content = processed_request_content(service.processor)

    router = APIRouter()

    @router.api_route(
        f"/{routes.PREDICT.action}",
        methods=[routes.PREDICT.method],
        summary="Predict",
        response_class=Response,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": request_content
                or {
                    JSON: {"schema": predict_body},
                    NPY: {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
        responses={
            200: {"description": "predictions", "content": {JSON: {"schema": predict_ok}, NPY: {}}},
            **_error_responses(400, 406, 413, 415, 422, 500, 503),
        },
    )
    async def predict(request: Request) -> Response:
        body = await request.body()
        headers = request.headers
        return _respond(service.predict(body, headers.get("content-type"), headers.get("accept")))

    @router.api_route(
        f"/{routes.METADATA.action}",
        methods=[routes.METADATA.method],
        summary="Model metadata: name, version, artifact hash, schema",
        response_class=Response,
        responses={200: {"description": "metadata", "content": {JSON: {}}}, **_error_responses(503)},
    )
    async def metadata() -> Response:
        return _respond(service.metadata())

    @router.api_route(
        f"/{routes.HEALTH.action}",
        methods=[routes.HEALTH.method],
        summary="200 once the model is loaded and warmed up, 503 otherwise",
        response_class=Response,
        responses={200: {"description": "ready", "content": {JSON: {}}}, **_error_responses(503)},
    )
    async def health() -> Response:
        return _respond(service.health())

    app.include_router(router)
    app.include_router(router, prefix=routes.model_prefix(name))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        method, path = request.method, request.url.path
        action = routes.match(path, name)
        error: MdkError
        if exc.status_code == 405 and action is not None:
            error = wrong_method(method, path, action)
        elif exc.status_code in (404, 405):
            error = unknown_route(method, path, name)
        else:
            detail = str(exc.detail)[:200]
            error = MalformedRequest(detail) if exc.status_code < 500 else MdkError(detail)
        return _respond(error_reply(error))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        return _respond(error_reply(exc))

    return app
