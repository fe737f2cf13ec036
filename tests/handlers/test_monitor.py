"""The monitor job on moto's S3 and DynamoDB: captured iris predictions, feedback, quality and drift."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws

from lambda_handlers import monitor
from mdk_runtime import telemetry

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "capture-bucket"
TABLE = "feedback"
NOW = datetime(2026, 12, 2, 22, 30, tzinfo=UTC)
BASELINE = json.loads((ROOT / "models" / "iris" / "v1" / "baseline.json").read_text())


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        dynamodb = boto3.client("dynamodb")
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[
                {"AttributeName": "model", "KeyType": "HASH"},
                {"AttributeName": "id", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "model", "AttributeType": "S"},
                {"AttributeName": "id", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield s3, dynamodb


def record(rid: str, rows: list[list[float]], labels: list[str], when: datetime) -> str:
    ids = [rid] if len(rows) == 1 else [f"{rid}:{i}" for i in range(len(rows))]
    answer = {"id": rid, "ids": ids, "predictions": [{"label": x} for x in labels]}
    return json.dumps(
        {
            "captureData": {
                "endpointInput": {
                    "observedContentType": "application/json",
                    "mode": "INPUT",
                    "data": json.dumps({"instances": rows}),
                    "encoding": "JSON",
                },
                "endpointOutput": {
                    "observedContentType": "application/json",
                    "mode": "OUTPUT",
                    "data": json.dumps(answer),
                    "encoding": "JSON",
                },
            },
            "eventMetadata": {
                "eventId": rid,
                "inferenceId": rid,
                "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            "eventVersion": "0",
        }
    )


def put_capture(s3: Any, version: str, lines: list[str], when: datetime, name: str = "a") -> str:
    key = f"capture/iris/{version}/fn/{version}/{when:%Y/%m/%d/%H}/{name}.jsonl"
    s3.put_object(Bucket=BUCKET, Key=key, Body=("\n".join(lines) + "\n").encode())
    return key


def put_feedback(dynamodb: Any, rid: str, label: str) -> None:
    dynamodb.put_item(TableName=TABLE, Item={"model": {"S": "iris"}, "id": {"S": rid}, "label": {"S": label}})


def config(**kw: Any) -> monitor.Config:
    base: dict[str, Any] = {
        "model": "iris",
        "bucket": BUCKET,
        "prefix": "capture/iris",
        "table": TABLE,
        "window_hours": 2,
        "min_feedback": 5,
        "min_records": 20,
        "baseline": BASELINE,
    }
    return monitor.Config(**{**base, **kw})


def iris_rows(n: int, shift: float = 0.0) -> list[list[float]]:
    rng = np.random.default_rng(0)
    from sklearn.datasets import load_iris

    data = load_iris().data
    rows: list[list[float]] = (data[rng.integers(0, len(data), n)] + shift).round(2).tolist()
    return rows


def emf_docs(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def metric(docs: list[dict[str, Any]], name: str, **dims: str) -> float:
    for doc in docs:
        keys = set(doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0])
        if name in doc and keys == {"Model", *dims} and all(doc[k] == v for k, v in dims.items()):
            return float(doc[name][0])
    raise AssertionError(f"no {name} with {dims}")


def test_accuracy_coverage_and_label_shares(aws: tuple[Any, Any]) -> None:
    s3, dynamodb = aws
    rows = iris_rows(40)
    lines = [record(f"r{i}", [row], ["setosa" if i % 2 else "virginica"], NOW) for i, row in enumerate(rows)]
    put_capture(s3, "v1", lines, NOW)
    for i in range(10):  # 10 with feedback: 5 right, 5 wrong
        put_feedback(dynamodb, f"r{i}", "setosa")
    out = io.StringIO()
    summary = monitor.run(config(), s3=s3, dynamodb=dynamodb, now=NOW, out=out)
    docs = emf_docs(out.getvalue())
    assert metric(docs, telemetry.ACCURACY) == 0.5
    assert metric(docs, telemetry.ACCURACY, ModelVersion="v1") == 0.5
    assert metric(docs, telemetry.FEEDBACK_COVERAGE) == 10 / 40
    assert metric(docs, telemetry.CAPTURED) == 40
    assert metric(docs, telemetry.LABEL_SHARE, Label="setosa") == 0.5
    assert summary["overall"]["joined"] == 10
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=summary["key"])["Body"].read())
    assert stored["overall"]["accuracy"] == 0.5
    assert summary["key"] == "monitor/iris/runs/2026-12-02T22-30-00Z.json"


def test_many_instances_per_request_join_by_instance_id(aws: tuple[Any, Any]) -> None:
    s3, dynamodb = aws
    rows = iris_rows(6)
    put_capture(s3, "v1", [record("req", rows, ["setosa"] * 6, NOW)], NOW)
    for i in range(6):
        put_feedback(dynamodb, f"req:{i}", "setosa")
    summary = monitor.run(config(), s3=s3, dynamodb=dynamodb, now=NOW, out=io.StringIO())
    assert summary["overall"]["accuracy"] == 1.0
    assert summary["overall"]["coverage"] == 1.0


def test_no_quality_below_min_feedback(aws: tuple[Any, Any]) -> None:
    s3, dynamodb = aws
    put_capture(s3, "v1", [record(f"r{i}", [r], ["setosa"], NOW) for i, r in enumerate(iris_rows(10))], NOW)
    put_feedback(dynamodb, "r0", "setosa")
    out = io.StringIO()
    summary = monitor.run(config(), s3=s3, dynamodb=dynamodb, now=NOW, out=out)
    assert summary["overall"]["accuracy"] is None
    assert all(telemetry.ACCURACY not in d for d in emf_docs(out.getvalue()))
    assert summary["overall"]["drift"] is None  # 10 < min_records


def test_shifted_inputs_drift_and_iris_like_inputs_do_not(aws: tuple[Any, Any]) -> None:
    s3, dynamodb = aws
    labels = ["setosa", "versicolor", "virginica"]
    calm = [record(f"c{i}", [r], [labels[i % 3]], NOW) for i, r in enumerate(iris_rows(150))]
    put_capture(s3, "v1", calm, NOW)
    moved = [record(f"m{i}", [r], ["virginica"], NOW) for i, r in enumerate(iris_rows(150, shift=2.0))]
    put_capture(s3, "v2", moved, NOW)
    out = io.StringIO()
    summary = monitor.run(config(), s3=s3, dynamodb=dynamodb, now=NOW, out=out)
    assert summary["versions"]["v1"]["drift"]["max"] < 0.2
    assert summary["versions"]["v2"]["drift"]["max"] > 0.2
    docs = emf_docs(out.getvalue())
    assert metric(docs, telemetry.DRIFT_MAX, ModelVersion="v2") > 0.2
    assert metric(docs, telemetry.FEATURE_DRIFT, ModelVersion="v2", Feature="features[2]") > 0.2


def test_bad_lines_are_counted_and_old_hours_not_read(aws: tuple[Any, Any]) -> None:
    s3, dynamodb = aws
    good = record("g", [[5.1, 3.5, 1.4, 0.2]], ["setosa"], NOW)
    put_capture(s3, "v1", [good, "not json", '{"captureData": {}}'], NOW)
    old = NOW - timedelta(hours=5)
    put_capture(s3, "v1", [record("old", [[5.1, 3.5, 1.4, 0.2]], ["setosa"], old)], old, name="old")
    summary = monitor.run(config(), s3=s3, dynamodb=dynamodb, now=NOW, out=io.StringIO())
    assert summary["bad_lines"] == 2
    assert summary["overall"]["captured"] == 1
    assert summary["objects"] == 1


def test_feedback_in_chunks_of_a_hundred(aws: tuple[Any, Any]) -> None:
    _, dynamodb = aws
    for i in range(250):
        put_feedback(dynamodb, f"r{i}", "setosa")
    found = monitor.feedback(dynamodb, TABLE, "iris", [f"r{i}" for i in range(300)])
    assert len(found) == 250
    assert found["r7"] == {"label": "setosa"}


def test_config_from_env_reads_the_packaged_baseline(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text(json.dumps(BASELINE))
    env = {
        "MDK_MODEL": "iris",
        "MDK_CAPTURE_BUCKET": BUCKET,
        "MDK_BASELINE": str(path),
        "MDK_MIN_RECORDS": "50",
    }
    parsed = monitor.Config.from_env(env)
    assert parsed.prefix == "capture/iris"
    assert parsed.min_records == 50
    assert parsed.baseline is not None
    assert parsed.baseline["model"] == "iris"


def test_base64_json_bodies_as_sagemaker_writes_them(aws: tuple[Any, Any]) -> None:
    s3, dynamodb = aws
    line = json.loads(record("sm", [[5.1, 3.5, 1.4, 0.2]], ["setosa"], NOW))
    for part in line["captureData"].values():
        part["data"] = base64.b64encode(part["data"].encode()).decode()
        part["encoding"] = "BASE64"
    put_capture(s3, "v1", [json.dumps(line)], NOW)
    put_feedback(dynamodb, "sm", "setosa")
    summary = monitor.run(config(min_feedback=1), s3=s3, dynamodb=dynamodb, now=NOW, out=io.StringIO())
    assert summary["overall"]["accuracy"] == 1.0
    assert summary["bad_lines"] == 0
