"""The kit's SageMaker serving container: SageMaker's contract on port 8080, with dynamic batching.

* ``GET /ping``: 200 once the model is loaded and its warm-up inference passed, 503 before (or with
  the reason, if loading failed). It answers from memory, well within SageMaker's 2 s.
* ``POST /invocations``: JSON (the Lambda API's request forms), JSON Lines and CSV (one record per
  line, one answer per line, a bad record answered by an error record on its line) and ``.npy``;
  the response type follows ``Accept`` (JSON, JSON Lines, CSV, ``.npy``), else the request's.
* ``GET /execution-parameters``: what batch transform should send (SageMaker asks before a job).
* ``GET /metadata``: the model's schema, as the Lambda function answers it.
* ``GET /stats``: what dynamic batching did (batches, rows, requests, mean rows per batch).

The same :class:`~mdk_runtime.service.InferenceService` as the Lambda function decodes, validates
and encodes, so both answer alike; here the decoded parts go through the dynamic batcher.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator, Mapping, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from mdk_runtime.codec import Feeds, dump_json
from mdk_runtime.errors import InputRejectedByModel, MdkError, ModelLoadError, ModelNotReady
from mdk_runtime.media import CSV, JSON, JSONL, NPY
from mdk_runtime.service import InferenceService, Reply, Settings, Work, error_reply, response_too_large
from sagemaker_endpoints.batching import DynamicBatcher

log = logging.getLogger("mdk_runtime.server")

FORMATS = (JSON, NPY, JSONL, CSV)
#: InvokeEndpoint's response limit: the API's response ``Body`` is at most 6,291,456 bytes ("InvokeEndpoint",
#: Amazon SageMaker Runtime API Reference, Response Elements, Body: "Length Constraints: Maximum length of
#: 6291456", https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpoint.html).
#: A larger answer is a failed invocation for the caller; the container answers a 413 saying what to do.
#: Batch transform has no such limit: SageMaker sets SAGEMAKER_BATCH=true in a transform job's container
#: (as its own serving containers read it), and there the limit is off.
INVOKE_ENDPOINT_RESPONSE_LIMIT = 6 * 1024 * 1024
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def _int(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ModelLoadError(f"{name}: expected an integer from {low} to {high}, got {raw!r}")
    return int(raw)


def _response_limit(environ: Mapping[str, str]) -> int | None:
    """``MDK_MAX_RESPONSE_BYTES`` (0: none), else none in a batch transform job, else InvokeEndpoint's."""
    explicit = _int(environ, "MDK_MAX_RESPONSE_BYTES", -1, 0, 2**40)
    if explicit >= 0:
        return explicit or None
    if environ.get("SAGEMAKER_BATCH", "").strip().lower() == "true":
        return None
    return INVOKE_ENDPOINT_RESPONSE_LIMIT


@dataclass(frozen=True)
class ServerSettings:
    """The container's environment, parsed once at start (errors name the variable)."""

    model: Settings
    providers: tuple[str, ...] = (CUDA, CPU)
    max_batch_size: int = 32
    max_batch_delay_ms: int = 2
    host: str = "0.0.0.0"  # noqa: S104 - inside the container SageMaker connects from outside it
    port: int = 8080
    max_payload_mb: int = 6
    max_concurrent_transforms: int = 1
    max_response_bytes: int | None = None  # None: no limit (from_env sets InvokeEndpoint's outside batch)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ServerSettings:
        device = environ.get("MDK_DEVICE", "gpu")
        if device not in ("gpu", "cpu"):
            raise ModelLoadError(f"MDK_DEVICE: expected 'gpu' or 'cpu', got {device[:20]!r}")
        default = f"{CUDA},{CPU}" if device == "gpu" else CPU
        providers = tuple(p.strip() for p in environ.get("MDK_PROVIDERS", default).split(",") if p.strip())
        if not providers:
            raise ModelLoadError("MDK_PROVIDERS: expected a comma-separated list of execution providers")
        body_limit = environ.get("MDK_MAX_BODY_BYTES", str(100 * 1024 * 1024 + 1024))
        model = Settings.from_env({**environ, "MDK_MAX_BODY_BYTES": body_limit})
        return cls(
            model=model,
            providers=providers,
            max_batch_size=_int(environ, "MDK_MAX_BATCH_SIZE", 32, 1, 65536),
            max_batch_delay_ms=_int(environ, "MDK_MAX_BATCH_DELAY_MS", 2, 0, 10_000),
            host=environ.get("MDK_HOST", "0.0.0.0"),  # noqa: S104 - see above
            port=_int(environ, "SAGEMAKER_BIND_TO_PORT", 8080, 1, 65535),
            max_payload_mb=_int(environ, "MDK_MAX_PAYLOAD_MB", 6, 1, 100),
            max_concurrent_transforms=_int(environ, "MDK_MAX_CONCURRENT_TRANSFORMS", 1, 1, 100),
            max_response_bytes=_response_limit(environ),
        )


