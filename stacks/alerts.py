"""Where alarms go: one SNS topic per stage, encrypted with its own KMS key and TLS-only."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks import nag
from stacks.settings import DeploySettings


class AlarmTopic(Construct):
    """An SNS topic for alarms; CloudWatch may publish to it, nothing else unencrypted or over plain HTTP."""

    def __init__(
        self, scope: Construct, construct_id: str, *, settings: DeploySettings, email: str | None
    ) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            description=f"{settings.prefix}: encrypts the alarm topic",
            enable_key_rotation=True,
            removal_policy=settings.removal_policy,
        )
        # CloudWatch alarms publish to an encrypted topic only if they may use its key.
        self.key.grant(
            iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*"
        )
        self.topic = sns.Topic(
            self,
            "Topic",
            display_name=f"{settings.prefix} model alarms",
            master_key=self.key,
            enforce_ssl=True,
        )
        self.undelivered: sqs.Queue | None = None
        if email is not None:
            # Notifications SNS could not deliver (a bounced address) are kept for 14 days, not lost.
            self.undelivered = sqs.Queue(
                self,
                "Undelivered",
                encryption=sqs.QueueEncryption.SQS_MANAGED,
                enforce_ssl=True,
                retention_period=Duration.days(14),
                removal_policy=settings.removal_policy,
            )
            self.topic.add_subscription(
                subscriptions.EmailSubscription(email, dead_letter_queue=self.undelivered)
            )
            nag.acknowledge(self.undelivered, *nag.SNS_DLQ)


def rollback_alarm(
    scope: Construct,
    alarm_id: str,
    *,
    metric: cloudwatch.IMetric,
    threshold: float,
    description: str,
    topic: sns.ITopic,
) -> cloudwatch.Alarm:
    """An alarm a deployment watches: one breaching minute rolls it back, and the topic hears of it.

    No data (no traffic on the new version yet) is not a breach, or every quiet rollout would fail.
    """
    alarm = cloudwatch.Alarm(
        scope,
        alarm_id,
        metric=metric,
        threshold=threshold,
        evaluation_periods=1,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        alarm_description=description + "; rolls the deployment back",
    )
    alarm.add_alarm_action(cloudwatch_actions.SnsAction(topic))
    return alarm
