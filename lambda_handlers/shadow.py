"""Shadow testing of a Lambda model: the live version mirrors a sample of its predictions to a
candidate version of the same function, which scores them too and reports how often it agrees.

* The setting lives in SSM Parameter Store (``$MDK_SHADOW_PARAMETER``: ``{"candidate": "7",
  "sample": 0.1}``), read through Powertools Parameters and cached for 30 s: ``mdk shadow start`` and
  ``stop`` change it without publishing a version. No parameter (or no candidate) means off.
* The live side only decides and enqueues (microseconds); a background thread builds the payload
  and sends it as an asynchronous invoke of ``<function>:<candidate>``, so the caller never waits
  for it. Mirrors are best-effort: one queued just before Lambda freezes the sandbox leaves when it
  thaws, or never if the sandbox is reaped; a full queue drops (``ShadowDropped``); a payload over
  the asynchronous limit is skipped.
* The candidate side gets ``{"mdk_shadow": {...}}``: the request, the live answer and its latency. It
  predicts, compares (same label per instance for classifiers, the largest absolute difference of
  the numbers otherwise) and emits EMF metrics with dimensions ``Model`` and ``CandidateVersion``:
  ``ShadowSamples``, ``ShadowAgreement`` (% of instances), ``ShadowMaxAbsDiff``, ``ShadowLatency``,
  ``ShadowLiveLatency``, ``ShadowErrors``. ``mdk shadow report`` reads them back.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from mdk_runtime import telemetry
from mdk_runtime.media import JSON
from mdk_runtime.service import InferenceService, Reply

log = logging.getLogger("mdk_runtime.shadow")

PARAMETER_ENV = "MDK_SHADOW_PARAMETER"
EVENT_KEY = "mdk_shadow"
MAX_AGE_S = 30
MAX_PAYLOAD_BYTES = 250_000  # Lambda's asynchronous invoke takes 256 KB
QUEUE_SIZE = 256
BATCH_MAX = 50  # records per invoke (Powertools takes 100 values of a metric per flush)
FLUSH_S = 1.0  # the longest a record waits for others

SAMPLES = "ShadowSamples"
AGREEMENT = "ShadowAgreement"
MAX_ABS_DIFF = "ShadowMaxAbsDiff"
LATENCY = "ShadowLatency"
LIVE_LATENCY = "ShadowLiveLatency"
ERRORS = "ShadowErrors"
DROPPED = "ShadowDropped"
DIM_CANDIDATE = "CandidateVersion"


@dataclass(frozen=True)
class Setting:
    candidate: str | None = None
    sample: float = 0.0

    @property
    def on(self) -> bool:
        return bool(self.candidate) and self.sample > 0


OFF = Setting()


_memo: list[Any] = [0.0, OFF, None]  # expires (monotonic), setting, parameter name


def setting() -> Setting:
    """The current setting, re-read every ``MAX_AGE_S`` (Powertools Parameters fetches and caches it;
    this memo keeps the per-request cost to a clock read). Any problem reading it means off."""
    name = os.environ.get(PARAMETER_ENV)
    if not name:
        return OFF
    now = time.monotonic()
    if now < _memo[0] and _memo[2] == name:
        current: Setting = _memo[1]
        return current
    current = _read(name)
    _memo[:] = [now + MAX_AGE_S, current, name]
    return current


def forget() -> None:
    """Drop the cached setting (tests, after changing the parameter)."""
    from aws_lambda_powertools.utilities import parameters

    _memo[:] = [0.0, OFF, None]
    parameters.clear_caches()  # type: ignore[no-untyped-call]


def _read(name: str) -> Setting:
    try:
        from aws_lambda_powertools.utilities import parameters

        raw: Any = parameters.get_parameter(name, max_age=MAX_AGE_S, transform="json")
    except Exception as exc:  # noqa: BLE001 - shadowing must never break serving
        _warn_once(f"shadow setting {name} unreadable, shadowing off: {type(exc).__name__}: {exc}")
        return OFF
    if not isinstance(raw, dict):
        return OFF
    candidate, sample = raw.get("candidate"), raw.get("sample", 0)
    try:
        fraction = min(max(float(sample), 0.0), 1.0)
    except (TypeError, ValueError):
        return OFF
    return Setting(str(candidate) if candidate not in (None, "") else None, fraction)


_last_warning = [0.0]


def _warn_once(message: str) -> None:
    now = time.monotonic()
    if now - _last_warning[0] > 60:
        _last_warning[0] = now
        log.warning(message)


def should_mirror(current: Setting, own_version: str | None, draw: float) -> bool:
    """Mirror this request? Never to the version serving it, never from a shadow invocation."""
    return current.on and current.candidate != own_version and draw < current.sample


def record(
    model: str,
    body: bytes,
    content_type: str | None,
    reply: Reply,
    *,
    live_ms: float,
    live_version: str | None,
) -> dict[str, Any]:
    """One mirrored request: what the candidate needs to answer it and compare."""
    return {
        "model": model,
        "body": base64.b64encode(body).decode(),
        "content_type": content_type,
        "live": json.loads(reply.body),
        "live_ms": round(live_ms, 3),
        "live_version": live_version,
    }


class Mirror:
    """A queue and one daemon thread that turns mirrored requests into records and sends them to the
    candidate in batches (one asynchronous invoke per ``BATCH_MAX`` records, ``MAX_PAYLOAD_BYTES`` or
    ``FLUSH_S`` seconds): the request path only enqueues references, and the cost of an invoke is
    shared by many mirrors instead of competing with every sampled request."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[str, Callable[[], dict[str, Any]] | None]] = queue.Queue(
            maxsize=QUEUE_SIZE
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.sent = 0  # records delivered
        self.invokes = 0
        self.failed = 0
        self.skipped = 0

    def submit(self, target: str, build: Callable[[], dict[str, Any]]) -> bool:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="mdk-shadow", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait((target, build))
        except queue.Full:
            return False
        return True

    def drain(self, timeout: float = 5.0) -> None:
        """Send everything held now and wait for it (tests; a shutdown)."""
        if self._thread is None:
            return
        self._queue.put(("", None), timeout=timeout)  # asks the thread to send what it holds
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)

    def _run(self) -> None:
        import boto3

        client = boto3.client("lambda")
        pending: dict[str, list[bytes]] = {}
        size: dict[str, int] = {}
        oldest = time.monotonic()

        def flush(target: str) -> None:
            records = pending.pop(target, [])
            size.pop(target, None)
            if not records:
                return
            data = b'{"' + EVENT_KEY.encode() + b'":[' + b",".join(records) + b"]}"
            try:
                client.invoke(FunctionName=target, InvocationType="Event", Payload=data)
                self.sent += len(records)
                self.invokes += 1
            except Exception as exc:  # noqa: BLE001 - lost mirrors are counted, never raised
                self.failed += len(records)
                _warn_once(f"shadow mirror to {target} failed: {type(exc).__name__}: {exc}")

        while True:
            wait = max(0.0, FLUSH_S - (time.monotonic() - oldest)) if pending else None
            try:
                target, build = self._queue.get(timeout=wait)
            except queue.Empty:
                for name in list(pending):
                    flush(name)
                continue
            try:
                if build is None:  # drain
                    for name in list(pending):
                        flush(name)
                    continue
                encoded = json.dumps(build(), separators=(",", ":")).encode()
                if len(encoded) > MAX_PAYLOAD_BYTES - 64:
                    self.skipped += 1
                    continue
                if size.get(target, 0) + len(encoded) > MAX_PAYLOAD_BYTES - 64:
                    flush(target)
                if not pending:
                    oldest = time.monotonic()
                pending.setdefault(target, []).append(encoded)
                size[target] = size.get(target, 0) + len(encoded) + 1
                if len(pending[target]) >= BATCH_MAX:
                    flush(target)
            except Exception as exc:  # noqa: BLE001 - a bad record is dropped, the thread lives on
                self.failed += 1
                _warn_once(f"shadow mirror dropped: {type(exc).__name__}: {exc}")
            finally:
                self._queue.task_done()


