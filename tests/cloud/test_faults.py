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

from mdk.images import StagedImage
from mdk.local.cloud.cloud import LocalCloud
from mdk.local.cloud.services.cloudwatch import single_metric
from mdk.local.cloud.services.lambda_ import FunctionCode, FunctionRunner
from tests.cloud.conftest import MINUTE_S, REPO, Config, signed
from tests.cloud.test_local_cloud import FUNCTION, alias, wait_for_manifest

ROWS = [[6.3, 3.4, 5.6, 2.4], [5.8, 2.7, 5.1, 1.9], [5.0, 3.4, 1.5, 0.2]]


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
    (alert,) = alerts.about("fails.jsonl")
    assert "Failed" in alert["Subject"]


def test_a_completed_job_with_short_output_is_reported_incomplete(cloud: LocalCloud, alerts: Any) -> None:
    cloud.transforms.faults.append("short")
    bucket = upload(cloud, "short.jsonl", [json.dumps(r) for r in ROWS])
    manifest = wait_for_manifest(cloud.session.client("s3"), bucket, "short.jsonl")
    assert manifest["state"] == "Incomplete", manifest
    assert manifest["message"] == "SageMaker reported Completed but the output has 2 of 3 lines (1 missing)"
    assert alerts.about("short.jsonl")


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


# ------------------------------------------------------------------------ AWS throttling and outages

TRIGGER = "mdk-dev-shared-BatchTrigger8D9E9196"
CREATE_JOB = "SageMaker.CreateTransformJob"


def test_throttled_aws_calls_are_retried_with_backoff_and_the_run_completes(cloud: LocalCloud) -> None:
    """SageMaker throttles the trigger's CreateTransformJob three times: the SDK's standard retries
    (exponential backoff with jitter) get the job started on the fourth attempt; every line is answered."""
    faults = cloud.aws.faults
    faults.throttle(CREATE_JOB, times=3)
    try:
        bucket = upload(cloud, "throttled.jsonl", [json.dumps(r) for r in ROWS])
        manifest = wait_for_manifest(cloud.session.client("s3"), bucket, "throttled.jsonl")
    finally:
        faults.clear()
    assert manifest["state"] == "Completed", manifest
    assert manifest["input"]["lines"] == manifest["output"]["lines"] == len(ROWS)
    assert (faults.refused[CREATE_JOB], faults.calls[CREATE_JOB]) == (3, 4)


@pytest.mark.usefixtures("empty_dead_letters")
def test_throttling_past_every_retry_lands_the_event_in_the_dead_letter_queue_and_alarms(
    cloud: LocalCloud, alerts: Any
) -> None:
    """Throttled for good: four SDK attempts per invocation, Lambda's two asynchronous retries, then the
    on-failure destination gets the event with the error (Lambda's record), the dead-letter alarm fires
    and tells the alert topic. The file is still in the bucket; nothing is dropped."""
    faults = cloud.aws.faults
    faults.throttle(CREATE_JOB, times=1_000)
    try:
        upload(cloud, "throttled-for-good.jsonl", [json.dumps(r) for r in ROWS])
        record = dead_letter(cloud, "throttled-for-good.jsonl")
    finally:
        faults.clear()
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["responsePayload"]["errorType"] == "ClientError"
    assert "ThrottlingException" in record["responsePayload"]["errorMessage"]
    assert faults.calls[CREATE_JOB] == 3 * 4  # three invocations, four SDK attempts each
    assert_dead_letter_alarm(cloud, alerts)


