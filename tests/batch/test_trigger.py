"""The trigger: an upload starts exactly one transform job, or leaves a manifest saying why not."""

from __future__ import annotations

import gzip
import json
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from botocore.stub import Stubber

from lambda_handlers import batch_aws
from mdk_runtime import batch
from tests.batch.conftest import BUCKET, DEPLOYMENT, Pipeline, batch_config
from tests.events import EVENTS, s3_object_created

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def jsonl(rows: list[Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def test_an_upload_starts_one_transform_job_with_the_models_settings(pipeline: Pipeline) -> None:
    event = pipeline.put("incoming/iris/day one.jsonl", jsonl(ROWS))
    result = pipeline.trigger(event)

    assert result["state"] == batch.IN_PROGRESS
    [name] = pipeline.jobs()
    assert name == result["job"]
    assert name.startswith(f"{batch.job_prefix(DEPLOYMENT)}iris-")
    job = pipeline.sagemaker.describe_transform_job(TransformJobName=name)
    run = result["run_id"]
    assert job["ModelName"] == f"{DEPLOYMENT}-batch-iris"
    assert job["BatchStrategy"] == "MultiRecord"
    assert job["MaxPayloadInMB"] == 1
    assert job["MaxConcurrentTransforms"] == 1
    assert job["TransformInput"] == {
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": f"s3://{BUCKET}/staging/iris/{run}/day one.jsonl",
            }
        },
        "ContentType": "application/jsonlines",
        "CompressionType": "None",
        "SplitType": "Line",
    }
    assert job["TransformOutput"]["S3OutputPath"] == f"s3://{BUCKET}/results/iris/{run}/output/"
    assert job["TransformOutput"]["Accept"] == "application/jsonlines"
    assert job["TransformOutput"]["AssembleWith"] == "Line"
    assert job["TransformResources"]["InstanceType"] == "ml.m5.large"
    # The exact uploaded bytes were staged for the job.
    staged = pipeline.s3.get_object(Bucket=BUCKET, Key=f"staging/iris/{run}/day one.jsonl")
    assert staged["Body"].read() == jsonl(ROWS)

    manifest = pipeline.manifest(f"results/iris/{run}/_status.json")
    assert manifest["state"] == batch.IN_PROGRESS
    assert manifest["input"]["lines"] == 3
    assert manifest["input"]["key"] == "incoming/iris/day one.jsonl"
    assert manifest["job"]["name"] == name
    assert manifest["job"]["arn"].endswith(f"transform-job/{name}")
    assert pipeline.alerts() == []


def test_ids_are_joined_back_to_each_output(pipeline: Pipeline) -> None:
    records = [{"id": f"r{i}", "features": row} for i, row in enumerate(ROWS)]
    result = pipeline.trigger(pipeline.put("incoming/iris-ids/a.jsonl", jsonl(records)))
    job = pipeline.sagemaker.describe_transform_job(TransformJobName=result["job"])
    assert job["DataProcessing"] == {
        "InputFilter": "$.features",
        "JoinSource": "Input",
        "OutputFilter": "$['id','SageMakerOutput']",
    }


def test_the_same_event_twice_starts_one_job(pipeline: Pipeline) -> None:
    event = pipeline.put("incoming/iris/a.jsonl", jsonl(ROWS))
    first = pipeline.trigger(event)
    second = pipeline.trigger(event)
    assert first == second
    assert len(pipeline.jobs()) == 1


def test_the_same_event_twice_at_once_starts_one_job(pipeline: Pipeline) -> None:
    event = pipeline.put("incoming/iris/a.jsonl", jsonl(ROWS))
    barrier = threading.Barrier(2)
    outcomes: list[Any] = []

    def deliver() -> None:
        barrier.wait()
        try:
            outcomes.append(pipeline.trigger(event))
        except IdempotencyAlreadyInProgressError as exc:
            outcomes.append(exc)  # Lambda retries this delivery later; it then gets the first's result

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(pipeline.jobs()) == 1
    results = [o for o in outcomes if isinstance(o, dict)]
    assert results
    assert all(r["state"] == batch.IN_PROGRESS for r in results)
    # The retry of a delivery that found the first in progress returns the same run.
    assert pipeline.trigger(event) == results[0]


