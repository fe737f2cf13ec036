"""A model's monitor job: live quality and drift (lambda_handlers/monitor.py), on a schedule, with alarms.

EventBridge Scheduler invokes a zip function every ``monitor.every_minutes``; the function reads the
window's captures under ``capture/<model>/``, joins the feedback table, publishes EMF metrics and writes
its run summary under ``monitor/<model>/runs/``. Its role may list and read that model's captures, put
its own summaries, read the feedback table and use the data key, nothing else. A run the scheduler
cannot deliver after its retries goes to a dead-letter queue (which alarms).

Scheduler: https://docs.aws.amazon.com/scheduler/latest/UserGuide/managing-targets.html (the execution
role needs lambda:InvokeFunction), https://docs.aws.amazon.com/scheduler/latest/UserGuide/
configuring-schedule-dlq.html (it needs sqs:SendMessage on the DLQ).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from mdk.bundle import RUNTIME_DIR, sync_files
from mdk.config import ModelConfig
from mdk_runtime import telemetry
from stacks import nag
from stacks.batch import ARCH, RUNTIME
from stacks.capture import capture_prefix
from stacks.lambda_model import LOG_RETENTION, function_role
from stacks.settings import DeploySettings

REPO = Path(__file__).resolve().parents[1]
HANDLERS_DIR = REPO / "lambda_handlers"
LAYER_MODULES = ("__init__.py", "drift.py", "emf.py", "telemetry.py")


def monitor_prefix(model: str) -> str:
    return f"monitor/{model}"


def write_monitor_function(dest: Path, baseline: Path | None) -> Path:
    """The function's code: its module, and the baseline next to it (MDK_BASELINE's default)."""
    files = {f"lambda_handlers/{n}": HANDLERS_DIR / n for n in ("__init__.py", "monitor.py")}
    if baseline is not None:
        files["lambda_handlers/baseline.json"] = baseline
    sync_files(files, dest)
    return dest


def write_monitor_layer(dest: Path) -> Path:
    """The runtime modules it imports (standard library only: boto3 comes with Lambda's runtime)."""
    sync_files({f"python/mdk_runtime/{n}": RUNTIME_DIR / n for n in LAYER_MODULES}, dest)
    return dest


def is_classifier(model: ModelConfig) -> bool:
    monitor = model.monitor
    if monitor is not None and monitor.accuracy_floor is not None:
        return True
    if monitor is not None and monitor.mae_ceiling is not None:
        return False
    if monitor is not None and monitor.baseline is not None:
        output: dict[str, Any] = json.loads(monitor.baseline.read_text()).get("output") or {}
        return output.get("kind") == "label"
    return model.schema_.labels is not None


class QualityMonitor(Construct):
    """The monitor job of one model. Exposes ``function``, ``schedule``, ``dead_letters``,
    ``quality_alarm`` (None: no accuracy_floor/mae_ceiling), ``drift_alarm`` (None: no baseline)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        model: ModelConfig,
        settings: DeploySettings,
        alarm_topic: sns.ITopic,
        capture_bucket: s3.IBucket,
        capture_bucket_in_nag: str | None,
        feedback_table: dynamodb.ITable,
        data_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        monitor = model.monitor
        if monitor is None:
            raise ValueError(f"model {model.name!r} has no monitor settings")
        self.model = model.name
        classifier = is_classifier(model)
        build = settings.build_dir / settings.prefix / "monitor" / model.name
        log_group = logs.LogGroup(
            self, "Logs", retention=LOG_RETENTION, removal_policy=settings.removal_policy
        )
        role = function_role(self, "Role", log_group, f"mdk monitor job of {model.name}")
        layer = lambda_.LayerVersion(
            self,
            "Layer",
            code=lambda_.Code.from_asset(str(write_monitor_layer(build / "layer"))),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCH],
            description="mdk monitor: drift, EMF and metric names",
        )
        prefix = capture_prefix(model.name)
        self.function = lambda_.Function(
            self,
            "Function",
            description=f"mdk monitor: live quality and drift of {model.name}",
            runtime=RUNTIME,
            architecture=ARCH,
            handler="lambda_handlers.monitor.handler",
            code=lambda_.Code.from_asset(str(write_monitor_function(build / "function", monitor.baseline))),
            layers=[layer],
            timeout=Duration.minutes(5),
            memory_size=1024,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            role=role,
            environment={
                "MDK_MODEL": model.name,
                "MDK_CAPTURE_BUCKET": capture_bucket.bucket_name,
                "MDK_CAPTURE_PREFIX": prefix,
                "MDK_FEEDBACK_TABLE": feedback_table.table_name,
                "MDK_WINDOW_HOURS": str(monitor.window_hours),
                "MDK_MIN_FEEDBACK": str(monitor.min_feedback),
                "MDK_MIN_RECORDS": str(monitor.min_records),
                "MDK_TASK": "classifier" if classifier else "regressor",
            },
        )
        self._grant(role, capture_bucket, capture_bucket_in_nag, feedback_table, data_key)
        nag.acknowledge(role, nag.XRAY_WILDCARD)
        nag.acknowledge(self.function, nag.MONITOR_SCHEDULED)
        self._schedule(settings, monitor.every_minutes)
        self.quality_alarm = self._quality_alarm(model, alarm_topic, classifier)
        self.drift_alarm = (
            self._alarm(
                "DriftAlarm",
                self.metric(telemetry.DRIFT_MAX, "Maximum"),
                monitor.drift_threshold,
                cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                f"{model.name}: a feature or the output drifted from the baseline (PSI > "
                f"{monitor.drift_threshold})",
                alarm_topic,
            )
            if monitor.baseline is not None
            else None
        )
        self._alarm(
            "DeadLettersAlarm",
            self.dead_letters.metric_approximate_number_of_messages_visible(period=Duration.minutes(5)),
            0,
            cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            f"{model.name}: the scheduler could not run the monitor job (see its dead-letter queue)",
            alarm_topic,
        )

    def metric(self, name: str, statistic: str = "Average") -> cloudwatch.Metric:
        every = self._every
        return cloudwatch.Metric(
            namespace=telemetry.NAMESPACE,
            metric_name=name,
            dimensions_map={telemetry.DIM_MODEL: self.model},
            statistic=statistic,
            period=Duration.minutes(every),
        )

    def widgets(self) -> list[cloudwatch.IWidget]:
        """Dashboard widgets: live quality, feedback coverage, and drift (for ``MonitoringFacade.add_widget``
        of the model's dashboard, stacks/monitoring.py)."""
        quality = self.metric(telemetry.ACCURACY if self._classifier else telemetry.MAE)
        return [
            cloudwatch.GraphWidget(
                title=f"{self.model}: live {quality.metric_name}", left=[quality], width=8
            ),
            cloudwatch.GraphWidget(
                title=f"{self.model}: feedback coverage",
                left=[self.metric(telemetry.FEEDBACK_COVERAGE)],
                right=[self.metric(telemetry.CAPTURED, "Maximum")],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title=f"{self.model}: drift (PSI, max over features and output)",
                left=[self.metric(telemetry.DRIFT_MAX, "Maximum")],
                width=8,
            ),
        ]

    # -- parts --------------------------------------------------------------------------------------

    def _grant(
        self,
        role: iam.Role,
        bucket: s3.IBucket,
        bucket_in_nag: str | None,
        table: dynamodb.ITable,
        key: kms.IKey,
    ) -> None:
        prefix = capture_prefix(self.model)
        runs = monitor_prefix(self.model)
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{prefix}/*"]}},
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[bucket.arn_for_objects(f"{prefix}/*")])
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:PutObject"], resources=[bucket.arn_for_objects(f"{runs}/*")])
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["dynamodb:BatchGetItem"], resources=[table.table_arn])
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"], resources=[key.key_arn]
            )
        )
        bucket_arn = (
            f"<{Stack.of(self).get_logical_id(bucket.node.default_child)}.Arn>"  # type: ignore[arg-type]
            if bucket_in_nag is None
            else bucket_in_nag
        )
        nag.acknowledge(
            role,
            nag.Acknowledged(
                f"AwsSolutions::AwsSolutions-IAM5[Resource::{bucket_arn}/{prefix}/*]", nag.MONITOR_READ_REASON
            ),
            nag.Acknowledged(
                f"AwsSolutions::AwsSolutions-IAM5[Resource::{bucket_arn}/{runs}/*]", nag.MONITOR_RUNS_REASON
            ),
        )

    def _schedule(self, settings: DeploySettings, every_minutes: int) -> None:
        self._every = every_minutes
        self.dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            removal_policy=settings.removal_policy,
        )
        nag.acknowledge(self.dead_letters, *nag.MONITOR_DLQ)
        invoker = iam.Role(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}},
            ),
            description=f"EventBridge Scheduler: runs the monitor job of {self.model}",
        )
        invoker.add_to_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[self.function.function_arn])
        )
        self.dead_letters.grant_send_messages(invoker)
        self.schedule = scheduler.CfnSchedule(
            self,
            "Schedule",
            schedule_expression=f"rate({every_minutes} {'minute' if every_minutes == 1 else 'minutes'})",
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            state="ENABLED",
            description=f"mdk: the monitor job of {self.model}",
            target=scheduler.CfnSchedule.TargetProperty(
                arn=self.function.function_arn,
                role_arn=invoker.role_arn,
                input=json.dumps({"model": self.model}),
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                    maximum_event_age_in_seconds=max(60, every_minutes * 60), maximum_retry_attempts=2
                ),
                dead_letter_config=scheduler.CfnSchedule.DeadLetterConfigProperty(
                    arn=self.dead_letters.queue_arn
                ),
            ),
        )

    def _quality_alarm(
        self, model: ModelConfig, topic: sns.ITopic, classifier: bool
    ) -> cloudwatch.Alarm | None:
        self._classifier = classifier
        monitor = model.monitor
        assert monitor is not None
        if monitor.accuracy_floor is not None:
            return self._alarm(
                "QualityAlarm",
                self.metric(telemetry.ACCURACY, "Minimum"),
                monitor.accuracy_floor,
                cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                f"{model.name}: live accuracy fell below {monitor.accuracy_floor}",
                topic,
            )
        if monitor.mae_ceiling is not None:
            return self._alarm(
                "QualityAlarm",
                self.metric(telemetry.MAE, "Maximum"),
                monitor.mae_ceiling,
                cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                f"{model.name}: live MAE rose above {monitor.mae_ceiling}",
                topic,
            )
        return None

    def _alarm(  # noqa: PLR0917 - the alarm's parts, each once
        self,
        construct_id: str,
        metric: cloudwatch.IMetric,
        threshold: float,
        comparison: cloudwatch.ComparisonOperator,
        description: str,
        topic: sns.ITopic,
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        alarm.add_alarm_action(cw_actions.SnsAction(topic))
        return alarm
