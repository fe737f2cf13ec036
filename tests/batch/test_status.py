"""Upload to manifest: the trigger, a transform of the real container, the status function, the store.

moto records transform jobs but runs nothing, so the job's work is done here by the kit's local
transform (``mdk.local.transform``) against the real serving container, reading the staged input from
and writing the output to (moto's) S3 exactly where SageMaker would.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import boto3
import pytest

from lambda_handlers import batch_status, predictions
from mdk.bundle import write_bundle
from mdk.local.transform import TransformSettings, container, transform
from mdk_runtime import batch
from tests.batch.conftest import BUCKET, Pipeline, batch_config
from tests.events import EVENTS, FakeLambdaContext, response_json, transform_state_change
from tests.infra.conftest import synth_config
from tests.template_events import NoRoute, rest_event

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


@pytest.fixture(scope="module")
def containers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The serving container (its real entry point, in a process) for each model of the batch config."""
    config = batch_config()
    root = tmp_path_factory.mktemp("batch-bundles")
    with (
        container(write_bundle(config.model("iris"), root / "iris")) as (iris, _),
        container(write_bundle(config.model("iris-ids"), root / "iris-ids")) as (iris_ids, _),
    ):
        yield {"iris": iris, "iris-ids": iris_ids}


def run_job(pipeline: Pipeline, job_name: str, url: str) -> int:
    """Do what SageMaker does for the job: read its input, score it, write ``<name>.out``."""
    job = pipeline.sagemaker.describe_transform_job(TransformJobName=job_name)
    _, in_key = batch.parse_s3_uri(job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"])
    processing = job.get("DataProcessing") or {}
    settings = TransformSettings(
        content_type=job["TransformInput"]["ContentType"],
        max_payload_mb=job["MaxPayloadInMB"],
        max_concurrent_transforms=job["MaxConcurrentTransforms"],
        id_field="id" if processing.get("JoinSource") == "Input" else None,
        gzipped=job["TransformInput"]["CompressionType"] == "Gzip",
    )
    source = pipeline.s3.get_object(Bucket=BUCKET, Key=in_key)["Body"]
    sink = io.BytesIO()
    result = transform(source, sink, url=url, settings=settings)
    out = pipeline.write_output(job_name, in_key.rsplit("/", 1)[-1], [])
    pipeline.s3.put_object(Bucket=BUCKET, Key=out, Body=sink.getvalue())
    return result.input_lines


@dataclass
class ShortOfTime(FakeLambdaContext):
    """A context whose function is always about to time out (every page hands over)."""

    def get_remaining_time_in_millis(self) -> int:
        return 1_000


def test_a_file_with_bad_lines_completes_with_every_line_accounted_for(
    pipeline: Pipeline, containers: dict[str, str]
) -> None:
    lines = [json.dumps(r).encode() for r in ROWS] * 200
    lines[100] = b"{not json"
    lines[250] = b"[1.0, 2.0]"
    started = pipeline.trigger(pipeline.put("incoming/iris/mixed.jsonl", b"\n".join(lines) + b"\n"))
    assert run_job(pipeline, started["job"], containers["iris"]) == 600

    result = pipeline.status(pipeline.state_change(started["job"], "Completed"))

    assert result["state"] == batch.COMPLETED
    manifest = pipeline.manifest(started["manifest"])
    assert manifest["state"] == batch.COMPLETED
    assert manifest["input"]["lines"] == manifest["output"]["lines"] == 600
    assert manifest["output"]["error_lines"] == 2
    assert manifest["output"]["missing_lines"] == 0
    assert [(e["line"], e["code"]) for e in manifest["output"]["first_errors"]] == [
        (101, "malformed_request"),
        (251, "invalid_input"),
    ]
    assert manifest["message"] == "600 lines: 598 scored, 2 rejected (see output)"
    assert manifest["timings"]["seconds"] == 1200.0  # from the event's CreationTime to TransformEndTime
    # The output lines up with the input: line 2 is line 2's prediction.
    out_key = manifest["output"]["files"][0].split(f"{BUCKET}/", 1)[1]
    answers = pipeline.s3.get_object(Bucket=BUCKET, Key=out_key)["Body"].read().splitlines()
    assert json.loads(answers[1])["label"] == "virginica"
    assert "error" in json.loads(answers[100])
    assert pipeline.alerts() == []


@pytest.fixture(scope="module")
def api_template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The serving stack of the batch config, synthesized: the API's routes the events come from."""
    synth = synth_config(batch_config(), tmp_path_factory.mktemp("batch-synth"), with_nag=False)
    return synth.merged_json


def test_stored_predictions_are_served_by_id(
    pipeline: Pipeline, containers: dict[str, str], api_template: dict[str, Any]
) -> None:
    records = [json.dumps({"id": f"r{i}", "features": ROWS[i % 3]}).encode() for i in range(40)]
    records[7] = json.dumps({"id": "r7", "features": [1.0]}).encode()  # scored as an error: not stored
    started = pipeline.trigger(pipeline.put("incoming/iris-ids/ids.jsonl", b"\n".join(records)))
    run_job(pipeline, started["job"], containers["iris-ids"])

    result = pipeline.status(pipeline.state_change(started["job"], "Completed"))

    assert result["store"] == {"state": "Loaded", "stored": 39}
    store = pipeline.manifest(started["manifest"])["store"]
    assert store["stored"] == 39
    assert store["skipped_errors"] == 1
    assert store["table"] == "predictions"

    def get(model: str, record_id: str) -> tuple[int, Any]:
        event = rest_event(api_template, "GET", f"/models/{model}/predictions/{record_id}")
        response = predictions.handler(event, cast(Any, FakeLambdaContext()))
        return response["statusCode"], response_json(response)

    status, body = get("iris-ids", "r1")
    assert status == 200
    assert body["prediction"]["label"] == "virginica"
    assert body["run_id"] == started["run_id"]
    assert body["model_version"] == pipeline.manifest(started["manifest"])["model_version"]
    assert get("iris-ids", "r7") == (
        404,
        {"error": {"code": "not_found", "message": "no stored prediction for this id (not scored yet, "
                   "or expired)", "field": "id"}},
    )  # fmt: skip
    with pytest.raises(NoRoute):  # a model without a store has no such route: API Gateway refuses it
        get("iris", "r1")
    status, body = get("iris-ids", "x" * 1025)
    assert (status, body["error"]["code"]) == (400, "malformed_request")


def test_a_large_store_load_hands_itself_over_until_done(
    pipeline: Pipeline, containers: dict[str, str]
) -> None:
    records = [json.dumps({"id": i, "features": ROWS[i % 3]}).encode() for i in range(1200)]
    started = pipeline.trigger(pipeline.put("incoming/iris-ids/big.jsonl", b"\n".join(records)))
    run_job(pipeline, started["job"], containers["iris-ids"])
    # Hand-over events go to the default bus; a rule delivers them to a queue the test reads.
    bus = boto3.client("events")
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="handovers")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus.put_rule(Name="handovers", EventPattern=json.dumps({"source": ["mdk.batch"]}))
    bus.put_targets(Rule="handovers", Targets=[{"Id": "q", "Arn": arn}])

    first = pipeline.status(pipeline.state_change(started["job"], "Completed"), ShortOfTime())
    assert first["store"] == {"state": "Loading", "next_line": 500, "stored": 500}
    rounds = 0
    while True:
        [message] = sqs.receive_message(QueueUrl=queue)["Messages"]
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        handover = json.loads(message["Body"])
        assert (handover["source"], handover["detail-type"]) == ("mdk.batch", "Prediction Store Load")
        result = pipeline.status(handover, ShortOfTime())
        rounds += 1
        if result["state"] == "Loaded":
            break
    assert rounds == 2
    assert pipeline.manifest(started["manifest"])["store"]["stored"] == 1200
    count = pipeline.dynamodb.scan(TableName="predictions", Select="COUNT")["Count"]
    assert count == 1200
    # A repeated hand-over after the end changes nothing.
    assert pipeline.status(handover, ShortOfTime()) == {"state": "Loaded", "stored": 1200}


