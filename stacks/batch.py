"""The batch pipeline: files dropped into S3 come back as predictions, a status manifest and alerts.

S3 (EventBridge notifications) -> rule -> trigger function (idempotent) -> SageMaker transform job with
the kit's serving container -> job state change -> rule -> status function -> ``_status.json``, metrics,
SNS alerts, and optionally the prediction store (DynamoDB) behind ``GET /models/{name}/predictions/{id}``.
Both functions are zip-packaged; the runtime's standard-library modules and Powertools are their layer.
Failed deliveries and invocations land in one dead-letter queue that alarms.

:class:`BatchPipeline` is the shared stack's and names no model: its size is the same for 1 or 100
models, and no model's change updates it. Each model's own batch parts are its stack's
(:class:`TransformModel`: the SageMaker model its jobs run, with its role and tarball, its inbox
output); the functions find a model's SageMaker model and settings at run time in its registry entry
(``/mdk/<project>/<stage>/models/<model>``, ``mdk.registry.BatchTopology``).
"""

from __future__ import annotations

from typing import Any

from aws_cdk import ArnFormat, CfnOutput, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from cdk_monitoring_constructs import (
    AlarmFactoryDefaults,
    CustomMetricGroup,
    DefaultDashboardFactory,
    ErrorCountThreshold,
    MaxMessageCountThreshold,
    MonitoringFacade,
    SnsAlarmActionStrategy,
)
from constructs import Construct

from mdk.bundle import write_batch_function_context, write_batch_layer, write_model_tarball
from mdk.config import KitConfig, ModelConfig
from mdk.registry import model_parameter
from mdk_runtime import batch
from mdk_runtime.instances import is_gpu
from stacks import nag
from stacks.alerts import AlarmTopic
from stacks.lambda_model import LOG_RETENTION, LOG_RETENTION_DAYS, function_role
from stacks.sagemaker_model import ServingImages, grant_logs_and_metrics
from stacks.settings import DeploySettings
from stacks.storage import Storage

RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCH = lambda_.Architecture.ARM_64
TRANSFORM_LOGS = batch.TRANSFORM_LOGS
# Requests to the container during batch: many records per request, so larger batches than online.
BATCH_MAX_BATCH_SIZE = 1024


def transform_role_path(project: str, stage: str) -> str:
    """The IAM path of a deployment's transform roles, ``/mdk/<project>/<stage>/batch/``: the trigger may
    pass exactly the roles under it to SageMaker (``role/mdk/<project>/<stage>/batch/*``), whatever
    models later deploys add.

    A path, not a name prefix: IAM role names are one namespace per account, across Regions, so a fixed
    name (``<prefix>-batch-<model>``) would collide between two Regions' deployments of one stage and
    could not be replaced in place; the roles keep CloudFormation's generated, unique names (as every
    role of the kit). The slashes are in no project or stage name, so no other deployment's role is
    under this path. SageMaker takes execution roles with paths (its own console makes them under
    ``/service-role/``; "Friendly names and paths", IAM identifiers,
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html).
    """
    return f"/mdk/{project}/{stage}/batch/"


