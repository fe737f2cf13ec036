"""The monitor job: live quality and drift of one model, run by EventBridge Scheduler (any event).

Each run reads the window's captured predictions (``s3://$MDK_CAPTURE_BUCKET/$MDK_CAPTURE_PREFIX/<version>/
<A>/<B>/yyyy/mm/dd/hh/*.jsonl``, SageMaker Data Capture's JSON Lines format, one line per request; it lists
each hour's prefix, never the whole bucket), joins them by instance id with the feedback table
(``BatchGetItem``, 100 keys a call, unprocessed keys retried), and publishes per model and per version, as
CloudWatch embedded metric format documents on stdout: Accuracy (classifiers) or MAE (regressors) once
``MDK_MIN_FEEDBACK`` predictions have feedback, FeedbackCoverage, FeedbackJoined, CapturedInstances,
LabelShare per label, and once ``MDK_MIN_RECORDS`` instances were captured, FeatureDrift per feature,
OutputDrift and DriftMax (PSI against the baseline, ``mdk_runtime.drift``). A run summary goes to
``s3://$MDK_CAPTURE_BUCKET/monitor/<model>/runs/<time>.json`` (``mdk quality`` reads them). A capture line
that cannot be read is counted (``bad_lines``), never fatal.

BatchGetItem: https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html
(at most 100 keys; ``UnprocessedKeys`` to be retried). Data Capture's record format:
https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-data-capture.html
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from mdk_runtime import drift, emf, telemetry

BATCH_KEYS = 100
RETRIES = 8
BASELINE_FILE = Path(__file__).with_name("baseline.json")
ALL = "all"  # the summary's key for every version together


@dataclass(frozen=True, slots=True)
class Config:
    model: str
    bucket: str
    prefix: str  # capture/<model>
    table: str | None
    window_hours: int = 24
    min_feedback: int = 20
    min_records: int = 100
    task: str = "classifier"
    baseline: Mapping[str, Any] | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Config:
        model = environ["MDK_MODEL"]
        path = Path(environ.get("MDK_BASELINE") or BASELINE_FILE)
        baseline = json.loads(path.read_text()) if path.is_file() else None
        return cls(
            model=model,
            bucket=environ["MDK_CAPTURE_BUCKET"],
            prefix=(environ.get("MDK_CAPTURE_PREFIX") or f"capture/{model}").strip("/"),
            table=environ.get("MDK_FEEDBACK_TABLE") or None,
            window_hours=int(environ.get("MDK_WINDOW_HOURS") or 24),
            min_feedback=int(environ.get("MDK_MIN_FEEDBACK") or 20),
            min_records=int(environ.get("MDK_MIN_RECORDS") or 100),
            task=environ.get("MDK_TASK") or "classifier",
            baseline=baseline,
        )


@dataclass(slots=True)
class Instance:
    id: str
    version: str
    time: str
    input: Any
    output: Any


@dataclass(slots=True)
class Capture:
    instances: list[Instance] = field(default_factory=list)
    bad_lines: int = 0
    objects: int = 0


def _subprefixes(s3: Any, bucket: str, prefix: str) -> list[str]:
    found: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        found.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
    return found


def hour_paths(window_hours: int, now: datetime) -> list[str]:
    """``yyyy/mm/dd/hh/`` of every UTC hour the window touches, the current one included."""
    start = (now - timedelta(hours=window_hours)).replace(minute=0, second=0, microsecond=0)
    hours = []
    at = start
    while at <= now:
        hours.append(at.strftime("%Y/%m/%d/%H/"))
        at += timedelta(hours=1)
    return hours


def capture_keys(s3: Any, config: Config, now: datetime) -> Iterator[tuple[str, str]]:
    """(version, key) of every capture object in the window: versions, then A/B (function/version or
    endpoint/variant), then one listing per hour."""
    hours = hour_paths(config.window_hours, now)
    for version_prefix in _subprefixes(s3, config.bucket, config.prefix + "/"):
        version = version_prefix.rstrip("/").rsplit("/", 1)[-1]
        for a in _subprefixes(s3, config.bucket, version_prefix):
            for b in _subprefixes(s3, config.bucket, a):
                for hour in hours:
                    paginator = s3.get_paginator("list_objects_v2")
                    for page in paginator.paginate(Bucket=config.bucket, Prefix=b + hour):
                        for obj in page.get("Contents", []):
                            yield version, obj["Key"]


def _data(part: Mapping[str, Any]) -> Any:
    """A capture record's input or output body, decoded by its ``encoding``."""
    data = part.get("data", "")
    encoding = str(part.get("encoding", "JSON")).upper()
    if encoding == "JSON":
        return json.loads(data)
    if encoding == "CSV":
        return [[float(f) for f in line.split(",")] for line in str(data).splitlines() if line.strip()]
    raw = base64.b64decode(data)
    kind = str(part.get("observedContentType", "")).split(";")[0].strip().lower()
    # SageMaker base64-encodes every body whose type its CaptureContentTypeHeader does not list as JSON/CSV
    if kind == "application/json":
        return json.loads(raw)
    if kind == "text/csv":
        return _data({"data": raw.decode("utf-8"), "encoding": "CSV"})
    return raw  # a media body (an image): no tabular features


