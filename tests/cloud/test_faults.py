"""Fault injection on the local cloud, each with the outcome the kit promises asserted.

The faults are injected where AWS would produce them: a corrupt model file inside the new version's
image, a transform job that fails or completes with short output (the local runner stands in for
SageMaker and has fault knobs for that), and S3 events delivered twice, concurrently. An alarm firing
mid-canary is in test_local_cloud.py.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from mdk.local.cloud.cloud import LocalCloud
from mdk.local.cloud.functions import FunctionCode, FunctionRunner
from mdk.local.dockerfile import StagedImage
from tests.cloud.conftest import REPO, Config, signed
from tests.cloud.test_local_cloud import FUNCTION, alias, wait_for_manifest

ROWS = [[6.3, 3.4, 5.6, 2.4], [5.8, 2.7, 5.1, 1.9], [5.0, 3.4, 1.5, 0.2]]


@pytest.fixture(scope="module")
def alerts(cloud: LocalCloud) -> Any:
    """An SQS queue subscribed to the stack's alarm topic: what an on-call engineer would receive."""
    sqs, sns = cloud.session.client("sqs"), cloud.session.client("sns")
    queue = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = next(v for k, v in cloud.ready.stacks[0].outputs.items() if k.startswith("AlarmTopicArn"))  # type: ignore[union-attr]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)

    def received(timeout: float = 30) -> list[dict[str, Any]]:
        deadline, messages = time.monotonic() + timeout, list[dict[str, Any]]()
        while time.monotonic() < deadline and not messages:
            for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
                messages.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        return messages

    return received


def upload(cloud: LocalCloud, name: str, lines: list[str]) -> str:
    bucket = cloud.ready.bucket if cloud.ready else None
    assert bucket
    cloud.session.client("s3").put_object(
        Bucket=bucket, Key=f"incoming/iris/{name}", Body=("\n".join(lines) + "\n").encode()
    )
    return bucket


def test_a_failed_transform_job_gives_a_failed_manifest_and_an_alert(cloud: LocalCloud, alerts: Any) -> None:
    cloud.transforms.faults.append("fail")
    bucket = upload(cloud, "fails.jsonl", [json.dumps(r) for r in ROWS])
    manifest = wait_for_manifest(cloud.session.client("s3"), bucket, "fails.jsonl")
    assert manifest["state"] == "Failed"
    assert "injected fault" in manifest["job"]["failure_reason"]
    (alert,) = [a for a in alerts() if "fails.jsonl" in a["Message"]]
    assert "Failed" in alert["Subject"]


def test_a_completed_job_with_short_output_is_reported_incomplete(cloud: LocalCloud, alerts: Any) -> None:
    cloud.transforms.faults.append("short")
    bucket = upload(cloud, "short.jsonl", [json.dumps(r) for r in ROWS])
    manifest = wait_for_manifest(cloud.session.client("s3"), bucket, "short.jsonl")
    assert manifest["state"] == "Incomplete", manifest
    assert manifest["message"] == "SageMaker reported Completed but the output has 2 of 3 lines (1 missing)"
    assert [a for a in alerts() if "short.jsonl" in a["Message"]]


def test_an_s3_event_delivered_twice_at_once_starts_one_job(cloud: LocalCloud) -> None:
    """S3 events are at-least-once: the same event (same sequencer) twice, concurrently, is one run."""
    bucket = upload(cloud, "twice.jsonl", [json.dumps(r) for r in ROWS])
    s3, sagemaker, events = (cloud.session.client(n) for n in ("s3", "sagemaker", "events"))
    wait_for_manifest(s3, bucket, "twice.jsonl")  # the upload's own event: one run
    head = s3.head_object(Bucket=bucket, Key="incoming/iris/twice.jsonl")
    detail = {
        "version": "0",
        "bucket": {"name": bucket},
        "object": {
            "key": "incoming/iris/twice.jsonl",
            "size": head["ContentLength"],
            "etag": head["ETag"].strip('"'),
            "version-id": head["VersionId"],
            "sequencer": "00FFFFFFFFFFFFFFFF",
        },
        "reason": "PutObject",
    }
    entry = {"Source": "aws.s3", "DetailType": "Object Created", "Detail": json.dumps(detail)}
    jobs_before = len(sagemaker.list_transform_jobs(MaxResults=100)["TransformJobSummaries"])
    threads = [threading.Thread(target=events.put_events, kwargs={"Entries": [entry]}) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = sagemaker.list_transform_jobs(MaxResults=100)["TransformJobSummaries"]
        if len(jobs) > jobs_before and all(j["TransformJobStatus"] != "InProgress" for j in jobs):
            break
        time.sleep(0.25)
    time.sleep(2)  # the second delivery's trigger has had time to (wrongly) start another
    assert len(sagemaker.list_transform_jobs(MaxResults=100)["TransformJobSummaries"]) == jobs_before + 1


def test_a_corrupt_model_in_the_new_image_never_gets_traffic(
    cloud: LocalCloud, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new version's image carries a truncated model: its init fails, health answers 503, the
    pre-traffic hook reports Failed and the alias stays where it was."""
    before = alias(cloud)
    original = FunctionRunner._stage
    serving_key = cloud.runner.code[(FUNCTION, before[0])].key

    def corrupting(self: FunctionRunner, code: FunctionCode) -> StagedImage:
        staged = original(self, code)
        if code.kind == "image" and code.key != serving_key:
            for model in staged.task_root.rglob("model.onnx"):
                data = model.read_bytes()
                model.unlink()  # staged files may share inodes with the layer cache: never write through
                model.write_bytes(data[: len(data) // 3])
        return staged

    monkeypatch.setattr(FunctionRunner, "_stage", corrupting)
    config.iris_artifact(REPO / "models/iris/v2/model.onnx")
    cloud.deploy()
    rollout = cloud.rollouts[-1]
    assert rollout.done.wait(120)
    assert rollout.status == "Failed"
    assert "BeforeAllowTraffic" in rollout.message
    assert alias(cloud) == before
    result = cloud.runner.invoke(FUNCTION, rollout.change.to_version, json.dumps(health_event()).encode())
    answer = json.loads(result.payload)
    assert answer["statusCode"] == 503
    assert "model" in json.loads(answer["body"])["error"]["message"]
    status, _, _ = signed(f"{cloud.gateway.url}models/iris/health")
    assert status == 200  # the API still answers from the old version


def health_event() -> dict[str, Any]:
    """A REST API proxy event for GET /models/iris/health, as the gateway sends it."""
    return {
        "resource": "/models/iris/health",
        "path": "/models/iris/health",
        "httpMethod": "GET",
        "headers": {},
        "requestContext": {"requestId": "fault-test", "stage": "dev"},
        "pathParameters": None,
        "body": None,
        "isBase64Encoded": False,
    }
