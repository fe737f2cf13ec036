"""A model served by SageMaker: the kit's container, weighted and shadow variants, guardrails, autoscaling."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_applicationautoscaling as autoscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from constructs import Construct

from mdk.bundle import model_spec, sagemaker_context_files, sync_files, write_model_tarball
from mdk.config import PRIMARY_VARIANT, ModelConfig
from mdk_runtime.instances import LOCAL_STORAGE_FAMILIES, instance_family, is_gpu
from stacks import nag
from stacks.alerts import rollback_alarm
from stacks.capture import capture_prefix, grant_capture
from stacks.lambda_model import LOG_RETENTION
from stacks.settings import DeploySettings

ENDPOINT_NAME_MAX = 63
METRICS_NAMESPACE = "AWS/SageMaker"


class ServingImages(Construct):
    """The kit's serving container, built once per device (``cpu``, ``gpu``) for every SageMaker model."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: DeploySettings) -> None:
        super().__init__(scope, construct_id)
        self._context = settings.build_dir / settings.prefix / "images" / "sagemaker"
        self._images: dict[str, ecr_assets.DockerImageAsset] = {}

    def image(self, device: str) -> ecr_assets.DockerImageAsset:
        if device not in self._images:
            sync_files(sagemaker_context_files(), self._context)
            self._images[device] = ecr_assets.DockerImageAsset(
                self,
                f"Image-{device}",
                directory=str(self._context),
                build_args={"DEVICE": device},
                platform=ecr_assets.Platform.LINUX_AMD64,
            )
        return self._images[device]


