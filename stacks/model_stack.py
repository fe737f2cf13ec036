"""``<project>-<stage>-model-<name>``: one model, everything that is its own.

A Lambda model: its image function, ``live`` alias, CodeDeploy rollout, alarms and dashboard; a SageMaker
model: its endpoint, variants, guardrails, autoscaling, alarms and dashboard. Either way its own REST API
(routes, stage, throttle, auth; stacks/model_api.py), its registry entry (and shadow setting), and, with
batch on, the SageMaker model its transform jobs run (stacks/batch.py ``TransformModel``, named in its
registry entry, where the shared batch functions find it) and, with a prediction store, its
stored-predictions route. A rollout of the model is an update of this stack alone
(``cdk deploy -e <project>-<stage>-model-<name>``); no other model's stack refers to anything here.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from mdk.config import KitConfig, ModelConfig
from stacks.batch import TransformModel
from stacks.lambda_model import LambdaModel
from stacks.model_api import ModelApi
from stacks.monitoring import EndpointMonitoring, ModelMonitoring
from stacks.registry import Registry
from stacks.sagemaker_model import SageMakerModel, ServingImages
from stacks.settings import DeploySettings
from stacks.shared import Imported, SharedStack


class ModelStack(cdk.Stack):
    """Exposes ``model``, ``api`` (its :class:`ModelApi`), ``served`` (a :class:`LambdaModel`) or
    ``endpoint`` (a :class:`SageMakerModel`), ``registry`` and ``transform`` (its
    :class:`TransformModel`, or None without batch)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: KitConfig,
        model: ModelConfig,
        shared: SharedStack,
        settings: DeploySettings,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description=f"mdk {settings.prefix}: model {model.name} on {model.runtime}, its API and alarms",
            **kwargs,
        )
        self.add_stack_dependency(shared)  # its exports must exist first (imports carry no dependency)
        self.model = model
        imported = Imported.into(self, shared.refs)
        topic = imported.alarm_topic
        acl = imported.web_acl_arn
        self.api = ModelApi(
            self,
            f"ModelApi-{model.name}",
            config=config.api,
            settings=settings,
            models=[model],
            web_acl_arn=acl,
        )
        self.served: LambdaModel | None = None
        self.endpoint: SageMakerModel | None = None
        self.registry = Registry(self, "Registry", settings=settings, api_auth=config.api.auth)
        batch_bucket = imported.batch_bucket_name if model.batch.enabled else None
        images = ServingImages(self, "ServingImages", settings=settings)  # built on first use
        self.transform: TransformModel | None = None
        if model.batch.enabled:
            assert imported.batch_bucket is not None
            assert imported.batch_bucket_export is not None
            self.transform = TransformModel(
                self,
                f"BatchModel-{model.name}",
                model=model,
                settings=settings,
                images=images,
                bucket=imported.batch_bucket,
                bucket_in_nag=f"arn:<AWS::Partition>:s3:::{imported.batch_bucket_export}",
                data_key=imported.data_key,
            )
        transform_model = self.transform.cfn_model.attr_model_name if self.transform else None
        if model.runtime == "sagemaker":
            assert imported.capture_bucket is not None
            assert imported.capture_bucket_export is not None
            endpoint = SageMakerModel(
                self,
                f"Endpoint-{model.name}",
                model=model,
                settings=settings,
                images=images,
                alarm_topic=topic,
                capture_bucket=imported.capture_bucket,
                # cdk-nag writes an imported value by its export's name
                capture_bucket_in_nag=f"arn:<AWS::Partition>:s3:::{imported.capture_bucket_export}",
                data_key=imported.data_key,
            )
            EndpointMonitoring(
                self,
                f"EndpointMonitoring-{model.name}",
                served=endpoint,
                settings=settings,
                alarm_topic=topic,
            )
            arn = self.format_arn(
                service="sagemaker", resource="endpoint", resource_name=endpoint.endpoint_name
            )
            self.api.add_sagemaker_model(model.name, endpoint.endpoint_name, arn, processing=model.processing)
            self.registry.add_sagemaker(
                endpoint, api_url=self.api.api.url, batch_bucket=batch_bucket, transform_model=transform_model
            )
            self.endpoint = endpoint
        else:
            served = LambdaModel(
                self,
                f"Model-{model.name}",
                model=model,
                settings=settings,
                alarm_topic=topic,
                capture_bucket=imported.capture_bucket,
                capture_bucket_in_nag=f"arn:<AWS::Partition>:s3:::{imported.capture_bucket_export}"
                if imported.capture_bucket_export
                else None,
                data_key=imported.data_key,
            )
            ModelMonitoring(
                self, f"Monitoring-{model.name}", served=served, settings=settings, alarm_topic=topic
            )
            self.api.add_model(model.name, served.alias, processing=model.processing)
            shadow = self.registry.shadow_setting(served)
            self.registry.add_lambda(
                served,
                api_url=self.api.api.url,
                shadow=shadow,
                batch_bucket=batch_bucket,
                transform_model=transform_model,
            )
            self.served = served
        if imported.predictions is not None and model.batch.store is not None:
            self.api.add_predictions(model.name, imported.predictions)
