"""Capture of a Lambda model's sampled request/response pairs, in SageMaker Data Capture's format.

The request path only samples, drops the opt-out fields, builds the record and puts it on a bounded
queue (never blocking: a full queue is a lost record, counted as ``CaptureFailed``).  A daemon sender
thread batches records (up to ``max_records`` or ``max_wait_s``) into one JSON Lines object per batch at
``<MDK_CAPTURE_PREFIX>/<AWS_LAMBDA_FUNCTION_NAME>/<AWS_LAMBDA_FUNCTION_VERSION>/yyyy/mm/dd/hh/<uuid>.jsonl``
(UTC hours): the layout SageMaker's own capture writes under ``<endpoint>/<variant>/``
(https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-data-capture-endpoint.html), so one
reader reads both runtimes.  It retries a refused PutObject with backoff and emits ``CaptureWritten``
and ``CaptureFailed`` (EMF, dimensions Model, ModelVersion, service: what the capture alarm watches).

Why direct S3 batches rather than Firehose or the logs: no Firehose stream per model (nor dynamic
partitioning's per-GB charge to get the per-model prefix), SageMaker's exact layout and record format
without a transformation, and request bodies never go through CloudWatch Logs (privacy: logs are read
by more people than the capture bucket; and a log event is limited to 256 KB).

The Lambda freeze caveat: between invocations Lambda freezes the sandbox, and with it the sender
thread; records queued at the end of one invocation wait until the next one thaws it.  A sandbox that is
shut down while frozen loses what it had queued (Lambda sends SIGTERM to the runtime only when an
extension is registered; :mod:`atexit` flushes when the interpreter does exit normally).  So
``CaptureSampled - CaptureWritten`` is the measure of loss, and ``CaptureFailed`` counts the losses the
sender saw (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime as dt
import logging
import os
import queue
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

import orjson

from mdk_runtime import emf, telemetry

log = logging.getLogger(__name__)

JSON_TYPES = ("application/json",)
CSV_TYPES = ("text/csv",)
INSTANCE_LISTS = ("instances", "inputs", "records")


@dataclass(frozen=True, slots=True)
class CaptureSettings:
    """What the stack's capture environment configures (``stacks/capture.py``)."""

    bucket: str
    percent: float
    prefix: str
    drop: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> CaptureSettings | None:
        """``MDK_CAPTURE_BUCKET/PERCENT/PREFIX/DROP``; None when capture is off (unset or 0 %)."""
        bucket = environ.get("MDK_CAPTURE_BUCKET", "").strip()
        raw = environ.get("MDK_CAPTURE_PERCENT", "").strip()
        if not bucket or not raw:
            return None
        try:
            percent = float(raw)
        except ValueError:
            log.error("MDK_CAPTURE_PERCENT: expected a number 0-100, got %r; capture is off", raw[:20])
            return None
        if percent <= 0:
            return None
        drop = tuple(f.strip() for f in environ.get("MDK_CAPTURE_DROP", "").split(",") if f.strip())
        prefix = environ.get("MDK_CAPTURE_PREFIX", "capture").strip().strip("/")
        return cls(bucket=bucket, percent=min(percent, 100.0), prefix=prefix, drop=drop)


def _kind(content_type: str | None) -> str:
    return (content_type or "application/json").split(";")[0].strip().lower()


def drop_fields(doc: Any, fields: tuple[str, ...]) -> Any:
    """The request without the opt-out fields: top-level keys, and keys of each per-instance object."""
    if not fields or not isinstance(doc, dict):
        return doc
    out = {k: v for k, v in doc.items() if k not in fields}
    for name in INSTANCE_LISTS:
        items = out.get(name)
        if isinstance(items, list):
            out[name] = [
                {k: v for k, v in item.items() if k not in fields} if isinstance(item, dict) else item
                for item in items
            ]
    return out


def _part(body: bytes, content_type: str | None, mode: str) -> dict[str, str]:
    kind = _kind(content_type)
    if kind in JSON_TYPES:
        encoding, data = "JSON", body.decode("utf-8", "replace")
    elif kind in CSV_TYPES:
        encoding, data = "CSV", body.decode("utf-8", "replace")
    else:
        encoding, data = "BASE64", base64.b64encode(body).decode("ascii")
    return {"observedContentType": kind, "mode": mode, "data": data, "encoding": encoding}


def record(
    request_id: str,
    request_body: bytes,
    request_type: str | None,
    response_body: bytes,
    response_type: str | None,
    *,
    drop: tuple[str, ...] = (),
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """One capture record in SageMaker Data Capture's JSON Lines format."""
    if drop and _kind(request_type) in JSON_TYPES:
        with contextlib.suppress(orjson.JSONDecodeError):  # unparsable: captured as it came
            request_body = orjson.dumps(drop_fields(orjson.loads(request_body), drop))
    when = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "captureData": {
            "endpointInput": _part(request_body, request_type, "INPUT"),
            "endpointOutput": _part(response_body, response_type, "OUTPUT"),
        },
        "eventMetadata": {"eventId": str(uuid.uuid4()), "inferenceId": request_id, "inferenceTime": when},
        "eventVersion": "0",
    }


