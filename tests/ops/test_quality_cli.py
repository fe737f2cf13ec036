"""`mdk baseline`, `mdk capture export` and `mdk quality` through typer's runner, on moto's S3 and
DynamoDB: the captures and run summaries the monitor job (lambda_handlers.monitor) reads and writes."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from lambda_handlers import monitor
from mdk.cli import app
from tests.handlers.test_monitor import BASELINE, BUCKET, TABLE, iris_rows, put_capture, put_feedback, record

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "models.yaml")
runner = CliRunner()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
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


def test_capture_export_joins_feedback_one_line_per_instance(aws: tuple[Any, Any], tmp_path: Path) -> None:
    s3, dynamodb = aws
    now = datetime.now(UTC)
    put_capture(s3, "v1", [record("req", iris_rows(3), ["setosa", "virginica", "setosa"], now)], now)
    put_feedback(dynamodb, "req:1", "versicolor")
    out = tmp_path / "export.jsonl"
    result = runner.invoke(
        app,
        [
            "capture",
            "export",
            "iris",
            "--since",
            "2h",
            "--out",
            str(out),
            "--bucket",
            BUCKET,
            "--table",
            TABLE,
            "--config",
            CONFIG,
        ],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["req:0", "req:1", "req:2"]
    assert rows[1]["label"] == "versicolor"
    assert rows[0]["label"] is None
    assert rows[1]["output"] == {"label": "virginica"}
    assert rows[1]["version"] == "v1"
    assert len(rows[1]["input"]) == 4


def test_capture_export_leaves_out_older_captures(aws: tuple[Any, Any], tmp_path: Path) -> None:
    s3, _ = aws
    now = datetime.now(UTC)
    old = now - timedelta(hours=30)
    put_capture(s3, "v1", [record("old", iris_rows(1), ["setosa"], old)], old, name="old")
    put_capture(s3, "v1", [record("new", iris_rows(1), ["setosa"], now)], now)
    out = tmp_path / "export.jsonl"
    result = runner.invoke(
        app,
        [
            "capture",
            "export",
            "iris",
            "--out",
            str(out),
            "--bucket",
            BUCKET,
            "--table",
            TABLE,
            "--config",
            CONFIG,
        ],
    )
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["new"]


def test_parquet_without_pyarrow_names_the_option(aws: tuple[Any, Any], tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "capture",
            "export",
            "iris",
            "--out",
            str(tmp_path / "x.parquet"),
            "--bucket",
            BUCKET,
            "--table",
            TABLE,
            "--config",
            CONFIG,
        ],
    )
    try:
        import pyarrow  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
    except ImportError:
        assert result.exit_code != 0
        assert "--out" in str(result.exception) or "--out" in result.output
        assert "pyarrow" in (str(result.exception) + result.output)
    else:
        assert result.exit_code == 0, result.output


def test_a_bad_since_is_refused_by_name(aws: tuple[Any, Any]) -> None:
    result = runner.invoke(
        app, ["capture", "export", "iris", "--since", "yesterday", "--bucket", BUCKET, "--config", CONFIG]
    )
    assert result.exit_code != 0
    assert "--since" in (str(result.exception) + result.output)


def test_quality_shows_the_monitors_runs(aws: tuple[Any, Any]) -> None:
    s3, dynamodb = aws
    now = datetime.now(UTC)
    lines = [record(f"r{i}", [row], ["setosa"], now) for i, row in enumerate(iris_rows(30, shift=2.0))]
    put_capture(s3, "v1", lines, now)
    for i in range(10):
        put_feedback(dynamodb, f"r{i}", "setosa" if i < 7 else "virginica")
    config = monitor.Config(
        model="iris",
        bucket=BUCKET,
        prefix="capture/iris",
        table=TABLE,
        min_feedback=5,
        min_records=20,
        baseline=BASELINE,
    )
    monitor.run(config, s3=s3, dynamodb=dynamodb, now=now, out=io.StringIO())
    result = runner.invoke(app, ["quality", "iris", "--bucket", BUCKET, "--json", "--config", CONFIG])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    overall = next(r for r in rows if r["version"] == "all")
    assert overall["accuracy"] == 0.7
    assert overall["coverage"] == pytest.approx(10 / 30)
    assert overall["drift_max"] > 0.2
    assert overall["worst"].startswith(("features[", "output"))
    table = runner.invoke(app, ["quality", "iris", "--bucket", BUCKET, "--config", CONFIG])
    assert table.exit_code == 0, table.output
    assert "0.700" in table.output


def test_baseline_command_writes_the_file(tmp_path: Path) -> None:
    sample = tmp_path / "sample.csv"
    sample.write_text(
        "sepal_l,sepal_w,petal_l,petal_w\n" + "\n".join(",".join(map(str, r)) for r in iris_rows(50))
    )
    out = tmp_path / "baseline.json"
    result = runner.invoke(app, ["baseline", "iris", str(sample), "--out", str(out), "--config", CONFIG])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["model"] == "iris"
    assert doc["rows"] == 50
    assert len(doc["features"]) == 4