class SageMakerModel(Construct):
    """One ``sagemaker`` model: models and an endpoint config per deploy (generated names), one endpoint.

    The endpoint keeps one name for its life (``<project>-<stage>-<model>``): the API integration and the
    rollback alarms refer to it, and updates swap endpoint configs under it (blue/green, with guardrails).
    Exposes ``endpoint``, ``endpoint_name``, ``role``, ``rollback_alarms``, ``variant_names``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        model: ModelConfig,
        settings: DeploySettings,
        images: ServingImages,
        alarm_topic: sns.ITopic,
        capture_bucket: s3.IBucket,
        data_key: kms.IKey,
        capture_bucket_in_nag: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.model = model
        self.settings = settings
        self.images = images
        sm = model.sagemaker
        self.spec = model_spec(model)
        stack = Stack.of(self)
        self.endpoint_name = f"{settings.prefix}-{model.name}"
        longest = len(self.endpoint_name)
        if longest > ENDPOINT_NAME_MAX:
            raise ValueError(
                f"models[{model.name}]: the endpoint name '{self.endpoint_name}' is "
                f"{longest} characters; SageMaker allows {ENDPOINT_NAME_MAX}: "
                "shorten the project, stage or model name"
            )

        self.role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"mdk SageMaker model {model.name}: pull its image, read its artifacts, write logs",
        )
        self._grant_logs_and_metrics()
        if sm.vpc is not None:
            self._grant_vpc_access()

        variants: list[tuple[str, Path | None, str, int, float]] = [
            (PRIMARY_VARIANT, None, sm.instance_type, sm.initial_instance_count, sm.weight)
        ]
        variants += [
            (v.name, v.artifact, v.instance_type or sm.instance_type, v.initial_instance_count, v.weight)
            for v in sm.variants
        ]
        production = [self._variant(*v) for v in variants]
        shadow = []
        if sm.shadow is not None:
            s = sm.shadow
            shadow = [
                self._variant(
                    s.name,
                    s.artifact,
                    s.instance_type or sm.instance_type,
                    s.initial_instance_count,
                    s.weight,
                )
            ]
        self.variant_names = [v[0] for v in variants]
        all_types = [v[2] for v in variants] + (
            [sm.shadow.instance_type or sm.instance_type] if sm.shadow else []
        )
        local_storage = sorted({t for t in all_types if instance_family(t) in LOCAL_STORAGE_FAMILIES})

        capture = None
        if model.capture_percent > 0:
            grant_capture(
                self,
                self.role,
                model=model.name,
                bucket=capture_bucket,
                data_key=data_key,
                bucket_in_nag=capture_bucket_in_nag,
            )
            capture = sagemaker.CfnEndpointConfig.DataCaptureConfigProperty(
                initial_sampling_percentage=int(model.capture_percent),
                # SageMaker adds <endpoint>/<variant>/yyyy/mm/dd/hh/ (stacks/capture.py: the one layout)
                destination_s3_uri=capture_bucket.s3_url_for_object(
                    capture_prefix(model.name, self.spec.version)
                ),
                kms_key_id=data_key.key_arn,
                capture_options=[
                    sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Input"),
                    sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Output"),
                ],
                capture_content_type_header=sagemaker.CfnEndpointConfig.CaptureContentTypeHeaderProperty(
                    json_content_types=["application/json", "application/jsonlines"],
                    csv_content_types=["text/csv"],
                ),
                enable_capture=True,
            )
        self.endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "EndpointConfig",
            production_variants=production,
            shadow_production_variants=shadow or None,
            data_capture_config=capture,
            # Instance types with local NVMe storage take no volume key (AWS refuses one; their instance
            # store is encrypted by the hardware). Every other type gets the stack's data key.
            kms_key_id=None if local_storage else data_key.key_arn,
        )
        if not local_storage:
            data_key.grant(
                self.role,
                "kms:CreateGrant",
                "kms:Decrypt",
                "kms:DescribeKey",
                "kms:GenerateDataKey",
                "kms:GenerateDataKeyWithoutPlaintext",
            )

        self.rollback_alarms = self._rollback_alarms(alarm_topic)
        rollout = model.rollout
        routing = _traffic_routing(rollout.strategy, rollout.percent, rollout.interval_minutes)
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=self.endpoint_name,
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
            deployment_config=sagemaker.CfnEndpoint.DeploymentConfigProperty(
                blue_green_update_policy=sagemaker.CfnEndpoint.BlueGreenUpdatePolicyProperty(
                    traffic_routing_configuration=routing,
                    termination_wait_in_seconds=sm.baking_minutes * 60,
                    maximum_execution_timeout_in_seconds=3600,
                ),
                auto_rollback_configuration=sagemaker.CfnEndpoint.AutoRollbackConfigProperty(
                    alarms=[
                        sagemaker.CfnEndpoint.AlarmProperty(alarm_name=a.alarm_name)
                        for a in self.rollback_alarms
                    ]
                ),
            ),
            # Instance counts set by autoscaling survive an update; weights come from the config.
            retain_all_variant_properties=True,
            exclude_retained_variant_properties=[
                sagemaker.CfnEndpoint.VariantPropertyProperty(variant_property_type="DesiredWeight")
            ],
        )
        # SageMaker writes the endpoint's logs to /aws/sagemaker/Endpoints/<endpoint name>, creating the
        # group without retention if it is missing ("Log Amazon SageMaker AI events with Amazon
        # CloudWatch", https://docs.aws.amazon.com/sagemaker/latest/dg/logging-cloudwatch.html): the stack
        # creates it first, with the kit's retention (the endpoint waits for it).
        self.log_group = logs.LogGroup(
            self,
            "EndpointLogs",
            log_group_name=f"/aws/sagemaker/Endpoints/{self.endpoint_name}",
            retention=LOG_RETENTION,
            removal_policy=settings.removal_policy,
        )
        self.endpoint.node.add_dependency(self.log_group)
        self._autoscaling(stack)

    # -- pieces ---------------------------------------------------------------------------------

    def _variant(
        self, name: str, artifact: Path | None, instance_type: str, count: int, weight: float
    ) -> sagemaker.CfnEndpointConfig.ProductionVariantProperty:
        model_id = "" if name == PRIMARY_VARIANT else f"-{name}"
        tarball = write_model_tarball(
            self.model,
            self.settings.build_dir
            / self.settings.prefix
            / "sagemaker"
            / self.model.name
            / name
            / "model.tar.gz",
            artifact=artifact,
        )
        asset = s3_assets.Asset(self, f"Artifact{model_id}", path=str(tarball))
        # This one object, not the whole asset bucket (which grant_read would give).
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"], resources=[asset.bucket.arn_for_objects(asset.s3_object_key)]
            )
        )
        device = "gpu" if is_gpu(instance_type) else "cpu"
        image = self.images.image(device)
        image.repository.grant_pull(self.role)
        sm = self.model.sagemaker
        container = sagemaker.CfnModel.ContainerDefinitionProperty(
            image=image.image_uri,
            model_data_url=asset.s3_object_url,
            environment={
                "MDK_DEVICE": device,
                "MDK_MAX_BATCH_SIZE": str(sm.max_batch_size),
                "MDK_MAX_BATCH_DELAY_MS": str(sm.max_batch_delay_ms),
                "MDK_MAX_PAYLOAD_MB": str(self.model.batch.max_payload_mb),
                "MDK_MAX_CONCURRENT_TRANSFORMS": str(self.model.batch.max_concurrent_transforms),
            },
        )
        vpc = (
            sagemaker.CfnModel.VpcConfigProperty(
                subnets=sm.vpc.subnet_ids, security_group_ids=sm.vpc.security_group_ids
            )
            if sm.vpc is not None
            else None
        )
        cfn_model = sagemaker.CfnModel(
            self,
            f"Model{model_id}",
            execution_role_arn=self.role.role_arn,
            primary_container=container,
            vpc_config=vpc,
            enable_network_isolation=sm.network_isolation,
        )
        # The role's policies must exist before SageMaker uses the role to create the model.
        cfn_model.node.add_dependency(self.role)
        return sagemaker.CfnEndpointConfig.ProductionVariantProperty(
            variant_name=name,
            model_name=cfn_model.attr_model_name,
            instance_type=instance_type,
            initial_instance_count=count,
            initial_variant_weight=weight,
        )

    def variant_metric(self, variant: str, metric_name: str, statistic: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=metric_name,
            dimensions_map={"EndpointName": self.endpoint_name, "VariantName": variant},
            statistic=statistic,
            period=Duration.minutes(1),
        )

    def _rollback_alarms(self, topic: sns.ITopic) -> list[cloudwatch.Alarm]:
        rollout = self.model.rollout
        alarms = []
        for variant in self.variant_names:
            suffix = "" if variant == PRIMARY_VARIANT else f"-{variant}"
            for alarm_id, metric, threshold, what in (
                (
                    f"Errors5xx{suffix}",
                    self.variant_metric(variant, "Invocation5XXErrors", "Sum"),
                    rollout.max_errors,
                    f"{rollout.max_errors}+ 5xx invocations in a minute",
                ),
                (
                    f"LatencyP99{suffix}",
                    # ModelLatency is in microseconds.
                    self.variant_metric(variant, "ModelLatency", "p99"),
                    rollout.p99_latency_ms * 1000,
                    f"p99 model latency above {rollout.p99_latency_ms} ms",
                ),
            ):
                alarms.append(
                    rollback_alarm(
                        self,
                        alarm_id,
                        metric=metric,
                        threshold=threshold,
                        description=f"{self.model.name} variant {variant}: {what}",
                        topic=topic,
                    )
                )
        return alarms

    def _autoscaling(self, stack: Stack) -> None:
        sm = self.model.sagemaker
        for variant in self.variant_names:
            suffix = "" if variant == PRIMARY_VARIANT else f"-{variant}"
            target = autoscaling.ScalableTarget(
                self,
                f"Scaling{suffix}",
                service_namespace=autoscaling.ServiceNamespace.SAGEMAKER,
                resource_id=f"endpoint/{self.endpoint_name}/variant/{variant}",
                scalable_dimension="sagemaker:variant:DesiredInstanceCount",
                min_capacity=sm.min_instances,
                max_capacity=sm.max_instances,
                role=iam.Role.from_role_arn(
                    self,
                    f"ScalingRole{suffix}",
                    stack.format_arn(
                        service="iam",
                        region="",
                        resource="role",
                        resource_name="aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
                        "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
                    ),
                ),
            )
            target.node.add_dependency(self.endpoint)
            target.scale_to_track_metric(
                f"InvocationsPerInstance{suffix}",
                target_value=sm.target_invocations_per_instance,
                predefined_metric=autoscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
                scale_in_cooldown=Duration.minutes(5),
                scale_out_cooldown=Duration.minutes(1),
            )

    def _grant_vpc_access(self) -> None:
        """What SageMaker needs to attach the model's containers to the configured subnets."""
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "ec2:CreateNetworkInterface",
                    "ec2:CreateNetworkInterfacePermission",
                    "ec2:DeleteNetworkInterface",
                    "ec2:DeleteNetworkInterfacePermission",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeVpcs",
                    "ec2:DescribeDhcpOptions",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeSecurityGroups",
                ],
                resources=["*"],
            )
        )

    def _grant_logs_and_metrics(self) -> None:
        grant_logs_and_metrics(
            self.role,
            group=f"/aws/sagemaker/Endpoints/{self.endpoint_name}",
            streams="*",
            group_in_nag=f"/aws/sagemaker/Endpoints/{self.endpoint_name}",
            reason=nag.SAGEMAKER_LOG_STREAMS_REASON,
        )