@cache
def mirror() -> Mirror:
    return Mirror()


def offer(
    service: InferenceService, body: bytes, content_type: str | None, reply: Reply, live_ms: float
) -> str:
    """After a served prediction: mirror it if the setting says so. Returns what happened (for tests)."""
    current = setting()
    own = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
    if not should_mirror(current, own, random.random()):  # noqa: S311 - sampling, not security
        return "skipped"
    if reply.content_type != JSON:
        return "not JSON"

    def build() -> dict[str, Any]:  # on the mirror thread, after the caller has its answer
        return record(service.name, body, content_type, reply, live_ms=live_ms, live_version=own)

    function = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
    if not mirror().submit(f"{function}:{current.candidate}", build):
        _metric(service.name, str(current.candidate), DROPPED, "Count", 1)
        return "dropped"
    return "queued"


# -- the candidate's side ------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    instances: int
    agreeing: int
    max_abs_diff: float | None

    @property
    def agreement_percent(self) -> float:
        return 100.0 * self.agreeing / self.instances if self.instances else 0.0


def compare(live: Any, candidate: Any) -> Comparison:
    """Instance by instance: classifiers agree on the label; other models agree when every number is
    within 1e-6 (the largest absolute difference is reported either way)."""
    left = live.get("predictions") if isinstance(live, dict) else None
    right = candidate.get("predictions") if isinstance(candidate, dict) else None
    if not isinstance(left, list) or not isinstance(right, list) or len(left) != len(right):
        return Comparison(instances=len(left) if isinstance(left, list) else 0, agreeing=0, max_abs_diff=None)
    agreeing = 0
    worst: float | None = None
    for a, b in zip(left, right, strict=True):
        numbers_a, numbers_b = _numbers(a), _numbers(b)
        diff = None
        if len(numbers_a) == len(numbers_b) and numbers_a:
            diff = max(abs(x - y) for x, y in zip(numbers_a, numbers_b, strict=True))
            worst = diff if worst is None else max(worst, diff)
        if isinstance(a, dict) and "label" in a and isinstance(b, dict) and "label" in b:
            agreeing += a["label"] == b["label"]
        elif diff is not None and diff <= 1e-6:
            agreeing += 1
    return Comparison(instances=len(left), agreeing=agreeing, max_abs_diff=worst)


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [n for k in sorted(value) if k != "label" for n in _numbers(value[k])]
    if isinstance(value, list):
        return [n for item in value for n in _numbers(item)]
    return []


