"""Lambda entry point of a model function: ``lambda_handlers.inference.handler``.

The function serves one model (baked into the image at ``$MDK_MODEL_DIR``) behind API Gateway,
REST (v1) or HTTP API (v2) events:

* ``POST /predict``, ``GET /metadata``, ``GET /health`` (also under ``/models/<name>/...``): the route
  table, :mod:`mdk_runtime.routes`
* ``GET /docs`` and ``GET /openapi.json``, and the error for any other path.

All of them are routes of one FastAPI app (:mod:`lambda_handlers.api`), which the local server runs
as is.  In Lambda, the three model routes are answered by calling the same
:class:`~mdk_runtime.service.InferenceService` methods the FastAPI routes call, without the ASGI
round trip: FastAPI + Mangum add ~150 us per request and ~230 ms to every cold start (imports),
against ~10 us and nothing here (``make bench`` measures both).  The app, wrapped by
``Mangum(app, lifespan="off")``, is built once per sandbox the first time another path is asked
for.  ``tests/handlers`` checks that both paths give the same response to the same event.
"""

from __future__ import annotations

import time

_MODULE_STARTED = time.perf_counter()  # before the imports below: InitDuration counts them

import logging  # noqa: E402
import os  # noqa: E402
from collections.abc import Callable  # noqa: E402
from functools import cache  # noqa: E402
from typing import Any  # noqa: E402

from aws_lambda_powertools import Logger  # noqa: E402

from lambda_handlers import shadow  # noqa: E402
from lambda_handlers.http import (  # noqa: E402
    LAMBDA_RESPONSE_LIMIT,
    oversized,
    read_event,
    to_response,
    wrong_method,
)
from mdk_runtime import emf, routes, telemetry  # noqa: E402
from mdk_runtime.errors import MalformedRequest, MdkError  # noqa: E402
from mdk_runtime.service import (  # noqa: E402
    InferenceService,
    Reply,
    Settings,
    error_reply,
    response_too_large,
)

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", telemetry.SERVICE))
# The documents Powertools' Metrics wrote, from templates (mdk_runtime.emf: ~100 us less per request).
metrics = emf.Emitter(
    namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", telemetry.NAMESPACE),
    service=os.environ.get("POWERTOOLS_SERVICE_NAME", telemetry.SERVICE),
)


@cache
def get_service() -> InferenceService:
    """The model service of this sandbox, loaded once (in the init phase when run by Lambda)."""
    try:
        service = InferenceService.load(Settings.from_env())
    except MdkError as exc:  # a bad setting: answer 503 with the reason rather than crash-loop
        logger.error("cannot configure the model service", extra={"error": exc.message})
        service = InferenceService(None, load_error=exc)
    metrics.set_default_dimensions(
        **{telemetry.DIM_MODEL: service.name, telemetry.DIM_VERSION: service.version}
    )
    _init_pending.append((time.perf_counter() - _MODULE_STARTED) * 1e3)
    return service


# The init duration, reported with the first invocation (metrics are flushed per invocation).
_init_pending: list[float] = []


@cache
def asgi_handler(service: InferenceService) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The service's FastAPI app behind Mangum, built on first use (docs, OpenAPI, unknown paths)."""
    from mangum import Mangum

    from lambda_handlers.api import create_app

    handler: Callable[[dict[str, Any], Any], dict[str, Any]] = Mangum(create_app(service), lifespan="off")
    return handler


#: API Gateway's integration timeout: past it the caller has a 504 and the answer is wasted.
API_GATEWAY_TIMEOUT_S = 29.0


def request_deadline(context: Any, now: float | None = None) -> float:
    """When a prediction must stop (``time.monotonic()``): the sooner of the function's remaining time
    and API Gateway's 29 s, less a margin (10 %, 0.1-1 s) to encode, log and answer the 504."""
    now = time.monotonic() if now is None else now
    budget = API_GATEWAY_TIMEOUT_S
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        budget = min(budget, remaining() / 1000)
    return now + budget - min(1.0, max(0.1, budget * 0.1))