class BatchPipeline(Construct):
    """What the models with ``batch.enabled`` share, and nothing of any one of them.

    Exposes ``bucket``, ``trigger``, ``status``, ``dead_letters``, ``idempotency``, ``store`` (or None:
    no model keeps one) and ``predictions`` (or None).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: KitConfig,
        settings: DeploySettings,
        storage: Storage,
        alarms: AlarmTopic,
    ) -> None:
        super().__init__(scope, construct_id)
        self.settings = settings
        alarm_topic = alarms.topic
        models = [m for m in config.models if m.batch.enabled]
        self.key = storage.key
        self.bucket = storage.add_bucket("Batch", prefix="batch/", expire_days=365)
        self.bucket.add_lifecycle_rule(id="StagedInputs", prefix=batch.STAGING, expiration=Duration.days(7))
        # S3 -> EventBridge natively (no notification custom resource, no Lambda to run it).
        cfn_bucket = self.bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        cfn_bucket.add_property_override(
            "NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True
        )
        self.idempotency = self._table("Idempotency", ("id", None), ttl="expiration")
        stored = [m for m in models if m.batch.store is not None]
        self.store = self._table("PredictionStore", ("model", "id"), ttl="expires_at") if stored else None
        self.dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            removal_policy=settings.removal_policy,
        )
        nag.acknowledge(self.dead_letters, *nag.BATCH_DLQ)

        build = settings.build_dir / settings.prefix / "batch"
        self.layer = lambda_.LayerVersion(
            self,
            "Layer",
            code=lambda_.Code.from_asset(str(write_batch_layer(build / "layer"))),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCH],
            description="mdk batch: the runtime's standard-library modules and Powertools",
        )
        self.code = lambda_.Code.from_asset(str(write_batch_function_context(build / "functions")))

        self.registry = model_parameter(settings.project, settings.stage, "")  # + <model>: its entry
        environment = {
            "MDK_BATCH_BUCKET": self.bucket.bucket_name,
            batch.DEPLOYMENT_ENV: settings.prefix,
            batch.REGISTRY_ENV: self.registry,
            "MDK_IDEMPOTENCY_TABLE": self.idempotency.table_name,
            "MDK_ALERT_TOPIC_ARN": alarm_topic.topic_arn,
            "MDK_DATA_KEY_ARN": self.key.key_arn,
            batch.TRANSFORM_LOG_RETENTION_ENV: str(LOG_RETENTION_DAYS),
            "POWERTOOLS_SERVICE_NAME": batch.SERVICE,
            "POWERTOOLS_METRICS_NAMESPACE": batch.NAMESPACE,
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }
        if self.store is not None:
            environment["MDK_STORE_TABLE"] = self.store.table_name

        self.trigger = self._function(
            "Trigger",
            "lambda_handlers.batch_trigger.handler",
            environment,
            "mdk batch: checks each uploaded file and starts its transform job, once",
        )
        self.status = self._function(
            "Status",
            "lambda_handlers.batch_status.handler",
            environment,
            "mdk batch: reconciles finished transform jobs, writes manifests, alerts, loads the store",
        )
        self._grant(alarms)
        self._rules()
        self.predictions = self._predictions() if self.store is not None else None
        self._monitoring(alarm_topic)
        CfnOutput(self, "BatchBucket", value=self.bucket.bucket_name, description="batch inbox and results")

    def _table(self, construct_id: str, key: tuple[str, str | None], *, ttl: str) -> dynamodb.Table:
        """On-demand, encrypted with the data key, recoverable to any point, items expiring by ``ttl``."""
        partition, sort = key
        return dynamodb.Table(
            self,
            construct_id,
            partition_key=dynamodb.Attribute(name=partition, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=sort, type=dynamodb.AttributeType.STRING) if sort else None,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=ttl,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=self.settings.removal_policy,
        )

    # -- functions ----------------------------------------------------------------------------------

    def _function(
        self,
        construct_id: str,
        handler: str,
        environment: dict[str, str],
        description: str,
        *,
        timeout_s: int = 900,
        memory_mb: int = 1024,
        asynchronous: bool = True,
    ) -> lambda_.Function:
        """A zip function on the layer. ``asynchronous`` (EventBridge invokes it): two retries, then the
        on-failure destination (the dead-letter queue), which records the error with the event."""
        log_group = logs.LogGroup(
            self, f"{construct_id}Logs", retention=LOG_RETENTION, removal_policy=self.settings.removal_policy
        )
        role = function_role(self, f"{construct_id}Role", log_group, description)
        function = lambda_.Function(
            self,
            construct_id,
            description=description,
            runtime=RUNTIME,
            architecture=ARCH,
            handler=handler,
            code=self.code,
            layers=[self.layer],
            # The trigger reads whole files and the status function loads stores: Lambda's maximum,
            # and the store load hands itself over before it.
            timeout=Duration.seconds(timeout_s),
            memory_size=memory_mb,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            role=role,
            environment=environment,
            on_failure=destinations.SqsDestination(self.dead_letters) if asynchronous else None,
            retry_attempts=2 if asynchronous else None,
            max_event_age=Duration.hours(6) if asynchronous else None,
        )
        nag.acknowledge(role, nag.XRAY_WILDCARD)
        nag.acknowledge(function, nag.ASYNC_FAILURE_DESTINATION if asynchronous else nag.SYNC_ONLY_DLQ)
        return function

    def _grant(self, alarms: AlarmTopic) -> None:
        stack = Stack.of(self)
        jobs = stack.format_arn(
            service="sagemaker",
            resource="transform-job",
            resource_name=batch.job_prefix(self.settings.prefix) + "*",
        )
        trigger, status = self.trigger, self.status
        # Status: the retention of the shared transform log group (batch_status.keep_transform_logs).
        status.add_to_role_policy(
            iam.PolicyStatement(
                actions=["logs:PutRetentionPolicy"],
                resources=[
                    stack.format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name=batch.TRANSFORM_LOGS,
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        # Trigger: read uploads (any version), stage copies, write manifests, start its own jobs.
        trigger.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=[self.bucket.arn_for_objects(f"{batch.INCOMING}*")],
            )
        )
        trigger.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[
                    self.bucket.arn_for_objects(f"{batch.STAGING}*"),
                    self.bucket.arn_for_objects(f"{batch.RESULTS}*"),
                ],
            )
        )
        trigger.add_to_role_policy(
            iam.PolicyStatement(
                actions=[
                    "sagemaker:CreateTransformJob",
                    "sagemaker:DescribeTransformJob",
                    "sagemaker:AddTags",
                ],
                resources=[jobs],
            )
        )
        # The transform roles of this deployment's model stacks, by their fixed path: no model is named
        # here, so a model's stack may come and go without an update of this one.
        role_path = transform_role_path(self.settings.project, self.settings.stage)
        transform_roles = stack.format_arn(
            service="iam", region="", resource="role", resource_name=role_path.lstrip("/") + "*"
        )
        trigger.add_to_role_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[transform_roles],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            )
        )
        # SageMaker uses the data key for the job's volumes and output on the caller's behalf.
        trigger.add_to_role_policy(
            iam.PolicyStatement(
                actions=["kms:CreateGrant", "kms:DescribeKey"],
                resources=[self.key.key_arn],
                conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
            )
        )
        # Status: read manifests and outputs, write manifests, describe its jobs, hand over store loads.
        status.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:PutObject"],
                resources=[self.bucket.arn_for_objects(f"{batch.RESULTS}*")],
            )
        )
        status.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{batch.RESULTS}*"]}},
            )
        )
        status.add_to_role_policy(
            iam.PolicyStatement(actions=["sagemaker:DescribeTransformJob"], resources=[jobs])
        )
        status.add_to_role_policy(
            iam.PolicyStatement(
                actions=["events:PutEvents"],
                resources=[stack.format_arn(service="events", resource="event-bus", resource_name="default")],
            )
        )
        # Both read the models' registry entries (GetParameter: one entry by name; no listing).
        entries = stack.format_arn(
            service="ssm", resource="parameter", resource_name=self.registry.lstrip("/") + "*"
        )
        for function in (trigger, status):
            function.add_to_role_policy(
                iam.PolicyStatement(actions=["ssm:GetParameter"], resources=[entries])
            )
            self.key.grant(function, "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey")
            # What Powertools idempotency does: put (conditional), get, update, delete its records.
            self.idempotency.grant(
                function,
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
            )
            # Publish to the alarm topic (grant_publish would add kms:GenerateDataKey* on its key).
            function.add_to_role_policy(
                iam.PolicyStatement(actions=["sns:Publish"], resources=[alarms.topic.topic_arn])
            )
            alarms.key.grant(function, "kms:Decrypt", "kms:GenerateDataKey")
        if self.store is not None:
            self.store.grant(status, "dynamodb:BatchWriteItem", "dynamodb:PutItem")
        bucket_id = stack.get_logical_id(self.bucket.node.default_child)  # type: ignore[arg-type]
        job_rule = (
            "AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:"
            f"<AWS::AccountId>:transform-job/{batch.job_prefix(self.settings.prefix)}*]"
        )
        entries_rule = nag.Acknowledged(
            "AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ssm:<AWS::Region>:"
            f"<AWS::AccountId>:parameter{self.registry}*]",
            nag.BATCH_REGISTRY_REASON,
        )
        assert trigger.role is not None
        assert status.role is not None
        nag.acknowledge(
            trigger.role,
            nag.Acknowledged(job_rule, nag.BATCH_JOBS_REASON),
            entries_rule,
            nag.Acknowledged(
                "AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iam::<AWS::AccountId>:role"
                f"{role_path}*]",
                nag.TRANSFORM_ROLES_REASON,
            ),
            *(
                nag.Acknowledged(f"AwsSolutions::AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{p}*]", reason)
                for p, reason in (
                    (batch.INCOMING, nag.BATCH_INCOMING_REASON),
                    (batch.STAGING, nag.BATCH_STAGING_REASON),
                    (batch.RESULTS, nag.BATCH_RESULTS_REASON),
                )
            ),
        )
        nag.acknowledge(
            status.role,
            nag.Acknowledged(job_rule, nag.BATCH_JOBS_REASON),
            entries_rule,
            nag.Acknowledged(
                f"AwsSolutions::AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{batch.RESULTS}*]",
                nag.BATCH_RESULTS_REASON,
            ),
        )

    def _rules(self) -> None:
        uploads = events.Rule(
            self,
            "Uploads",
            description="files created under incoming/ of the batch bucket start a run",
            event_pattern=_pattern(batch.uploads_pattern(self.bucket.bucket_name)),
        )
        uploads.add_target(self._target(self.trigger))
        finished = events.Rule(
            self,
            "JobsFinished",
            description="this deployment's transform jobs reaching a final state",
            event_pattern=_pattern(batch.jobs_finished_pattern(self.settings.prefix)),
        )
        finished.add_target(self._target(self.status))
        handovers = events.Rule(
            self,
            "StoreHandovers",
            description="the status function's own hand-over of a long prediction store load",
            event_pattern=events.EventPattern(
                source=[batch.STORE_SOURCE],
                detail_type=[batch.STORE_DETAIL_TYPE],
                detail={"bucket": [self.bucket.bucket_name]},
            ),
        )
        handovers.add_target(self._target(self.status))

    def _target(self, function: lambda_.IFunction) -> targets.LambdaFunction:
        # Events EventBridge cannot deliver (throttled, permissions) for a day go to the same DLQ.
        return targets.LambdaFunction(
            function,
            dead_letter_queue=self.dead_letters,
            retry_attempts=185,
            max_event_age=Duration.hours(24),
        )

    def _predictions(self) -> lambda_.Function:
        """The stored-predictions function; each stored model's stack routes its API to it. It lists no
        model (lambda_handlers/predictions.py: the route, which only a stored model's stack has, is the
        gate), so a model's store setting is its own stack's change."""
        assert self.store is not None
        function = self._function(
            "Predictions",
            "lambda_handlers.predictions.handler",
            {
                "MDK_STORE_TABLE": self.store.table_name,
                "POWERTOOLS_SERVICE_NAME": "mdk-predictions",
                "POWERTOOLS_LOG_LEVEL": "INFO",
            },
            "mdk: serves stored batch predictions by record id",
            timeout_s=10,
            memory_mb=256,
            asynchronous=False,  # API Gateway calls it and gets every failure as a status
        )
        self.store.grant(function, "dynamodb:GetItem")
        self.key.grant_decrypt(function)
        return function

    def _monitoring(self, topic: sns.ITopic) -> None:
        facade = MonitoringFacade(
            self,
            "Monitoring",
            alarm_factory_defaults=AlarmFactoryDefaults(
                alarm_name_prefix=f"{self.settings.prefix}-batch",
                actions_enabled=True,
                action=SnsAlarmActionStrategy(on_alarm_topic=topic),
            ),
            dashboard_factory=DefaultDashboardFactory(
                self,
                "Dashboards",
                dashboard_name_prefix=f"{self.settings.prefix}-batch",
                create_dashboard=True,
                create_summary_dashboard=False,
                create_alarm_dashboard=False,
            ),
        )
        for function, name in ((self.trigger, "trigger"), (self.status, "status")):
            facade.monitor_lambda_function(
                lambda_function=function,
                alarm_friendly_name=name,
                human_readable_name=f"batch {name} function",
                add_fault_count_alarm={"Warning": ErrorCountThreshold(max_error_count=0)},
            )
        facade.monitor_sqs_queue(
            queue=self.dead_letters,
            alarm_friendly_name="dead-letters",
            human_readable_name="batch dead letters (events and invocations that failed for good)",
            add_queue_max_size_alarm={"Critical": MaxMessageCountThreshold(max_message_count=0)},
        )
        facade.monitor_custom(
            alarm_friendly_name="runs",
            human_readable_name="batch runs and records, every model (each model's dashboard has its own)",
            metric_groups=totals(),
        )


def batch_metric(name: str, label: str, model: str) -> cloudwatch.Metric:
    """One of a model's batch metrics (Powertools' dimensions: the model and the service), per hour."""
    return cloudwatch.Metric(
        namespace=batch.NAMESPACE,
        metric_name=name,
        dimensions_map={"Model": model, "service": batch.SERVICE},
        statistic="Sum",
        label=label,
        period=Duration.hours(1),
    )


RUN_METRICS = (
    (batch.RUNS_STARTED, "started"),
    (batch.RUNS_COMPLETED, "completed"),
    (batch.RUNS_INCOMPLETE, "incomplete"),
    (batch.RUNS_FAILED, "failed"),
    (batch.RUNS_REJECTED, "rejected"),
)
RECORD_METRICS = (
    (batch.RECORDS_IN, "in"),
    (batch.RECORDS_OUT, "out"),
    (batch.RECORD_ERRORS, "rejected records"),
    (batch.STORED, "stored"),
)


def model_groups(model: str) -> list[CustomMetricGroup]:
    """A model's batch runs and records, for its own dashboard (stacks/monitoring.py)."""
    return [
        CustomMetricGroup(
            title=f"{model}: batch runs", metrics=[batch_metric(n, label, model) for n, label in RUN_METRICS]
        ),
        CustomMetricGroup(
            title=f"{model}: batch records",
            metrics=[batch_metric(n, label, model) for n, label in RECORD_METRICS],
        ),
    ]