def handle(service: InferenceService, event: dict[str, Any]) -> dict[str, Any]:
    """Mirrored requests, on the candidate: predict, compare, report. Never mirrors again."""
    records = event[EVENT_KEY]
    records = records if isinstance(records, list) else [records]
    version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "unknown")
    values: list[tuple[str, str, float]] = []
    totals = {"compared": 0, "instances": 0, "agreeing": 0, "errors": 0}
    worst: float | None = None
    for item in records:
        started = time.perf_counter()
        reply = service.predict(base64.b64decode(item.get("body", "")), item.get("content_type"), JSON)
        elapsed = (time.perf_counter() - started) * 1e3
        if reply.status != 200:
            totals["errors"] += 1
            values.append((ERRORS, "Count", 1))
            continue
        result = compare(item.get("live"), json.loads(reply.body))
        totals["compared"] += 1
        totals["instances"] += result.instances
        totals["agreeing"] += result.agreeing
        values += [
            (SAMPLES, "Count", 1),
            (AGREEMENT, "Percent", result.agreement_percent),
            (LATENCY, "Milliseconds", elapsed),
            (LIVE_LATENCY, "Milliseconds", float(item.get("live_ms", 0.0))),
        ]
        if result.max_abs_diff is not None:
            values.append((MAX_ABS_DIFF, "None", result.max_abs_diff))
            worst = result.max_abs_diff if worst is None else max(worst, result.max_abs_diff)
    if values:
        _metrics(service.name, version, values)
    return {**totals, "max_abs_diff": worst}


def _metric(model: str, version: str, name: str, unit: str, value: float) -> None:
    _metrics(model, version, [(name, unit, value)])


def _metrics(model: str, version: str, values: list[tuple[str, str, float]]) -> None:
    """One EMF record with the shadow dimensions (apart from the function's own metric set)."""
    from aws_lambda_powertools.metrics import EphemeralMetrics

    metrics = EphemeralMetrics(namespace=telemetry.NAMESPACE, service=telemetry.SERVICE)
    metrics.add_dimension(name=telemetry.DIM_MODEL, value=model)
    metrics.add_dimension(name=DIM_CANDIDATE, value=version)
    for name, unit, value in values:
        metrics.add_metric(name=name, unit=unit, value=value)
    metrics.flush_metrics()