class Capturer:
    """Samples on the request path, writes from a daemon thread (see the module docstring)."""

    def __init__(
        self,
        settings: CaptureSettings,
        *,
        model: str,
        version: str,
        client: Any = None,
        environ: Mapping[str, str] = os.environ,
        max_records: int = 100,
        max_wait_s: float = 5.0,
        queue_size: int = 1000,
        retries: int = 3,
        stream: TextIO | None = None,
        rand: Callable[[], float] = random.random,
        start: bool = True,
    ) -> None:
        self.settings = settings
        self.model, self.version = model, version
        self._client = client
        self._base = "/".join(
            [
                settings.prefix,
                environ.get("AWS_LAMBDA_FUNCTION_NAME", "local"),
                environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ]
        )
        self.max_records, self.max_wait_s, self.retries = max_records, max_wait_s, retries
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=queue_size)
        self._stream = stream
        self._rand = rand
        self._namespace = environ.get("POWERTOOLS_METRICS_NAMESPACE", telemetry.NAMESPACE)
        self._service = environ.get("POWERTOOLS_SERVICE_NAME", telemetry.SERVICE)
        self._disabled = emf.metrics_disabled(environ)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if start:
            self.start()

    # -- request path ---------------------------------------------------------------------------

    def sampled(self) -> bool:
        return self.settings.percent >= 100 or self._rand() * 100 < self.settings.percent

    def maybe_capture(
        self,
        request_id: str,
        request_body: bytes,
        request_type: str | None,
        response_body: bytes,
        response_type: str | None,
    ) -> bool:
        """Queue the pair when sampled (True); never blocks.  A full queue is counted CaptureFailed."""
        if not self.sampled():
            return False
        rec = record(
            request_id, request_body, request_type, response_body, response_type, drop=self.settings.drop
        )
        try:
            self.queue.put_nowait(rec)
        except queue.Full:
            self.metric(telemetry.CAPTURE_FAILED, 1)
        return True

    # -- sender ---------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="mdk-capture", daemon=True)
            self._thread.start()
            atexit.register(self.flush)

    def _loop(self) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_records:
                left = deadline - time.monotonic()
                try:
                    item = self.queue.get(timeout=max(left, 0.0)) if left > 0 else self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self.write(batch)
                    return
                batch.append(item)
            self.write(batch)

    def flush(self) -> None:
        """Write whatever is queued now, on the caller's thread (tests, and at exit)."""
        batch: list[dict[str, Any]] = []
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                batch.append(item)
            if len(batch) >= self.max_records:
                self.write(batch)
                batch = []
        if batch:
            self.write(batch)

    def key(self, now: dt.datetime | None = None) -> str:
        now = now or dt.datetime.now(dt.UTC)
        return f"{self._base}/{now:%Y/%m/%d/%H}/{uuid.uuid4().hex}.jsonl"

    def write(self, batch: list[dict[str, Any]]) -> bool:
        """One S3 object for the batch, retried with backoff; the outcome counted as a metric."""
        body = b"".join(orjson.dumps(r) + b"\n" for r in batch)
        key = self.key()
        for attempt in range(self.retries + 1):
            try:
                with self._lock:
                    # The bucket's default encryption (aws:kms) applies: no key is passed here.
                    self.client.put_object(
                        Bucket=self.settings.bucket, Key=key, Body=body, ContentType="application/jsonl"
                    )
            except Exception as exc:  # noqa: BLE001 - any refusal is retried, then counted
                if attempt == self.retries:
                    log.error("capture: %d records lost: %s", len(batch), exc)
                    self.metric(telemetry.CAPTURE_FAILED, len(batch))
                    return False
                time.sleep(min(0.1 * 2**attempt, 2.0))
            else:
                self.metric(telemetry.CAPTURE_WRITTEN, len(batch))
                return True
        return False

    def metric(self, name: str, value: float) -> None:
        """An EMF document with the dimensions the capture alarm watches (``LambdaModel.model_metric``)."""
        if self._disabled:
            return
        dims = {
            telemetry.DIM_MODEL: self.model,
            telemetry.DIM_VERSION: self.version,
            telemetry.DIM_SERVICE: self._service,
        }
        doc = emf.document(self._namespace, dims, [(name, emf.COUNT, float(value))], int(time.time() * 1000))
        (self._stream or sys.stdout).write(emf.dumps(doc) + "\n")
