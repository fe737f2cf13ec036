"""``<project>-<stage>-shared``: what every model's stack uses, and nothing that belongs to one model.

The alarm topic, the data key and its buckets (access logs, data capture), the batch pipeline (inbox,
trigger, status, idempotency, the prediction store and its function), the WAF web ACL, and the account's
API Gateway logging role. Model stacks refer to a small fixed set of these (CloudFormation exports CDK
creates for the references: the topic, the data key, the capture and batch buckets, the predictions
function, the web ACL); none of them depends on which models exist, so adding, removing or rolling out a
model never changes what another model's stack imports.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from mdk.config import KitConfig
from stacks import nag
from stacks.alerts import AlarmTopic
from stacks.batch import BatchPipeline
from stacks.model_api import binary_media_types, web_acl
from stacks.sagemaker_model import ServingImages
from stacks.settings import DeploySettings
from stacks.storage import Storage


class SharedStack(cdk.Stack):
    """Exposes ``alarms``, ``storage``, ``images``, ``capture`` (or None), ``batch`` (or None) and
    ``web_acl`` (or None)."""

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
        self.alarms = AlarmTopic(self, "Alarms", settings=settings, email=config.alarms.email)
        self.storage = Storage(self, "Storage", settings=settings)
        self.images = ServingImages(self, "ServingImages", settings=settings)
        self.capture: s3.Bucket | None = None
        if any(m.runtime == "sagemaker" for m in config.models):
            self.capture = self.storage.add_bucket("DataCapture", prefix="data-capture/", expire_days=90)
        self.batch: BatchPipeline | None = None
        if any(m.batch.enabled for m in config.models):
            self.batch = BatchPipeline(
                self,
                "Batch",
                config=config,
                settings=settings,
                storage=self.storage,
                images=self.images,
                alarms=self.alarms,
            )
        self.web_acl: wafv2.CfnWebACL | None = None
        if config.api.waf:
            self.web_acl = web_acl(self, config.api, binary_media_types(config.models))
        self._logging_role(settings)
        cdk.CfnOutput(self, "AlarmTopicArn", value=self.alarms.topic.topic_arn)

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