def test_completed_with_short_output_is_an_alert(pipeline: Pipeline) -> None:
    started = pipeline.trigger(pipeline.put("incoming/iris/a.jsonl", b"[1,2,3,4]\n" * 10))
    pipeline.write_output(started["job"], "a.jsonl", [b'{"label":"setosa"}'] * 7)

    result = pipeline.status(pipeline.state_change(started["job"], "Completed"))

    assert result["state"] == batch.INCOMPLETE
    manifest = pipeline.manifest(started["manifest"])
    assert manifest["output"]["missing_lines"] == 3
    assert "7 of 10 lines (3 missing)" in manifest["message"]
    [alert] = pipeline.alerts()
    assert alert["Subject"] == "mdk batch Incomplete: iris incoming/iris/a.jsonl"
    assert "7 of 10 lines" in alert["Message"]


def test_completed_without_output_is_an_alert(pipeline: Pipeline) -> None:
    started = pipeline.trigger(pipeline.put("incoming/iris/a.jsonl", b"[1,2,3,4]\n" * 10))
    assert pipeline.status(pipeline.state_change(started["job"], "Completed"))["state"] == batch.INCOMPLETE
    assert "wrote no output" in pipeline.manifest(started["manifest"])["message"]
    assert len(pipeline.alerts()) == 1


def test_a_failed_job_is_reported_once(pipeline: Pipeline) -> None:
    started = pipeline.trigger(pipeline.put("incoming/iris/a.jsonl", b"[1,2,3,4]\n" * 10))
    reason = "AlgorithmError: See job logs for more information"
    event = pipeline.state_change(started["job"], "Failed", failure_reason=reason)

    first = pipeline.status(event)
    again = pipeline.status(event)  # SageMaker may send a state change more than once

    assert first == again
    assert first["state"] == batch.FAILED
    manifest = pipeline.manifest(started["manifest"])
    assert manifest["state"] == batch.FAILED
    assert manifest["job"]["failure_reason"] == reason
    assert manifest["message"] == f"SageMaker: {reason}"
    [alert] = pipeline.alerts()
    assert reason in alert["Message"]
    assert alert["MessageAttributes"]["model"]["Value"] == "iris"