def test_an_overwrite_of_the_key_is_a_new_run(pipeline: Pipeline) -> None:
    first = pipeline.trigger(pipeline.put("incoming/iris/a.jsonl", jsonl(ROWS)))
    second = pipeline.trigger(pipeline.put("incoming/iris/a.jsonl", jsonl(ROWS[:2])))
    assert first["run_id"] != second["run_id"]
    assert sorted(pipeline.jobs()) == sorted([first["job"], second["job"]])
    # Each run scores its own version of the key.
    manifest = pipeline.manifest(second["manifest"])
    assert manifest["input"]["lines"] == 2


def test_a_job_that_already_exists_is_not_an_error(pipeline: Pipeline) -> None:
    """SageMaker refuses a second job of the same name (moto does not): that means 'already started'."""
    event = pipeline.put("incoming/iris/a.jsonl", jsonl(ROWS))
    sagemaker = batch_aws.client("sagemaker")
    with Stubber(sagemaker) as stub:
        stub.add_client_error(
            "create_transform_job", service_error_code="ResourceInUse", http_status_code=400
        )
        stub.add_response(
            "describe_transform_job",
            {
                "TransformJobName": "x",
                "TransformJobArn": "arn:aws:sagemaker:us-east-1:123456789012:transform-job/x",
                "TransformJobStatus": "InProgress",
                "ModelName": "m",
                "TransformInput": {
                    "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/k"}}
                },
                "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
                "CreationTime": "2026-11-29T10:00:00Z",
            },
        )
        result = pipeline.trigger(event)
    assert result["state"] == batch.IN_PROGRESS
    manifest = pipeline.manifest(result["manifest"])
    assert manifest["job"]["arn"].endswith("transform-job/x")
    assert pipeline.alerts() == []


def test_a_refused_job_is_reported_not_retried(pipeline: Pipeline) -> None:
    event = pipeline.put("incoming/iris/a.jsonl", jsonl(ROWS))
    with Stubber(batch_aws.client("sagemaker")) as stub:
        stub.add_client_error(
            "create_transform_job",
            service_error_code="ResourceLimitExceeded",
            service_message="The account-level service limit 'ml.m5.large for transform job usage' is 0",
            http_status_code=400,
        )
        result = pipeline.trigger(event)
    assert result["state"] == batch.FAILED
    manifest = pipeline.manifest(result["manifest"])
    assert manifest["state"] == batch.FAILED
    assert "service limit" in manifest["job"]["failure_reason"]
    [alert] = pipeline.alerts()
    assert alert["MessageAttributes"]["state"]["Value"] == batch.FAILED


def test_throttling_is_raised_for_lambda_to_retry(pipeline: Pipeline) -> None:
    event = pipeline.put("incoming/iris/a.jsonl", jsonl(ROWS))
    with Stubber(batch_aws.client("sagemaker")) as stub:
        stub.add_client_error("create_transform_job", service_error_code="ThrottlingException")
        with pytest.raises(Exception, match="ThrottlingException"):
            pipeline.trigger(event)
    # The failed attempt left no idempotency record behind: the retry starts the job.
    assert pipeline.trigger(event)["state"] == batch.IN_PROGRESS
    assert len(pipeline.jobs()) == 1


@pytest.mark.parametrize(
    ("key", "body", "code", "field", "words"),
    [
        ("incoming/nosuch/a.jsonl", b"[1,2,3,4]\n", "unknown_model", "key", "no model named 'nosuch'"),
        ("incoming/iris-off/a.jsonl", b"[1,2,3,4]\n", "unknown_model", "key", "'iris-off' takes no batch"),
        ("incoming/No Such/a.jsonl", b"[1,2,3,4]\n", "unknown_model", "key", "no model named 'No Such'"),
        ("incoming/iris/a.txt", b"[1,2,3,4]\n", "unsupported_format", "key", ".csv, .jsonl, .ndjson"),
        ("incoming/iris/a.jsonl", b"", "empty_file", "file", "no records"),
        ("incoming/iris/a.jsonl", b"\n  \n", "empty_file", "file", "no records"),
        ("incoming/iris/a.jsonl.gz", b"not gzip", "bad_gzip", "key", "not valid gzip"),
        ("incoming/iris/a.csv", b"a,b,c,d\n1,2,3,4\n", "csv_header", "line 1", "looks like a header"),
        ("incoming/iris-ids/a.csv", b"1,2,3,4\n", "id_needs_json_lines", "file", "JSON Lines"),
        ("incoming/iris-ids/a.jsonl", b"[1,2,3,4]\n", "bad_record", "line 1", '"id" and "features"'),
        ("incoming/iris.jsonl", b"[1,2,3,4]\n", "bad_key", "key", "incoming/<model>/<file>"),
    ],
)
def test_refused_files_get_a_manifest_and_an_alert(
    pipeline: Pipeline, key: str, body: bytes, code: str, field: str, words: str
) -> None:
    result = pipeline.trigger(pipeline.put(key, body))
    assert result["state"] == batch.REJECTED
    assert pipeline.jobs() == []
    manifest = pipeline.manifest(result["manifest"])
    assert manifest["state"] == batch.REJECTED
    assert manifest["input"]["key"] == key
    [error] = manifest["errors"]
    assert (error["code"], error["field"]) == (code, field)
    assert words in error["message"]
    [alert] = pipeline.alerts()
    assert alert["Subject"].startswith("mdk batch Rejected")
    assert f"s3://{BUCKET}/{result['manifest']}" in alert["Message"]
    assert words in alert["Message"]