class ModelServer:
    """Loads the model off the event loop, then serves it through the batcher."""

    def __init__(self, settings: ServerSettings, service: InferenceService | None = None) -> None:
        self.settings = settings
        self.service = service
        self.batcher: DynamicBatcher | None = None
        self._loading: asyncio.Task[None] | None = None
        self._loading_logged = False
        if service is not None:
            self._ready(service)

    def _ready(self, service: InferenceService) -> None:
        self.service = service
        # The model and everything loading made (onnx protos, numpy, the runtime's modules) are in the
        # oldest GC generation from now on, out of every later collection: under load a full collection
        # walking them was the p99 tail (23-41 ms at 32 connections on 2 cores, 4.5-5.2 ms with the freeze;
        # https://docs.python.org/3/library/gc.html#gc.freeze). Requests make little cyclic garbage, so the
        # thresholds stay the default ones.
        gc.collect()
        gc.freeze()
        if service.model is not None:
            model = service.model
            self.batcher = DynamicBatcher(
                model.run,
                max_rows=self.settings.max_batch_size,
                max_delay_ms=self.settings.max_batch_delay_ms,
                fixed_batch=model.signature.batch_size,
                enabled=model.signature.batched,
            )
            log.info(
                "serving",
                extra={
                    "model": service.name,
                    "version": service.version,
                    "providers": list(service.report.providers) if service.report else [],
                    "max_batch_size": self.batcher.max_rows,
                    "max_batch_delay_ms": self.settings.max_batch_delay_ms,
                },
            )

    async def start(self) -> None:
        if self.service is None and self._loading is None:
            self._loading = asyncio.get_running_loop().create_task(self._load())

    async def _load(self) -> None:
        settings = self.settings
        service = await asyncio.to_thread(
            InferenceService.load, settings.model, providers=list(settings.providers)
        )
        self._ready(service)

    async def stop(self) -> None:
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        if self.batcher is not None:
            await self.batcher.close()

    def ping(self) -> Reply:
        """503 while loading or after a failed load, without a log line each time: SageMaker pings every
        few seconds, and error_reply logs a 503 at ERROR with its stack. The load is logged once instead
        ("model is loading" at INFO, a failure once at ERROR with its reason, by InferenceService.load)."""
        service = self.service
        if service is None:
            return self._loading_reply()
        if service.load_error is not None:
            return error_reply(
                ModelNotReady(f"model is not ready: {service.load_error.message}"), logged=False
            )
        return service.health()

    def _loading_reply(self) -> Reply:
        if not self._loading_logged:
            self._loading_logged = True
            log.info("model is loading: /ping answers 503 until it is ready")
        return error_reply(ModelNotReady("model is loading"), logged=False)

    async def invocations(self, body: bytes, content_type: str | None, accept: str | None) -> Reply:
        service, batcher = self.service, self.batcher
        if service is None:
            return self._loading_reply()
        if batcher is None:  # the model failed to load: prepare() raises, and says why
            return self._invoke(service, body, content_type, accept)
        # Counted in flight until its rows are queued in the batcher (or it is answered): a batch waits
        # for it, and goes at once when no request is left on its way (see sagemaker_endpoints.batching).
        batcher.enter()
        try:
            work = service.prepare(body, content_type, accept, formats=FORMATS)
        except BaseException as exc:
            batcher.leave()
            if not isinstance(exc, Exception):
                raise
            return error_reply(exc)
        return await self._finish(service, batcher, work)

    @staticmethod
    def _invoke(
        service: InferenceService, body: bytes, content_type: str | None, accept: str | None
    ) -> Reply:
        try:
            service.prepare(body, content_type, accept, formats=FORMATS)
        except Exception as exc:  # noqa: BLE001 - the failure becomes the reply
            return error_reply(exc)
        return error_reply(ModelNotReady("model is not ready"))

    async def _finish(self, service: InferenceService, batcher: DynamicBatcher, work: Work) -> Reply:
        try:
            outputs = await self._run(work, batcher)
            reply = service.finish(work, outputs)
            limit = self.settings.max_response_bytes
            if limit is not None and len(reply.body) > limit:
                raise response_too_large(
                    len(reply.body), limit, "an InvokeEndpoint response", reply.content_type
                )
            return reply
        except MdkError as exc:
            return error_reply(exc)
        except Exception as exc:  # noqa: BLE001 - the one place unexpected errors become replies
            return error_reply(exc)

    @staticmethod
    async def _run(work: Work, batcher: DynamicBatcher) -> list[dict[str, Any]]:
        """The outputs of the work's parts. JSON Lines / CSV records: values the model refused fail only
        their own records (an error record on their line, as for a record that fails validation), so one
        bad record cannot fail a batch transform's whole mini-batch."""
        parts = work.parts
        if len(parts) == 1 and work.records is None:  # the usual request: no gather, no extra task
            coro = batcher.run(parts[0].feeds, parts[0].n)
            # Out of the count now: the batcher's worker runs no sooner than this coroutine suspends, and by
            # then run() (its first step is synchronous) has queued the rows.
            batcher.leave()
            return [await coro]
        runs = [batcher.run(b.feeds, b.n) for b in parts]
        # Tasks: their first steps (queueing the rows) are scheduled before the worker's wake-up is.
        futures = [asyncio.ensure_future(c) for c in runs]
        batcher.leave()
        results = await asyncio.gather(*futures, return_exceptions=True)
        records = work.records
        refused = [isinstance(r, InputRejectedByModel) for r in results]
        for result in results:
            if isinstance(result, BaseException) and (
                records is None or not isinstance(result, InputRejectedByModel)
            ):
                raise result
        if not any(refused):
            return [r for r in results if not isinstance(r, BaseException)]
        assert records is not None
        groups: list[tuple[list[int], Feeds]] = []
        outputs: list[dict[str, Any]] = []
        for (lines, part), result in zip(records.groups, results, strict=True):
            if not isinstance(result, BaseException):
                groups.append((lines, part))
                outputs.append(result)
                continue
            for row, line in enumerate(lines):  # the group's records one by one
                feeds = {name: value[row : row + 1] for name, value in part.feeds.items()}
                try:
                    out = await batcher.run(feeds, 1)
                except InputRejectedByModel as exc:
                    records.errors[line] = InputRejectedByModel(
                        f"line {line + 1}: {exc.message}", field=exc.field
                    )
                    continue
                groups.append(([line], Feeds(feeds, 1, "instances")))
                outputs.append(out)
        records.groups = groups
        work.parts = [part for _, part in groups]
        return outputs

    def execution_parameters(self) -> dict[str, Any]:
        return {
            "MaxConcurrentTransforms": self.settings.max_concurrent_transforms,
            "BatchStrategy": "MULTI_RECORD",
            "MaxPayloadInMB": self.settings.max_payload_mb,
        }


