"""Where captured predictions go, the one layout both runtimes write (``capture/<model>/<version>/...``).

SageMaker's Data Capture writes ``<DestinationS3Uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/<file>.jsonl``
("Capture data from real-time endpoint",
https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-data-capture-endpoint.html); with the
destination ``capture/<model>/<version>``, a Lambda model's function writes the same depth under it
(``<function>/<function version>/yyyy/mm/dd/hh/``, :mod:`mdk_runtime.capture`), in the same record format,
so one reader (the monitor job, ``mdk capture export``, SageMaker's own tools) reads both.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from mdk.config import ModelConfig
from stacks import nag

CAPTURE_ROOT = "capture"


def capture_prefix(model: str, version: str | None = None) -> str:
    """``capture/<model>`` or ``capture/<model>/<version>`` (no trailing slash)."""
    return f"{CAPTURE_ROOT}/{model}" if version is None else f"{CAPTURE_ROOT}/{model}/{version}"


def capture_environment(model: ModelConfig, version: str, bucket: s3.IBucket) -> dict[str, str]:
    """What a Lambda model's function reads to capture (:class:`mdk_runtime.capture.CaptureSettings`)."""
    if model.capture_percent <= 0:
        return {}
    return {
        "MDK_CAPTURE_BUCKET": bucket.bucket_name,
        "MDK_CAPTURE_PERCENT": f"{model.capture_percent:g}",
        "MDK_CAPTURE_PREFIX": capture_prefix(model.name, version),
        "MDK_CAPTURE_DROP": ",".join(model.capture.drop_fields),
    }


def grant_capture(
    scope: Construct,
    role: iam.IRole,
    *,
    model: str,
    bucket: s3.IBucket,
    data_key: kms.IKey,
    bucket_in_nag: str | None,
) -> None:
    """Put-only under ``capture/<model>/``, and the data key to encrypt what it puts (SSE-KMS)."""
    prefix = capture_prefix(model)
    role.add_to_principal_policy(
        iam.PolicyStatement(actions=["s3:PutObject"], resources=[bucket.arn_for_objects(f"{prefix}/*")])
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(actions=["kms:Encrypt", "kms:GenerateDataKey"], resources=[data_key.key_arn])
    )
    # cdk-nag writes the bucket's ARN as <LogicalId.Arn> in its own stack, else by the export's name
    bucket_arn = (
        f"<{Stack.of(scope).get_logical_id(bucket.node.default_child)}.Arn>"  # type: ignore[arg-type]
        if bucket_in_nag is None
        else bucket_in_nag
    )
    nag.acknowledge(
        role,
        nag.Acknowledged(
            f"AwsSolutions::AwsSolutions-IAM5[Resource::{bucket_arn}/{prefix}/*]", nag.CAPTURE_PREFIX_REASON
        ),
    )


def capture_alarm(
    scope: Construct, alarm_id: str, *, metric: cloudwatch.Metric, description: str, topic: sns.ITopic
) -> cloudwatch.Alarm:
    """Any captured record lost in five minutes pages the topic. Not a rollback alarm: the model's
    answers were served; only their copies are missing (and counted)."""
    alarm = cloudwatch.Alarm(
        scope,
        alarm_id,
        metric=metric.with_(period=Duration.minutes(5)),
        threshold=1,
        evaluation_periods=1,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        alarm_description=description,
    )
    alarm.add_alarm_action(cloudwatch_actions.SnsAction(topic))
    return alarm