def test_a_record_larger_than_a_request_is_refused_by_line(pipeline: Pipeline) -> None:
    big = json.dumps([1.0] * 300_000).encode()  # > 1 MB: iris' max_payload_mb here
    result = pipeline.trigger(pipeline.put("incoming/iris/a.jsonl", jsonl(ROWS[:2]) + big + b"\n"))
    [error] = pipeline.manifest(result["manifest"])["errors"]
    assert error["code"] == "record_too_large"
    assert error["field"] == "line 3"
    assert "max_payload_mb" in error["message"]


def test_gzip_files_and_csv_are_scored_as_they_are(pipeline: Pipeline) -> None:
    csv_rows = b"".join(",".join(map(str, r)).encode() + b"\n" for r in ROWS)
    result = pipeline.trigger(pipeline.put("incoming/iris/b.csv.gz", gzip.compress(csv_rows)))
    job = pipeline.sagemaker.describe_transform_job(TransformJobName=result["job"])
    assert job["TransformInput"]["ContentType"] == "text/csv"
    assert job["TransformInput"]["CompressionType"] == "Gzip"
    assert pipeline.manifest(result["manifest"])["input"]["lines"] == 3


def test_folder_markers_are_not_files(pipeline: Pipeline) -> None:
    assert pipeline.trigger(pipeline.put("incoming/iris/", b""))["state"] == "Ignored"
    assert pipeline.jobs() == []
    assert pipeline.alerts() == []


# Instance types with local NVMe storage, as AWS lists them (EC2 "Instance store volumes"); for these,
# CreateTransformJob refuses a VolumeKmsKeyId: "You can't request a VolumeKmsKeyId when using an instance
# type with local storage" (TransformResources, Amazon SageMaker API Reference,
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TransformResources.html). moto accepts it.
LOCAL_NVME = ("ml.g4dn.xlarge", "ml.g5.2xlarge", "ml.p4d.24xlarge", "ml.c5d.xlarge")


class _Refusal:
    """What botocore needs of an HTTP response to raise the parsed error as a ClientError."""

    status_code = 400
    headers: dict[str, str] = {}  # noqa: RUF012 - read only


def refuse_volume_keys_as_aws_does(client: Any, sent: list[dict[str, Any]]) -> None:
    """Make ``client``'s CreateTransformJob answer as SageMaker does for a volume key on local NVMe."""

    def check(params: dict[str, Any], **_: Any) -> Any:
        request = json.loads(params["body"])
        sent.append(request)
        resources = request["TransformResources"]
        if resources["InstanceType"] in LOCAL_NVME and "VolumeKmsKeyId" in resources:
            message = (
                f"Volume KMS key is not supported for instance type {resources['InstanceType']} "
                "with local storage"
            )
            error = {"Error": {"Code": "ValidationException", "Message": message}}
            return _Refusal(), {**error, "ResponseMetadata": {"HTTPStatusCode": 400}}
        return None  # on to moto

    client.meta.events.register("before-call.sagemaker.CreateTransformJob", check)