def _respond(reply: Reply) -> Response:
    return Response(content=reply.body, status_code=reply.status, media_type=reply.content_type)


class DirectInvocations:
    """ASGI: ``POST /invocations`` answered directly, everything else (ping, docs, lifespan) by FastAPI.

    The hot route skips FastAPI's routing and request objects (~150 µs a request here, as much as the
    rest of the server's work for a small model), calling the same :meth:`ModelServer.invocations` the
    FastAPI route calls; ``tests/sagemaker`` checks both answer alike.
    """

    def __init__(self, app: FastAPI, server: ModelServer) -> None:
        self.app = app
        self.server = server
        self.state = app.state

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/invocations" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        content_type = accept = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"accept":
                accept = value.decode("latin-1")
        reply = await self.server.invocations(b"".join(chunks), content_type, accept)
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [
                    (b"content-type", reply.content_type.encode()),
                    (b"content-length", str(len(reply.body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": reply.body})


def create_app(settings: ServerSettings, *, service: InferenceService | None = None) -> DirectInvocations:
    """The ASGI app; with ``service`` given (tests), no loading happens."""
    server = ModelServer(settings, service)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await server.start()
        yield
        await server.stop()  # after uvicorn finished in-flight requests (graceful SIGTERM)

    app = FastAPI(
        title="mdk SageMaker serving container",
        description="SageMaker's container contract for an ONNX model served by mdk.",
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.server = server

    @app.get("/ping", summary="200 once the model is loaded and warmed up")
    async def ping() -> Response:
        return _respond(server.ping())

    @app.post("/invocations", summary="Predict (JSON, JSON Lines, CSV or .npy)")
    async def invocations(request: Request) -> Response:
        body = await request.body()
        headers = request.headers
        return _respond(await server.invocations(body, headers.get("content-type"), headers.get("accept")))

    @app.get("/execution-parameters", summary="What batch transform should send")
    async def execution_parameters() -> Response:
        return Response(dump_json(server.execution_parameters()), media_type=JSON)

    @app.get("/stats", summary="Dynamic batching so far: batches, rows, requests")
    async def stats() -> Response:
        batcher = server.batcher
        if batcher is None:
            return _respond(server._loading_reply())
        s = batcher.stats
        doc = {
            "batches": s.batches,
            "rows": s.rows,
            "requests": s.requests,
            "mean_rows": round(s.mean_rows, 2),
        }
        return Response(dump_json(doc), media_type=JSON)

    @app.get("/metadata", summary="Model metadata: name, version, schema")
    async def metadata() -> Response:
        if server.service is None:
            return _respond(server._loading_reply())
        return _respond(server.service.metadata())

    return DirectInvocations(app, server)
