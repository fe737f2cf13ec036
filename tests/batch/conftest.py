"""The batch pipeline against moto: the bucket, tables, topic and SageMaker models the stack creates.

The functions run in process with real boto3 calls (moto answers); each model's batch settings are its
registry entry in (moto's) SSM, written with the code its stack writes it with (``mdk.registry.Deployed``,
``mdk.bundle.batch_topology``), naming a SageMaker model created in moto. Their events are what AWS would
deliver: an upload's "Object Created" is the one moto's S3 sends to EventBridge (the bucket has
EventBridge notifications on, as the stack's does), through a rule with the stack's own pattern
(``batch.uploads_pattern``, asserted against the synthesized template) to a queue the test reads; a
job's state change is AWS's recorded example (tests/events) with the job's name, state and output,
checked against the stack's status rule pattern. Alerts reach an SQS queue subscribed to the topic, so
tests read them as a subscriber would.
"""

from __future__ import annotations

import copy
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import boto3
import pytest
from moto import mock_aws
from moto.events.models import EventPattern, Rule

from lambda_handlers import batch_aws, batch_status, batch_trigger, predictions
from mdk.bundle import batch_topology, model_spec
from mdk.config import KitConfig, ModelConfig, parse_config
from mdk.registry import Deployed, LambdaTopology, model_parameter
from mdk_runtime import batch
from tests.events import FakeLambdaContext, transform_state_change

REPO = Path(__file__).resolve().parents[2]
PROJECT, STAGE = "mdk", "test"
DEPLOYMENT = f"{PROJECT}-{STAGE}"
REGISTRY = model_parameter(PROJECT, STAGE, "")
BUCKET = "mdk-test-batch"
REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/mdk-test-batch"