@pytest.mark.parametrize("instance_type", LOCAL_NVME)
def test_local_nvme_instance_types_get_no_volume_key(pipeline: Pipeline, instance_type: str) -> None:
    pipeline.configure(batch_config(instance_type=instance_type))
    sent: list[dict[str, Any]] = []
    refuse_volume_keys_as_aws_does(batch_aws.client("sagemaker"), sent)

    result = pipeline.trigger(pipeline.put("incoming/iris/a.jsonl", jsonl(ROWS)))

    assert result["state"] == batch.IN_PROGRESS, pipeline.manifest(result["manifest"])["message"]
    [request] = sent
    assert request["TransformResources"] == {"InstanceType": instance_type, "InstanceCount": 1}
    # The output is still encrypted with the data key (S3 objects, not the instance's volume).
    assert request["TransformOutput"]["KmsKeyId"].startswith("arn:aws:kms:")
    assert pipeline.alerts() == []


@pytest.mark.parametrize("instance_type", ["ml.m5.large", "ml.c5.xlarge"])
def test_instance_types_with_ebs_volumes_get_the_data_key(pipeline: Pipeline, instance_type: str) -> None:
    pipeline.configure(batch_config(instance_type=instance_type))
    sent: list[dict[str, Any]] = []
    refuse_volume_keys_as_aws_does(batch_aws.client("sagemaker"), sent)

    result = pipeline.trigger(pipeline.put("incoming/iris/a.jsonl", jsonl(ROWS)))

    assert result["state"] == batch.IN_PROGRESS
    [request] = sent
    key = request["TransformOutput"]["KmsKeyId"]
    assert request["TransformResources"]["VolumeKmsKeyId"] == key


def _objects(pipeline: Pipeline, bucket: str) -> list[str]:
    return [o["Key"] for o in pipeline.s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_aws_example_event_of_another_bucket_is_not_this_deployments(pipeline: Pipeline) -> None:
    """S3's documented example event, unchanged: a bucket this deployment does not own (and that need
    not exist) is no upload of ours: no read, no manifest, no job, no alert, no crash."""
    event = json.loads((EVENTS / "s3-object-created.json").read_text())
    result = pipeline.trigger(event)
    assert result == {
        "state": "Ignored",
        "reason": "not this deployment's: bucket 'amzn-s3-demo-bucket1' is not its inbox",
    }
    assert pipeline.jobs() == []
    assert _objects(pipeline, BUCKET) == []
    assert pipeline.alerts() == []


def test_an_upload_to_another_bucket_writes_nothing_there(pipeline: Pipeline) -> None:
    """A rule of someone else's (or a replayed event) sends an upload of another bucket: the trigger
    must not write its staging copy and manifest into whichever bucket the event names."""
    other = "someone-elses-bucket"
    pipeline.s3.create_bucket(Bucket=other)
    pipeline.s3.put_bucket_versioning(Bucket=other, VersioningConfiguration={"Status": "Enabled"})
    response = pipeline.s3.put_object(Bucket=other, Key="incoming/iris/a.jsonl", Body=jsonl(ROWS))
    event = s3_object_created(
        other, "incoming/iris/a.jsonl", version_id=response["VersionId"], sequencer="0055AED6DCD90281E5",
        size=len(jsonl(ROWS)),
    )  # fmt: skip

    result = pipeline.trigger(event)

    assert result["state"] == "Ignored"
    assert "not this deployment's" in result["reason"]
    assert _objects(pipeline, other) == ["incoming/iris/a.jsonl"]
    assert pipeline.jobs() == []
    assert pipeline.alerts() == []


def test_a_file_refused_before_it_is_read_is_dated_by_the_events_time(pipeline: Pipeline) -> None:
    """A key refused before the object is read (no model of that name) takes its run id's time from
    the event: moto's S3 notification, as the local cloud delivers it to the trigger, carries it in
    epoch seconds, once read as milliseconds (a run id of January 1970)."""
    event = pipeline.put_raw("incoming/nosuch/a.jsonl", b"[1,2,3,4]\n")
    assert isinstance(event["time"], float)
    head = pipeline.s3.head_object(Bucket=BUCKET, Key="incoming/nosuch/a.jsonl")
    result = pipeline.trigger(event)
    assert result["state"] == batch.REJECTED
    dated = datetime.strptime(result["run_id"][:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs((dated - head["LastModified"]).total_seconds()) < 60  # the same moment, to the second
    assert pipeline.manifest(result["manifest"])["run_id"] == result["run_id"]
    pipeline.alerts()