def test_a_stopped_job_is_reported(pipeline: Pipeline) -> None:
    started = pipeline.trigger(pipeline.put("incoming/iris/a.jsonl", b"[1,2,3,4]\n"))
    assert pipeline.status(pipeline.state_change(started["job"], "Stopped"))["state"] == batch.STOPPED
    [alert] = pipeline.alerts()
    assert "stopped" in alert["Message"]


def test_states_that_are_not_final_are_ignored(pipeline: Pipeline) -> None:
    started = pipeline.trigger(pipeline.put("incoming/iris/a.jsonl", b"[1,2,3,4]\n"))
    assert pipeline.status(pipeline.state_change(started["job"], "InProgress"))["state"] == "Ignored"
    assert pipeline.manifest(started["manifest"])["state"] == batch.IN_PROGRESS


def test_local_runs_write_the_same_manifest(tmp_path: Path) -> None:
    """``mdk batch run``'s path: preflight, transform and reconcile without AWS."""
    from mdk.local.transform import run_file

    model = batch_config().model("iris")
    data = tmp_path / "day.csv"
    data.write_text("5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n1,2\n")
    local = run_file(model, data, tmp_path / "results", bundle_dir=tmp_path / "bundle")
    manifest = local.manifest.to_json()
    assert manifest["state"] == batch.COMPLETED
    assert (manifest["input"]["lines"], manifest["output"]["lines"], manifest["output"]["error_lines"]) == (
        3,
        3,
        1,
    )
    written = json.loads(local.path.read_text())
    assert written["run_id"] == manifest["run_id"]
    assert written == manifest  # what it returns is what it wrote
    header = tmp_path / "header.csv"
    header.write_text("a,b,c,d\n1,2,3,4\n")
    refused = run_file(model, header, tmp_path / "results", bundle_dir=tmp_path / "bundle").manifest
    assert refused.state == batch.REJECTED
    assert refused.errors[0]["code"] == "csv_header"


def _recorded_state_change() -> dict[str, Any]:
    recorded: dict[str, Any] = json.loads((EVENTS / "sagemaker-transform-job-state-change.json").read_text())
    return recorded


def test_aws_example_state_change_is_not_this_deployments(pipeline: Pipeline) -> None:
    """The SageMaker guide's own example event, unchanged (job "myjob", output in another bucket): it
    once crashed the function (another bucket's manifest read, or ``expected an s3:// URI``); now a
    logged, counted no-op."""
    result = pipeline.status(_recorded_state_change())
    assert result == {"state": "Ignored", "reason": "not this deployment's: job 'myjob'"}
    assert pipeline.alerts() == []
    assert pipeline.s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0
    # Not even an idempotency record: a foreign event leaves nothing behind.
    assert pipeline.dynamodb.scan(TableName="idempotency")["Count"] == 0


def test_a_job_named_like_ours_with_output_elsewhere_is_not_this_deployments(pipeline: Pipeline) -> None:
    """A job whose name has this deployment's prefix but whose output is in another bucket (or not an
    S3 URI at all) was not started by this trigger: nothing is read or written for it."""
    started = pipeline.trigger(pipeline.put("incoming/iris/a.jsonl", b"[1,2,3,4]\n"))
    for output in ("s3://amzn-s3-demo-bucket1/results/", "https://example.com/results/"):
        event = transform_state_change(started["job"], "Failed", output_path=output)
        result = pipeline.status(event)
        assert result["state"] == "Ignored", output
        assert "not this deployment's" in result["reason"]
    assert pipeline.manifest(started["manifest"])["state"] == batch.IN_PROGRESS
    assert pipeline.alerts() == []


def test_finished_runs_give_sagemakers_shared_transform_log_group_the_kits_retention(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(batch.TRANSFORM_LOG_RETENTION_ENV, "90")
    monkeypatch.setattr(batch_status, "_RETENTION_SET", [])
    logs = boto3.client("logs", region_name="us-east-1")
    rows = b"\n".join(json.dumps(r).encode() for r in ROWS)

    # No job has logged yet, so no group: the run is reconciled all the same, the miss is counted.
    first = pipeline.trigger(pipeline.put("incoming/iris/first.jsonl", rows))
    assert (
        pipeline.status(pipeline.state_change(first["job"], "Failed", failure_reason="x"))["state"]
        == "Failed"
    )
    assert batch_status._RETENTION_SET == []
    # SageMaker creates the group (without retention) when a job logs; the next finished run sets it.
    logs.create_log_group(logGroupName=batch.TRANSFORM_LOGS)
    second = pipeline.trigger(pipeline.put("incoming/iris/second.jsonl", rows))
    pipeline.status(pipeline.state_change(second["job"], "Stopped"))
    [group] = logs.describe_log_groups(logGroupNamePrefix=batch.TRANSFORM_LOGS)["logGroups"]
    assert group["retentionInDays"] == 90
    assert batch_status.keep_transform_logs() == "kept"  # once per sandbox
