"""The monitor job as stacks/quality.py provisions it, in a bare stack under cdk-nag: scheduled by
EventBridge Scheduler, least privilege, alarms on live quality and drift."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns

from mdk.config import load_config
from mdk_runtime import telemetry
from stacks import nag
from stacks.quality import QualityMonitor
from stacks.settings import DeploySettings
from tests.infra.conftest import REPO, resources, write_config

CONFIG = """
project: mdk
models:
  - name: iris
    artifact: MODELS/iris/v1/model.onnx
    runtime: lambda
    schema: {labels: [setosa, versicolor, virginica]}
    capture: {percent: 10}
    monitor:
      every_minutes: 15
      accuracy_floor: 0.8
      drift_threshold: 0.25
      baseline: MODELS/iris/v1/baseline.json
"""


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("quality")
    config = load_config(write_config(tmp, CONFIG))
    flags = json.loads((REPO / "cdk.json").read_text())["context"]
    app = cdk.App(outdir=str(tmp / "out"), context=flags)
    stack = cdk.Stack(app, "Quality", env=cdk.Environment(account="111111111111", region="us-east-1"))
    key = kms.Key(stack, "Key", enable_key_rotation=True)
    bucket = s3.Bucket(
        stack,
        "Capture",
        encryption=s3.BucketEncryption.KMS,
        encryption_key=key,
        enforce_ssl=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        server_access_logs_prefix="logs/",
    )
    table = dynamodb.Table(
        stack,
        "Feedback",
        partition_key=dynamodb.Attribute(name="model", type=dynamodb.AttributeType.STRING),
        sort_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
        encryption_key=key,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
    )
    topic = sns.Topic(stack, "Alarms", master_key=key, enforce_ssl=True)
    monitor = QualityMonitor(
        stack,
        "Monitor",
        model=config.model("iris"),
        settings=DeploySettings(project="mdk", build_dir=tmp / "build"),
        alarm_topic=topic,
        capture_bucket=bucket,
        capture_bucket_in_nag=None,
        feedback_table=table,
        data_key=key,
    )
    assert monitor.quality_alarm is not None
    assert monitor.drift_alarm is not None
    assert len(monitor.widgets()) == 3
    for construct in (bucket, topic, stack):
        nag.acknowledge(construct, nag.Acknowledged("AwsSolutions::AwsSolutions-S1", "test fixture"))
    nag.enable(app)
    assembly = app.synth()  # raises on any cdk-nag finding that is not acknowledged
    return assembly.get_stack_by_name("Quality").template  # type: ignore[no-any-return]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_scheduled_every_n_minutes_with_retries_and_a_dead_letter_queue(template: dict[str, Any]) -> None:
    [schedule] = resources(template, "AWS::Scheduler::Schedule").values()
    props = schedule["Properties"]
    assert props["ScheduleExpression"] == "rate(15 minutes)"
    assert props["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert props["Target"]["RetryPolicy"]["MaximumRetryAttempts"] == 2
    assert "DeadLetterConfig" in props["Target"]
    assert json.loads(props["Target"]["Input"]) == {"model": "iris"}


def test_the_function_is_told_its_model_and_window(template: dict[str, Any]) -> None:
    [function] = list(resources(template, "AWS::Lambda::Function").values())
    env = function["Properties"]["Environment"]["Variables"]
    assert env["MDK_MODEL"] == "iris"
    assert env["MDK_CAPTURE_PREFIX"] == "capture/iris"
    assert env["MDK_TASK"] == "classifier"
    assert env["MDK_MIN_RECORDS"] == "100"


def test_the_role_reads_its_models_captures_and_writes_its_runs_only(template: dict[str, Any]) -> None:
    statements = [
        s
        for p in resources(template, "AWS::IAM::Policy").values()
        if "MonitorRole" in json.dumps(p["Properties"]["Roles"])
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    by_action = {a: s for s in statements for a in _list(s["Action"])}
    assert by_action["s3:ListBucket"]["Condition"] == {"StringLike": {"s3:prefix": ["capture/iris/*"]}}
    assert json.dumps(by_action["s3:GetObject"]["Resource"]).endswith('/capture/iris/*"]]}')
    assert json.dumps(by_action["s3:PutObject"]["Resource"]).endswith('/monitor/iris/*"]]}')
    assert "dynamodb:BatchGetItem" in by_action
    assert not [a for a in by_action if a.startswith("dynamodb:") and a != "dynamodb:BatchGetItem"]
    assert not [a for a in by_action if a in {"s3:DeleteObject", "s3:*"}]


def test_quality_and_drift_alarm_on_the_topic(template: dict[str, Any]) -> None:
    alarms = {
        a["Properties"]["MetricName"]: a["Properties"]
        for a in resources(template, "AWS::CloudWatch::Alarm").values()
        if "MetricName" in a["Properties"]
    }
    accuracy = alarms[telemetry.ACCURACY]
    assert accuracy["Threshold"] == 0.8
    assert accuracy["ComparisonOperator"] == "LessThanThreshold"
    assert accuracy["TreatMissingData"] == "notBreaching"
    assert accuracy["Dimensions"] == [{"Name": telemetry.DIM_MODEL, "Value": "iris"}]
    assert accuracy["AlarmActions"]
    drift = alarms[telemetry.DRIFT_MAX]
    assert drift["Threshold"] == 0.25
    assert drift["ComparisonOperator"] == "GreaterThanThreshold"


def test_the_baseline_is_packaged_next_to_the_handler(
    tmp_path_factory: pytest.TempPathFactory, template: dict[str, Any]
) -> None:
    built = list(
        Path(tmp_path_factory.getbasetemp()).glob(
            "quality*/build/mdk-dev/monitor/iris/function/lambda_handlers/baseline.json"
        )
    )
    assert built
    assert json.loads(built[0].read_text())["model"] == "iris"