def input_instances(body: Any, kind: str) -> list[Any]:  # noqa: PLR0911 - one return per body shape
    """The instances of a request body, in the order of the answer's predictions."""
    if isinstance(body, bytes):
        return []
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        if isinstance(body.get("instances"), list):
            return list(body["instances"])
        inputs = body.get("inputs")
        if isinstance(inputs, dict):
            sizes = {len(v) for v in inputs.values() if isinstance(v, list)}
            if len(sizes) == 1:
                return [{k: v[i] for k, v in inputs.items()} for i in range(sizes.pop())]
        if isinstance(inputs, list):
            return list(inputs)
        return [body] if kind != "application/json" else []
    return []


def parse_line(line: str, version: str) -> list[Instance]:
    """The instances of one capture record; raises ``ValueError`` (or ``KeyError``/``TypeError``) for a
    record that is not in the capture format."""
    record = json.loads(line)
    data = record["captureData"]
    meta = record.get("eventMetadata") or {}
    inp, out = data["endpointInput"], data["endpointOutput"]
    answer = _data(out)
    if not isinstance(answer, dict) or not isinstance(answer.get("predictions"), list):
        raise ValueError("the captured answer has no predictions")
    predictions = answer["predictions"]
    ids = answer.get("ids")
    if not isinstance(ids, list) or len(ids) != len(predictions):
        rid = answer.get("id") or meta.get("inferenceId") or meta.get("eventId")
        if rid is None:
            raise ValueError("the record has no ids")
        ids = [rid] if len(predictions) == 1 else [f"{rid}:{i}" for i in range(len(predictions))]
    body = _data(inp)
    instances = input_instances(body, str(inp.get("observedContentType", "")))
    if len(instances) != len(predictions):
        instances = [None] * len(predictions)
    when = str(meta.get("inferenceTime", ""))
    return [
        Instance(id=str(i), version=version, time=when, input=x, output=p)
        for i, x, p in zip(ids, instances, predictions, strict=True)
    ]


def read_capture(s3: Any, config: Config, now: datetime) -> Capture:
    capture = Capture()
    start = now - timedelta(hours=config.window_hours)
    for version, key in capture_keys(s3, config, now):
        capture.objects += 1
        text = s3.get_object(Bucket=config.bucket, Key=key)["Body"].read().decode("utf-8", errors="replace")
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                instances = parse_line(line, version)
            except (ValueError, KeyError, TypeError, AttributeError):
                capture.bad_lines += 1
                continue
            for instance in instances:
                when = _time(instance.time)
                if when is None or start <= when <= now + timedelta(minutes=5):
                    capture.instances.append(instance)
    return capture


def _time(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _attribute(value: Mapping[str, Any]) -> Any:
    if "S" in value:
        return value["S"]
    if "N" in value:
        number = float(value["N"])
        return int(number) if number.is_integer() else number
    if "BOOL" in value:
        return bool(value["BOOL"])
    return None


def feedback(
    dynamodb: Any, table: str, model: str, ids: list[str], sleep: Callable[[float], None] = time.sleep
) -> dict[str, dict[str, Any]]:
    """id -> {"label": ...} or {"value": ...} of the ids with feedback."""
    found: dict[str, dict[str, Any]] = {}
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), BATCH_KEYS):
        request: dict[str, Any] = {
            table: {
                "Keys": [{"model": {"S": model}, "id": {"S": i}} for i in unique[start : start + BATCH_KEYS]],
                "ProjectionExpression": "#i, #l, #v",
                "ExpressionAttributeNames": {"#i": "id", "#l": "label", "#v": "value"},
            }
        }
        for attempt in range(RETRIES):
            answer = dynamodb.batch_get_item(RequestItems=request)
            for item in answer.get("Responses", {}).get(table, []):
                truth = {k: _attribute(item[k]) for k in ("label", "value") if k in item}
                found[str(_attribute(item["id"]))] = truth
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                break
            sleep(min(0.05 * 2**attempt, 2.0))
        else:
            raise RuntimeError(f"BatchGetItem left keys unprocessed after {RETRIES} tries")
    return found


def _prediction(output: Any) -> tuple[str, Any] | None:
    return drift.prediction_value(output)