def test_the_local_aws_restarted_mid_batch_the_run_resumes_and_completes(cloud: LocalCloud) -> None:
    """The S3 event is on its way to the trigger when the local AWS endpoint goes down (connections
    refused) and comes back on the same port, state kept: the trigger's first invocation fails on its
    first AWS call, Lambda's asynchronous retry runs it again once AWS answers, and the run completes
    with every line, once."""
    trigger = cloud.runner.process(TRIGGER, "$LATEST")
    s3 = cloud.session.client("s3")
    jobs_before = len(
        cloud.session.client("sagemaker").list_transform_jobs(MaxResults=100)["TransformJobSummaries"]
    )
    with trigger.lock:  # the trigger's sandbox is busy: the event waits for it, as a queued invocation
        bucket = upload(cloud, "restarted.jsonl", [json.dumps(r) for r in ROWS])
        cloud.aws.stop()
    # The trigger now runs against a dead endpoint; shorter than Lambda's first retry delay (one
    # simulated minute) later, the same endpoint answers again.
    time.sleep(0.2 * MINUTE_S / 0.3)
    cloud.aws.restart()
    manifest = wait_for_manifest(s3, bucket, "restarted.jsonl")
    assert manifest["state"] == "Completed", manifest
    assert manifest["input"]["lines"] == manifest["output"]["lines"] == len(ROWS)
    jobs = cloud.session.client("sagemaker").list_transform_jobs(MaxResults=100)["TransformJobSummaries"]
    assert len(jobs) == jobs_before + 1


@pytest.mark.usefixtures("empty_dead_letters")
def test_the_local_aws_down_past_every_retry_reports_the_run_in_the_dead_letter_queue(
    cloud: LocalCloud, alerts: Any
) -> None:
    """Down for longer than Lambda retries (ten simulated minutes): the three invocations fail, and
    Lambda's on-failure record reaches the dead-letter queue once SQS answers again, with the event (the
    bucket, key and sequencer to start the run again) and the error; the dead-letter alarm notifies."""
    trigger = cloud.runner.process(TRIGGER, "$LATEST")
    with trigger.lock:
        upload(cloud, "down-for-long.jsonl", [json.dumps(r) for r in ROWS])
        cloud.aws.stop()
    time.sleep(10 * MINUTE_S)
    cloud.aws.restart()
    record = dead_letter(cloud, "down-for-long.jsonl")
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert "Could not connect to the endpoint URL" in record["responsePayload"]["errorMessage"]
    assert record["requestPayload"]["detail"]["object"]["sequencer"]
    assert_dead_letter_alarm(cloud, alerts)


def dead_letter(cloud: LocalCloud, name: str, timeout: float = 120) -> dict[str, Any]:
    """Lambda's on-failure record for the event of inbox file ``name``, left in the queue (visible)."""
    sqs = cloud.session.client("sqs")
    queue = next(url for url in sqs.list_queues().get("QueueUrls", []) if "DeadLetters" in url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=0).get(
            "Messages", []
        ):
            body = json.loads(message["Body"])
            if body["requestPayload"]["detail"]["object"]["key"].endswith(name):
                return dict(body)
        time.sleep(0.5)
    raise AssertionError(f"the event of {name} never reached the dead-letter queue")


def dead_letter_alarms(cloud: LocalCloud) -> list[str]:
    cloudwatch = cloud.session.client("cloudwatch")
    names = [
        a["AlarmName"]
        for a in cloudwatch.describe_alarms()["MetricAlarms"]
        if (single_metric(a) or {}).get("Namespace") == "AWS/SQS"
    ]
    assert names, "the stack defines a dead-letter alarm"
    return sorted(names)


def alarm_states(cloud: LocalCloud, names: list[str]) -> set[str]:
    alarms = cloud.session.client("cloudwatch").describe_alarms(AlarmNames=names)["MetricAlarms"]
    return {a["StateValue"] for a in alarms}


@pytest.fixture
def empty_dead_letters(cloud: LocalCloud) -> None:
    """An empty dead-letter queue and its alarm out of ALARM, whatever earlier tests left."""
    sqs = cloud.session.client("sqs")
    queue = next(url for url in sqs.list_queues().get("QueueUrls", []) if "DeadLetters" in url)
    while messages := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"):
        for message in messages:  # as an operator would, once the runs are restarted (PurgeQueue: 1/min)
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    names = dead_letter_alarms(cloud)
    deadline = time.monotonic() + 60
    while "ALARM" in alarm_states(cloud, names) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert "ALARM" not in alarm_states(cloud, names)


def assert_dead_letter_alarm(cloud: LocalCloud, alerts: Any) -> None:
    """The dead-letter queue's alarm goes into ALARM and the alert topic is told."""
    (name,) = dead_letter_alarms(cloud)
    assert alerts.alarmed(name), "the dead-letter alarm did not tell the alert topic"
    assert alarm_states(cloud, [name]) == {"ALARM"}