def _total(name: str, label: str) -> cloudwatch.MathExpression:
    """A metric summed over every model: a SEARCH of the batch functions' metrics (dimensions Model and
    service) summed into one line, so the dashboard names no model and holds the models deployed later
    ("Use search expressions in graphs", https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/using-search-expressions.html)."""
    search = (
        f'SEARCH(\'{{{batch.NAMESPACE},Model,service}} MetricName="{name}" '
        f"service=\"{batch.SERVICE}\"', 'Sum', 3600)"
    )
    return cloudwatch.MathExpression(
        expression=f"SUM({search})", using_metrics={}, label=label, period=Duration.hours(1)
    )


def totals() -> list[CustomMetricGroup]:
    """The shared dashboard's batch groups: runs and records over every model, then failed, incomplete
    and rejected runs one line per model (a SEARCH, as many lines as models had such runs)."""
    trouble = " OR ".join(
        f'MetricName="{n}"' for n in (batch.RUNS_FAILED, batch.RUNS_INCOMPLETE, batch.RUNS_REJECTED)
    )
    return [
        CustomMetricGroup(
            title="batch runs, every model", metrics=[_total(n, label) for n, label in RUN_METRICS]
        ),
        CustomMetricGroup(
            title="batch records, every model", metrics=[_total(n, label) for n, label in RECORD_METRICS]
        ),
        CustomMetricGroup(
            title="batch runs failed, incomplete or rejected, by model",
            metrics=[
                cloudwatch.MathExpression(
                    expression=(
                        f"SEARCH('{{{batch.NAMESPACE},Model,service}} ({trouble}) "
                        f"service=\"{batch.SERVICE}\"', 'Sum', 3600)"
                    ),
                    using_metrics={},
                    label="",
                    period=Duration.hours(1),
                )
            ],
        ),
    ]