def dispatch(
    service: InferenceService, event: dict[str, Any], context: Any = None
) -> tuple[Reply | None, bool]:
    """Answer a model route directly; ``(None, v2)`` means "not a model route, ask the app"."""
    try:
        request = read_event(event)
    except (KeyError, TypeError, AttributeError):
        return error_reply(MalformedRequest("expected an API Gateway proxy event (REST or HTTP API)")), False
    action = routes.match(request.path, service.spec.name if service.spec is not None else None)
    if action is None:
        return None, request.v2
    if request.method != routes.METHODS[action]:
        return error_reply(wrong_method(request.method, request.path, action)), request.v2
    if action == "predict":
        try:
            body = request.body()
        except MdkError as exc:
            return error_reply(exc), request.v2
        reply = service.predict(
            body, request.header("content-type"), request.header("accept"), deadline=request_deadline(context)
        )
        return reply, request.v2
    return (service.health() if action == "health" else service.metadata()), request.v2


def _record(reply: Reply, started: float, request_id: str) -> None:
    """Metrics of one request: a served prediction's latency and size, or the error by kind and code.

    Request counts come from the sample counts (Latency for predictions, the error metrics for
    failures); health and metadata calls emit nothing beyond Lambda's own metrics.
    """
    if reply.status == 200:
        if reply.instances:
            metrics.served((time.perf_counter() - started) * 1e3, reply.instances)
        return
    code = reply.error_code or "unknown"
    kind = telemetry.SERVER_ERRORS if reply.status >= 500 else telemetry.CLIENT_ERRORS
    metrics.add(kind, emf.COUNT, 1)
    metrics.single(
        telemetry.ERRORS_BY_CODE,
        emf.COUNT,
        1,
        {**metrics.default_dimensions, telemetry.DIM_ERROR_CODE: code},
    )
    # The code and message only: messages never carry request data, and bodies are never logged.
    message = reply.error.message if reply.error is not None else ""
    if reply.status >= 500:
        level = logger.error
    elif reply.error is not None and reply.error.log_level >= logging.WARNING:
        level = logger.warning  # e.g. values the model refused: a client's, but worth a look
    else:
        level = logger.info
    level(
        "request rejected",
        extra={"status": reply.status, "code": code, "detail": message, "request_id": request_id},
    )


def handler(
    event: dict[str, Any], context: Any, *, service: InferenceService | None = None
) -> dict[str, Any]:
    """The function's entry point: what Powertools' ``log_metrics(capture_cold_start_metric=True)`` did
    around :func:`serve`: the cold-start document after the first invocation that returns, and the
    invocation's metrics flushed whatever happens (a served prediction's are written as it is recorded)."""
    try:
        response = serve(event, context, service)
        if metrics.cold:
            metrics.cold_start(context)
    finally:
        metrics.flush()
    return response


def serve(event: dict[str, Any], context: Any, service: InferenceService | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    service = service or get_service()
    if _init_pending:
        metrics.add(telemetry.INIT_DURATION, emf.MILLISECONDS, _init_pending.pop())
    if shadow.EVENT_KEY in event:  # a request the live version mirrored to this candidate
        return shadow.handle(service, event)
    reply, v2 = dispatch(service, event, context)
    if reply is None:
        return asgi_handler(service)(event, context)
    response = to_response(reply, v2=v2)
    size = oversized(response)
    if size is not None:  # Lambda would fail the invocation: a 502 for the caller, an error metric
        reply = error_reply(
            response_too_large(
                size, LAMBDA_RESPONSE_LIMIT, "a synchronous Lambda response", reply.content_type
            )
        )
        response = to_response(reply, v2=v2)
    _record(reply, started, getattr(context, "aws_request_id", ""))
    if reply.instances and os.environ.get(shadow.PARAMETER_ENV):
        request = read_event(event)
        live_ms = (time.perf_counter() - started) * 1e3
        shadow.offer(service, request.body(), request.header("content-type"), reply, live_ms)
    return response


def _configure_logging() -> None:
    """Format the runtime's own log records (``mdk_runtime.*``) as the function's JSON logs."""
    from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

    copy_config_to_registered_loggers(source_logger=logger, include={"mdk_runtime"})


_configure_logging()
if os.environ.get("AWS_LAMBDA_RUNTIME_API"):  # running under a Lambda runtime: load in the init phase
    get_service()
