"""``<project>-<stage>-shared``: what every model's stack uses, and nothing that belongs to one model.

The alarm topic, the data key and its buckets (access logs, data capture), the batch pipeline (inbox,
trigger, status, idempotency, the prediction store and its function), the WAF web ACL, and the account's
API Gateway logging role. Model stacks refer to a small fixed set of these through CloudFormation
exports with names the kit chooses (:class:`SharedRefs`: ``<project>-<stage>-<what>``), never through
exports CDK generates from construct paths: the names and values stay the same whatever the models are,
so adding, removing or rolling out a model never changes what another model's stack imports, and
CloudFormation refuses to delete the shared stack while a model stack still imports from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from mdk.config import KitConfig
from stacks import nag
from stacks.access import ModelScopes
from stacks.alerts import AlarmTopic
from stacks.batch import BatchPipeline
from stacks.capture import capture_prefix
from stacks.model_api import binary_media_types, web_acl
from stacks.settings import DeploySettings
from stacks.storage import Storage


@dataclass(frozen=True)
class SharedRefs:
    """The shared stack's exports, by name (``None``: the config needs no such thing)."""

    alarm_topic_arn: str
    data_key_arn: str
    capture_bucket: str | None = None  # name; the ARN is derived
    batch_bucket: str | None = None
    predictions_function_arn: str | None = None
    web_acl_arn: str | None = None


@dataclass
class Imported:
    """The shared stack's resources as one model stack sees them (through :class:`SharedRefs`)."""

    alarm_topic: sns.ITopic
    data_key: kms.IKey
    capture_bucket: s3.IBucket | None
    capture_bucket_export: str | None  # how cdk-nag writes the bucket's ARN in a rule (the export name)
    batch_bucket_name: str | None
    batch_bucket: s3.IBucket | None  # for a model's transform role (stacks.batch.TransformModel)
    batch_bucket_export: str | None
    predictions: lambda_.IFunction | None
    web_acl_arn: str | None

    @classmethod
    def into(cls, scope: Construct, refs: SharedRefs) -> Imported:
        imp = cdk.Fn.import_value
        capture = None
        if refs.capture_bucket is not None:
            capture = s3.Bucket.from_bucket_name(scope, "SharedCaptureBucket", imp(refs.capture_bucket))
        batch = None
        if refs.batch_bucket is not None:
            batch = s3.Bucket.from_bucket_name(scope, "SharedBatchBucket", imp(refs.batch_bucket))
        predictions = None
        if refs.predictions_function_arn is not None:
            predictions = lambda_.Function.from_function_attributes(
                scope,
                "SharedPredictions",
                function_arn=imp(refs.predictions_function_arn),
                same_environment=True,  # the API may be granted to invoke it
            )
        return cls(
            alarm_topic=sns.Topic.from_topic_arn(scope, "SharedAlarmTopic", imp(refs.alarm_topic_arn)),
            data_key=kms.Key.from_key_arn(scope, "SharedDataKey", imp(refs.data_key_arn)),
            capture_bucket=capture,
            capture_bucket_export=refs.capture_bucket,
            batch_bucket_name=batch.bucket_name if batch is not None else None,
            batch_bucket=batch,
            batch_bucket_export=refs.batch_bucket,
            predictions=predictions,
            web_acl_arn=imp(refs.web_acl_arn) if refs.web_acl_arn is not None else None,
        )


class SharedStack(cdk.Stack):
    """Exposes ``alarms``, ``storage``, ``capture`` (or None), ``batch`` (or None),
    ``web_acl`` (or None), ``scopes`` (the models' OAuth scopes, ``cognito`` auth, else None) and
    ``refs`` (what model stacks import, by export name)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: KitConfig,
        settings: DeploySettings,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description=f"mdk {settings.prefix}: what the model stacks share (alarms, storage, batch, WAF)",
            **kwargs,
        )
        self.settings = settings
        self.alarms = AlarmTopic(self, "Alarms", settings=settings, email=config.alarms.email)
        self.storage = Storage(self, "Storage", settings=settings)
        self.capture: s3.Bucket | None = None
        # Captured requests (both runtimes, capture/<model>/...), each model's kept for its retention_days.
        # A bucket exists whenever a SageMaker model could turn capture on without a change here.
        capturing = {m.name: m.capture.retention_days for m in config.models if m.capture_percent > 0}
        if capturing or any(m.runtime == "sagemaker" for m in config.models):
            self.capture = self.storage.add_bucket(
                "DataCapture",
                prefix="data-capture/",
                expire_days=max([90, *capturing.values()]),
                expire_prefixes={capture_prefix(name) + "/": days for name, days in capturing.items()},
            )
        self.batch: BatchPipeline | None = None
        if any(m.batch.enabled for m in config.models):
            self.batch = BatchPipeline(
                self,
                "Batch",
                config=config,
                settings=settings,
                storage=self.storage,
                alarms=self.alarms,
            )
        self.web_acl: wafv2.CfnWebACL | None = None
        if config.api.waf:
            self.web_acl = web_acl(self, config.api, binary_media_types(config.models))
        self._logging_role(settings)
        self.scopes: ModelScopes | None = None
        if config.api.auth == "cognito":  # one OAuth scope per model (the consumers' clients: access stack)
            assert config.api.cognito_user_pool_arn is not None
            self.scopes = ModelScopes(
                self,
                "ModelScopes",
                user_pool_arn=config.api.cognito_user_pool_arn,
                prefix=settings.prefix,
                models=[m.name for m in config.models],
            )
        cdk.CfnOutput(self, "AlarmTopicArn", value=self.alarms.topic.topic_arn)
        export = self._export
        predictions = self.batch.predictions if self.batch is not None else None
        self.refs = SharedRefs(
            alarm_topic_arn=export("alarm-topic-arn", self.alarms.topic.topic_arn),
            data_key_arn=export("data-key-arn", self.storage.key.key_arn),
            capture_bucket=export("capture-bucket", self.capture.bucket_name) if self.capture else None,
            batch_bucket=export("batch-bucket", self.batch.bucket.bucket_name) if self.batch else None,
            predictions_function_arn=export("predictions-function-arn", predictions.function_arn)
            if predictions is not None
            else None,
            web_acl_arn=export("web-acl-arn", self.web_acl.attr_arn) if self.web_acl is not None else None,
        )

    def _export(self, what: str, value: str) -> str:
        """Export ``value`` as ``<project>-<stage>-<what>``; returns the export's name."""
        name = f"{self.settings.prefix}-{what}"
        logical = "Export" + "".join(part.title() for part in what.split("-"))
        cdk.CfnOutput(
            self, logical, value=value, export_name=name, description=f"for the model stacks: {what}"
        )
        return name

    def _logging_role(self, settings: DeploySettings) -> None:
        """API Gateway writes every API's execution logs with one role per account and region
        (``AWS::ApiGateway::Account``, "Set up CloudWatch logging for REST APIs in API Gateway",
        https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-logging.html): set once here,
        not once per model API (100 stacks writing one account setting would fight over it)."""
        role = iam.Role(
            self,
            "ApiGatewayLoggingRole",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name(
                    "service-role/AmazonAPIGatewayPushToCloudWatchLogs"
                )
            ],
        )
        role.apply_removal_policy(settings.removal_policy)
        nag.acknowledge(role, nag.APIGW_LOGGING_ROLE)
        account = apigw.CfnAccount(self, "ApiGatewayAccount", cloud_watch_role_arn=role.role_arn)
        account.apply_removal_policy(settings.removal_policy)