def create_store_table(dynamodb: Any, name: str) -> None:
    """The prediction store's table, keyed as the stack's (model, id)."""
    dynamodb.create_table(
        TableName=name,
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


def batch_config(**iris_batch: Any) -> KitConfig:
    """iris twice: plain records, and records with ids whose predictions are stored.

    ``iris_batch``: more batch settings of the first model (e.g. its ``instance_type``).
    """
    data = {
        "project": "mdk",
        "models": [
            {
                "name": "iris",
                "artifact": "models/iris/v1/model.onnx",
                "runtime": "lambda",
                "schema": {"labels": ["setosa", "versicolor", "virginica"]},
                "batch": {"max_payload_mb": 1, **iris_batch},
            },
            {
                "name": "iris-ids",
                "artifact": "models/iris/v2/model.onnx",
                "runtime": "lambda",
                "schema": {"labels": ["setosa", "versicolor", "virginica"]},
                "batch": {"id_field": "id", "store": {"ttl_days": 30}, "max_payload_mb": 2},
            },
            {
                "name": "iris-off",
                "artifact": "models/iris/v1/model.onnx",
                "runtime": "lambda",
                "batch": {"enabled": False},
            },
        ],
    }
    return parse_config(data, base_dir=REPO, check_models=False)


@dataclass
class Pipeline:
    """Handles on the moto resources and the functions, as the deployed stack would wire them."""

    config: KitConfig
    alerts_queue: str
    context: FakeLambdaContext = field(default_factory=FakeLambdaContext)
    s3: Any = None
    sqs: Any = None
    sagemaker: Any = None
    dynamodb: Any = None
    uploads: list[str] = field(default_factory=list)
    raw_events: list[dict[str, Any]] = field(default_factory=list)

    def configure(self, config: KitConfig) -> None:
        """Deploy another config: every model's registry entry, as its stack writes it; the functions'
        containers start afresh (what they kept of the old entries is gone)."""
        self.config = config
        register(config)
        _forget()

    def put(self, key: str, body: bytes) -> dict[str, Any]:
        """Upload a file and return the EventBridge event S3 (moto) sends for it through the stack's rule."""
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        self.uploads.append(key)
        [event] = self.delivered(UPLOADS_QUEUE)
        return event

    def put_raw(self, key: str, body: bytes) -> dict[str, Any]:
        """Upload a file; the event as moto's EventBridge hands it to a rule's targets before its SQS
        delivery formats ``time`` (what the local cloud gives a Lambda target: ``time`` in epoch seconds)."""
        self.raw_events.clear()
        self.put(key, body)
        [event] = [e for e in self.raw_events if e.get("detail-type") == "Object Created"]
        _sequence(event)
        return event

    def delivered(self, queue_name: str) -> list[dict[str, Any]]:
        """The events a rule's queue target received since the last call."""
        queue = self.sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
        events: list[dict[str, Any]] = []
        while messages := self.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"):
            for message in messages:
                event = json.loads(message["Body"])
                _sequence(event)
                events.append(event)
                self.sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        return events

    def trigger(self, event: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = batch_trigger.handler(event, self.context)
        return result

    def status(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        result: dict[str, Any] = batch_status.handler(event, context or self.context)
        return result

    def state_change(self, job_name: str, status: str, **extra: Any) -> dict[str, Any]:
        """The job's "SageMaker Transform Job State Change"; a final one must pass the status rule."""
        job = self.sagemaker.describe_transform_job(TransformJobName=job_name)
        event = transform_state_change(
            job_name, status, output_path=job["TransformOutput"]["S3OutputPath"], **extra
        )
        finished = EventPattern.load(json.dumps(batch.jobs_finished_pattern(DEPLOYMENT)))
        assert finished.matches_event(cast(Any, event)) is (status in batch.TERMINAL_JOB_STATES), event[
            "detail"
        ]
        return event

    def manifest(self, key: str) -> dict[str, Any]:
        manifest: dict[str, Any] = json.loads(self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        return manifest

    def alerts(self) -> list[dict[str, Any]]:
        """SNS notifications delivered to the subscribed queue since the last call."""
        messages: list[dict[str, Any]] = []
        while True:
            batch = self.sqs.receive_message(QueueUrl=self.alerts_queue, MaxNumberOfMessages=10)
            if not batch.get("Messages"):
                return messages
            for message in batch["Messages"]:
                messages.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.alerts_queue, ReceiptHandle=message["ReceiptHandle"])

    def jobs(self) -> list[str]:
        return [j["TransformJobName"] for j in self.sagemaker.list_transform_jobs()["TransformJobSummaries"]]

    def write_output(self, job_name: str, name: str, lines: list[bytes]) -> str:
        """What a transform job writes: ``<output path>/<input name>.out``."""
        job = self.sagemaker.describe_transform_job(TransformJobName=job_name)
        _, prefix = job["TransformOutput"]["S3OutputPath"][5:].split("/", 1)
        key = f"{prefix.rstrip('/')}/{name}.out"
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=b"\n".join(lines) + b"\n")
        return key


UPLOADS_QUEUE = "uploads-rule-target"
MOTO_S3_SEQUENCER = "617f08299329d189"  # moto 5.2.5 puts this in every S3 EventBridge notification
_sequencer = itertools.count(int(time.time() * 1000) << 16)


def _sequence(event: dict[str, Any]) -> None:
    """moto's one gap in these events that matters here: S3's sequencer grows per key (the trigger's
    idempotency key is bucket, key and sequencer), moto's is a constant. Filled as the local cloud
    fills it (``mdk.local.cloud.moto_adapter``); every other field is as moto sent it."""
    obj = event.get("detail", {}).get("object", {})
    if obj.get("sequencer") == MOTO_S3_SEQUENCER:
        obj["sequencer"] = f"{next(_sequencer):020X}"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


def transform_model(model: str) -> str:
    """The SageMaker model (in moto) a model's transform jobs run."""
    return f"{DEPLOYMENT}-batch-{model}"


def entry(model: ModelConfig, sagemaker_model: str | None = None) -> Deployed:
    """A Lambda model's registry entry, as its stack writes it (the batch member by the stack's code)."""
    return Deployed(
        model=model.name,
        runtime="lambda",
        version=model_spec(model).version,
        api_url=f"https://example.execute-api.{REGION}.amazonaws.com/{STAGE}/",
        alarms=[],
        shadow_parameter="",
        lambda_=LambdaTopology(
            function_name=f"{DEPLOYMENT}-{model.name}", alias="live", codedeploy_application="a",
            deployment_group="g",
        ),
        batch_bucket=BUCKET if model.batch.enabled else None,
        batch=batch_topology(model, sagemaker_model or transform_model(model.name)),
    )  # fmt: skip


def as_stack_writes(value: Any) -> Any:
    """An entry's JSON as the stack writes it (``Stack.to_json_string``, in JavaScript: jsii hands
    Python's None over as undefined, which JSON.stringify leaves out): no null members."""
    if isinstance(value, dict):
        return {k: as_stack_writes(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [as_stack_writes(v) for v in value]
    return value


def register(config: KitConfig, **sagemaker_models: str) -> None:
    """Every model's registry entry in SSM; ``sagemaker_models``: a model's SageMaker model other than
    :func:`transform_model`'s (as a deploy that replaced it writes)."""
    ssm = boto3.client("ssm", region_name=REGION)
    for model in config.models:
        ssm.put_parameter(
            Name=model_parameter(PROJECT, STAGE, model.name),
            Value=json.dumps(as_stack_writes(entry(model, sagemaker_models.get(model.name)).to_json())),
            Type="String",
            Overwrite=True,
        )


def _forget() -> None:
    batch_aws.reset()
    batch_trigger._start_once.cache_clear()
    batch_status._finish_once.cache_clear()
    predictions.reset()


def create_transform_model(sagemaker: Any, name: str) -> None:
    """A SageMaker model as a model stack's ``TransformModel`` creates it (the serving image, a tarball)."""
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/mdk-serving:cpu",
            "ModelDataUrl": f"s3://assets/{name}/model.tar.gz",
        },
    )


@pytest.fixture
def pipeline(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    config = batch_config()
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    # The stack's bucket: EventBridge notifications on; its uploads rule, here with a queue as target.
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET, NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    sqs = boto3.client("sqs", region_name=REGION)
    uploads = sqs.create_queue(QueueName=UPLOADS_QUEUE)["QueueUrl"]
    uploads_arn = sqs.get_queue_attributes(QueueUrl=uploads, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events = boto3.client("events", region_name=REGION)
    events.put_rule(Name="uploads", EventPattern=json.dumps(batch.uploads_pattern(BUCKET)))
    events.put_targets(Rule="uploads", Targets=[{"Id": "trigger", "Arn": uploads_arn}])
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.create_table(
        TableName="idempotency",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    create_store_table(dynamodb, "predictions")
    sns = boto3.client("sns", region_name=REGION)
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "false"}
    )
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    for model in config.models:
        if model.batch.enabled:
            create_transform_model(sagemaker, transform_model(model.name))
    register(config)
    for name, value in {
        batch.DEPLOYMENT_ENV: DEPLOYMENT,
        batch.REGISTRY_ENV: REGISTRY,
        "MDK_BATCH_BUCKET": BUCKET,
        "MDK_IDEMPOTENCY_TABLE": "idempotency",
        "MDK_ALERT_TOPIC_ARN": topic,
        "MDK_STORE_TABLE": "predictions",
        "MDK_DATA_KEY_ARN": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "POWERTOOLS_METRICS_NAMESPACE": "mdk",
    }.items():
        monkeypatch.setenv(name, value)
    raw_events: list[dict[str, Any]] = []
    send_to_targets = Rule.send_to_targets

    def record(rule: Rule, event: Any, transform_input: bool = True) -> None:
        if rule.name == "uploads":
            raw_events.append(copy.deepcopy(event))
        send_to_targets(rule, event, transform_input)

    monkeypatch.setattr(Rule, "send_to_targets", record)
    _forget()
    yield Pipeline(
        raw_events=raw_events,
        config=config,
        alerts_queue=queue,
        s3=s3,
        sqs=sqs,
        sagemaker=sagemaker,
        dynamodb=dynamodb,
    )
    _forget()