def grant_logs_and_metrics(
    role: iam.Role, *, group: str, streams: str, group_in_nag: str, reason: str
) -> None:
    """What every SageMaker execution role needs: its log group's ``streams``, and metrics in
    SageMaker's namespaces (PutMetricData takes no resource: a condition on the namespace instead)."""
    stack = Stack.of(role)
    role.add_to_policy(
        iam.PolicyStatement(
            actions=[
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "logs:DescribeLogStreams",
            ],
            resources=[
                stack.format_arn(
                    service="logs",
                    resource="log-group",
                    resource_name=name,
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
                for name in (group, f"{group}:log-stream:{streams}")
            ],
        )
    )
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "AWS/SageMaker"]}},
        )
    )
    nag.acknowledge(
        role,
        nag.SAGEMAKER_ROLE_WILDCARDS,
        nag.Acknowledged(
            "AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:"
            f"log-group:{group_in_nag}:log-stream:{streams}]",
            reason,
        ),
    )


def _traffic_routing(
    strategy: str, percent: int, interval_minutes: int
) -> sagemaker.CfnEndpoint.TrafficRoutingConfigProperty:
    wait = interval_minutes * 60
    if strategy == "canary":
        return sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
            type="CANARY",
            canary_size=sagemaker.CfnEndpoint.CapacitySizeProperty(type="CAPACITY_PERCENT", value=percent),
            wait_interval_in_seconds=wait,
        )
    if strategy == "linear":
        return sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
            type="LINEAR",
            linear_step_size=sagemaker.CfnEndpoint.CapacitySizeProperty(
                type="CAPACITY_PERCENT", value=percent
            ),
            wait_interval_in_seconds=wait,
        )
    return sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(type="ALL_AT_ONCE", wait_interval_in_seconds=0)
