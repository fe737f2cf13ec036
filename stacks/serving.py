"""The serving stack: every model of the config behind one API, with alarms and dashboards."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from mdk.config import KitConfig
from stacks.alerts import AlarmTopic
from stacks.batch import BatchPipeline
from stacks.lambda_model import LambdaModel
from stacks.model_api import ModelApi
from stacks.monitoring import EndpointMonitoring, ModelMonitoring
from stacks.registry import Registry
from stacks.sagemaker_model import SageMakerModel, ServingImages
from stacks.settings import DeploySettings
from stacks.storage import Storage


class ServingStack(cdk.Stack):
    """``<project>-<stage>-serving``: one deployment unit, so a model's alias or endpoint and its API
    route change together (no cross-stack export to untangle when a model is added or removed)."""

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
            description=f"mdk {settings.prefix}: models on Lambda and SageMaker behind one REST API, batch",
            **kwargs,
        )
        self.alarms = AlarmTopic(self, "Alarms", settings=settings, email=config.alarms.email)
        self.api = ModelApi(self, "ModelApi", config=config.api, settings=settings, models=config.models)
        self.models: dict[str, LambdaModel] = {}
        self.endpoints: dict[str, SageMakerModel] = {}
        sagemaker_models = [m for m in config.models if m.runtime == "sagemaker"]
        batch_models = [m for m in config.models if m.batch.enabled]
        if sagemaker_models or batch_models:
            self.storage = Storage(self, "Storage", settings=settings)
            self.images = ServingImages(self, "ServingImages", settings=settings)
        if sagemaker_models:
            self.capture = self.storage.add_bucket("DataCapture", prefix="data-capture/", expire_days=90)
        for model in sagemaker_models:
            endpoint = SageMakerModel(
                self,
                f"Endpoint-{model.name}",
                model=model,
                settings=settings,
                images=self.images,
                alarm_topic=self.alarms.topic,
                capture_bucket=self.capture,
                data_key=self.storage.key,
            )
            EndpointMonitoring(
                self,
                f"EndpointMonitoring-{model.name}",
                served=endpoint,
                settings=settings,
                alarm_topic=self.alarms.topic,
            )
            arn = self.format_arn(
                service="sagemaker", resource="endpoint", resource_name=endpoint.endpoint_name
            )
            self.api.add_sagemaker_model(model.name, endpoint.endpoint_name, arn, processing=model.processing)
            self.endpoints[model.name] = endpoint
        for model in config.models:
            if model.runtime != "lambda":
                continue
            served = LambdaModel(
                self, f"Model-{model.name}", model=model, settings=settings, alarm_topic=self.alarms.topic
            )
            ModelMonitoring(
                self,
                f"Monitoring-{model.name}",
                served=served,
                settings=settings,
                alarm_topic=self.alarms.topic,
            )
            self.api.add_model(model.name, served.alias, processing=model.processing)
            self.models[model.name] = served
        self.batch: BatchPipeline | None = None
        if batch_models:
            self.batch = BatchPipeline(
                self,
                "Batch",
                config=config,
                settings=settings,
                storage=self.storage,
                images=self.images,
                alarms=self.alarms,
                api=self.api,
            )
        self.registry = Registry(self, "Registry", settings=settings, api_auth=config.api.auth)
        bucket = self.batch.bucket.bucket_name if self.batch is not None else None
        for served in self.models.values():
            shadow = self.registry.shadow_setting(served)
            batch_bucket = bucket if served.model.batch.enabled else None
            self.registry.add_lambda(
                served, api_url=self.api.api.url, shadow=shadow, batch_bucket=batch_bucket
            )
        for endpoint in self.endpoints.values():
            batch_bucket = bucket if endpoint.model.batch.enabled else None
            self.registry.add_sagemaker(endpoint, api_url=self.api.api.url, batch_bucket=batch_bucket)
        cdk.CfnOutput(self, "AlarmTopicArn", value=self.alarms.topic.topic_arn)