def group_stats(
    config: Config, instances: list[Instance], truth: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """Quality and drift figures of one group of instances (a version, or all of them)."""
    n = len(instances)
    joined = 0
    correct = 0
    errors: list[float] = []
    labels: dict[str, int] = {}
    for instance in instances:
        predicted = _prediction(instance.output)
        if predicted is not None and predicted[0] == "label":
            key = drift.label_key(predicted[1])
            labels[key] = labels.get(key, 0) + 1
        fb = truth.get(instance.id)
        if fb is None or predicted is None:
            continue
        if config.task == "classifier" and "label" in fb:
            joined += 1
            correct += drift.label_key(fb["label"]) == drift.label_key(predicted[1])
        elif "value" in fb and predicted[0] == "numeric":
            joined += 1
            errors.append(abs(float(predicted[1]) - float(fb["value"])))
    stats: dict[str, Any] = {
        "captured": n,
        "joined": joined,
        "coverage": joined / n if n else None,
        "label_shares": {k: v / n for k, v in sorted(labels.items())} if n else {},
        "accuracy": None,
        "mae": None,
        "drift": None,
    }
    if joined >= config.min_feedback:
        if config.task == "classifier":
            stats["accuracy"] = correct / joined
        else:
            stats["mae"] = sum(errors) / len(errors)
    if config.baseline is not None and n >= config.min_records:
        stats["drift"] = drift.drift(
            config.baseline,
            [i.input for i in instances if i.input is not None],
            [i.output for i in instances],
        )
    return stats


def emit(config: Config, group: str, stats: Mapping[str, Any], out: TextIO, timestamp: int) -> None:
    """The EMF documents of one group: dims {Model} (group ``all``) or {Model, ModelVersion}."""
    dims = {telemetry.DIM_MODEL: config.model}
    if group != ALL:
        dims[telemetry.DIM_VERSION] = group
    metrics: list[tuple[str, str, Any]] = [
        (telemetry.CAPTURED, emf.COUNT, stats["captured"]),
        (telemetry.JOINED, emf.COUNT, stats["joined"]),
    ]
    if stats["coverage"] is not None:
        metrics.append((telemetry.FEEDBACK_COVERAGE, "None", stats["coverage"]))
    if stats["accuracy"] is not None:
        metrics.append((telemetry.ACCURACY, "None", stats["accuracy"]))
    if stats["mae"] is not None:
        metrics.append((telemetry.MAE, "None", stats["mae"]))
    result = stats["drift"]
    if result is not None and result["output"] is not None:
        metrics.append((telemetry.OUTPUT_DRIFT, "None", result["output"]))
    if result is not None and result["max"] is not None:
        metrics.append((telemetry.DRIFT_MAX, "None", result["max"]))
    docs = [emf.document(telemetry.NAMESPACE, dims, metrics, timestamp)]
    for label, share in stats["label_shares"].items():
        docs.append(
            emf.document(
                telemetry.NAMESPACE,
                {**dims, telemetry.DIM_LABEL: label},
                [(telemetry.LABEL_SHARE, "None", share)],
                timestamp,
            )
        )
    for feature, value in (result or {}).get("features", {}).items():
        docs.append(
            emf.document(
                telemetry.NAMESPACE,
                {**dims, telemetry.DIM_FEATURE: feature},
                [(telemetry.FEATURE_DRIFT, "None", value)],
                timestamp,
            )
        )
    for doc in docs:
        out.write(emf.dumps(doc) + "\n")
    out.flush()


def run(
    config: Config,
    *,
    s3: Any = None,
    dynamodb: Any = None,
    now: datetime | None = None,
    out: TextIO | None = None,
) -> dict[str, Any]:
    """One monitor run: read, join, publish, and write the run summary (returned)."""
    import boto3

    s3 = s3 if s3 is not None else boto3.client("s3")
    now = now or datetime.now(UTC)
    capture = read_capture(s3, config, now)
    truth: dict[str, dict[str, Any]] = {}
    if config.table and capture.instances:
        dynamodb = dynamodb if dynamodb is not None else boto3.client("dynamodb")
        truth = feedback(dynamodb, config.table, config.model, [i.id for i in capture.instances])
    groups: dict[str, list[Instance]] = {ALL: capture.instances}
    for instance in capture.instances:
        groups.setdefault(instance.version, []).append(instance)
    stream = out if out is not None else sys.stdout
    timestamp = int(now.timestamp() * 1000)
    summary_groups: dict[str, Any] = {}
    for name, members in groups.items():
        stats = group_stats(config, members, truth)
        summary_groups[name] = stats
        emit(config, name, stats, stream, timestamp)
    stamp = now.strftime("%Y-%m-%dT%H-%M-%SZ")
    summary = {
        "model": config.model,
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "window_hours": config.window_hours,
        "task": config.task,
        "objects": capture.objects,
        "bad_lines": capture.bad_lines,
        "overall": summary_groups[ALL],
        "versions": {k: v for k, v in summary_groups.items() if k != ALL},
    }
    key = f"monitor/{config.model}/runs/{stamp}.json"
    s3.put_object(
        Bucket=config.bucket, Key=key, Body=json.dumps(summary).encode(), ContentType="application/json"
    )
    summary["key"] = key
    return summary


def handler(event: Any, context: Any) -> dict[str, Any]:
    summary = run(Config.from_env())
    overall = summary["overall"]
    return {
        "key": summary["key"],
        "captured": overall["captured"],
        "joined": overall["joined"],
        "bad_lines": summary["bad_lines"],
    }