def _pattern(pattern: dict[str, Any]) -> events.EventPattern:
    """An EventBridge pattern (as :mod:`mdk_runtime.batch` writes it, and tests use it) for CDK."""
    return events.EventPattern(
        source=pattern["source"], detail_type=pattern["detail-type"], detail=pattern["detail"]
    )


class TransformModel(Construct):
    """The SageMaker model a model's transform jobs run, in the model's own stack: the kit's serving
    container (the GPU build for a GPU batch instance type, else the CPU build) with the model's tarball,
    and a role (under :func:`transform_role_path`, which the trigger may pass) that may read only the
    model's staged inputs and write only its results, in the shared stack's batch bucket. Its name
    reaches the trigger through the model's registry entry (``cfn_model.attr_model_name``)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        model: ModelConfig,
        settings: DeploySettings,
        images: ServingImages,
        bucket: s3.IBucket,
        bucket_in_nag: str,
        data_key: kms.IKey,
    ) -> None:
        """``bucket_in_nag``: the bucket's ARN as cdk-nag writes it in a rule (an imported bucket's, by
        its export's name: ``arn:<AWS::Partition>:s3:::<export>``)."""
        super().__init__(scope, construct_id)
        b = model.batch
        device = "gpu" if is_gpu(b.instance_type) else "cpu"
        self.role = iam.Role(
            self,
            "ExecutionRole",
            path=transform_role_path(settings.project, settings.stage),
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"mdk batch transform of {model.name}: its staged inputs in, its results out",
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(f"{batch.STAGING}{model.name}/*")],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{batch.STAGING}{model.name}/*"]}},
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[bucket.arn_for_objects(f"{batch.RESULTS}{model.name}/*")],
            )
        )
        data_key.grant(
            self.role,
            "kms:CreateGrant",
            "kms:Decrypt",
            "kms:DescribeKey",
            "kms:Encrypt",
            "kms:GenerateDataKey",
        )
        nag.acknowledge(
            self.role,
            *(
                nag.Acknowledged(
                    f"AwsSolutions::AwsSolutions-IAM5[Resource::{bucket_in_nag}/{prefix}{model.name}/*]",
                    nag.TRANSFORM_PREFIXES_REASON,
                )
                for prefix in (batch.STAGING, batch.RESULTS)
            ),
        )
        grant_logs_and_metrics(
            self.role,
            group=TRANSFORM_LOGS,
            streams=batch.job_prefix(settings.prefix) + "*",
            group_in_nag=TRANSFORM_LOGS,
            reason=nag.TRANSFORM_LOG_STREAMS_REASON,
        )
        image = images.image(device)
        image.repository.grant_pull(self.role)
        tarball = write_model_tarball(
            model, settings.build_dir / settings.prefix / "sagemaker" / model.name / "batch" / "model.tar.gz"
        )
        asset = s3_assets.Asset(self, "Artifact", path=str(tarball))
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"], resources=[asset.bucket.arn_for_objects(asset.s3_object_key)]
            )
        )
        sm = model.sagemaker if model.runtime == "sagemaker" else None
        self.cfn_model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=self.role.role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=image.image_uri,
                model_data_url=asset.s3_object_url,
                environment={
                    "MDK_DEVICE": device,
                    "MDK_MAX_BATCH_SIZE": str(BATCH_MAX_BATCH_SIZE),
                    "MDK_MAX_BATCH_DELAY_MS": "0",
                    "MDK_MAX_PAYLOAD_MB": str(b.max_payload_mb),
                    "MDK_MAX_CONCURRENT_TRANSFORMS": str(b.max_concurrent_transforms),
                    "MDK_MAX_BODY_BYTES": str(b.max_payload_mb * batch.MiB + 1024),
                },
            ),
            vpc_config=sagemaker.CfnModel.VpcConfigProperty(
                subnets=sm.vpc.subnet_ids, security_group_ids=sm.vpc.security_group_ids
            )
            if sm is not None and sm.vpc is not None
            else None,
            enable_network_isolation=sm.network_isolation if sm is not None else True,
        )
        self.cfn_model.node.add_dependency(self.role)
        CfnOutput(
            self,
            "Inbox",
            value=f"s3://{bucket.bucket_name}/{batch.INCOMING}{model.name}/",
            description=f"files for model {model.name} go here; results under results/{model.name}/",
        )
