"""A model served by Lambda: image function, ``live`` alias, gradual rollout, alarms on the new version."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from mdk.bundle import (
    HANDLERS_DIR,
    IMAGE_MODEL_DIR,
    RUNTIME_DIR,
    model_spec,
    write_function_context,
    write_image_context,
)
from mdk.config import ModelConfig, RolloutSettings
from mdk_runtime import telemetry
from stacks import nag
from stacks.alerts import rollback_alarm
from stacks.capture import capture_alarm, capture_environment, grant_capture
from stacks.settings import DeploySettings

ALIAS = "live"
LOG_RETENTION = logs.RetentionDays.THREE_MONTHS
LOG_RETENTION_DAYS = 90  # the same, as a number of days (for what the kit sets at run time)

_PRESETS: dict[tuple[str, int, int], codedeploy.ILambdaDeploymentConfig] = {
    ("canary", 10, 5): codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_5_MINUTES,
    ("canary", 10, 10): codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_10_MINUTES,
    ("canary", 10, 15): codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_15_MINUTES,
    ("canary", 10, 30): codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_30_MINUTES,
    ("linear", 10, 1): codedeploy.LambdaDeploymentConfig.LINEAR_10_PERCENT_EVERY_1_MINUTE,
    ("linear", 10, 2): codedeploy.LambdaDeploymentConfig.LINEAR_10_PERCENT_EVERY_2_MINUTES,
    ("linear", 10, 3): codedeploy.LambdaDeploymentConfig.LINEAR_10_PERCENT_EVERY_3_MINUTES,
    ("linear", 10, 10): codedeploy.LambdaDeploymentConfig.LINEAR_10_PERCENT_EVERY_10_MINUTES,
}


def deployment_config(scope: Construct, rollout: RolloutSettings) -> codedeploy.ILambdaDeploymentConfig:
    """CodeDeploy's preset when one matches the config, else a custom canary/linear config."""
    if rollout.strategy == "all_at_once":
        return codedeploy.LambdaDeploymentConfig.ALL_AT_ONCE
    preset = _PRESETS.get((rollout.strategy, rollout.percent, rollout.interval_minutes))
    if preset is not None:
        return preset
    interval = Duration.minutes(rollout.interval_minutes)
    routing = (
        codedeploy.TrafficRouting.time_based_canary(interval=interval, percentage=rollout.percent)
        if rollout.strategy == "canary"
        else codedeploy.TrafficRouting.time_based_linear(interval=interval, percentage=rollout.percent)
    )
    return codedeploy.LambdaDeploymentConfig(scope, "RolloutConfig", traffic_routing=routing)


class LambdaModel(Construct):
    """One ``lambda`` model: everything from the image to the rollback alarms.

    Exposes ``function``, ``version`` (the one this synth deploys), ``alias`` (``live``, what the API
    calls), ``deployment_group``, ``pre_traffic_hook`` and ``rollback_alarms``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        model: ModelConfig,
        settings: DeploySettings,
        alarm_topic: sns.ITopic,
        capture_bucket: s3.IBucket | None = None,
        capture_bucket_in_nag: str | None = None,
        data_key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.model = model
        self.spec = model_spec(model)
        capturing = model.capture_percent > 0
        if capturing and (capture_bucket is None or data_key is None):
            raise ValueError(f"{model.name}: capture is on, so the capture bucket and data key are needed")
        lam = model.lambda_
        arm = lam.architecture == "arm64"
        context = write_image_context(model, settings.build_dir / settings.prefix / "images" / model.name)

        self.log_group = logs.LogGroup(
            self, "Logs", retention=LOG_RETENTION, removal_policy=settings.removal_policy
        )
        self.role = function_role(self, "Role", self.log_group, f"mdk model {model.name}")
        self.function = lambda_.DockerImageFunction(
            self,
            "Function",
            description=f"mdk model {model.name}, version {self.spec.version}",
            code=lambda_.DockerImageCode.from_image_asset(
                str(context),
                build_args={"MODEL_DIR": IMAGE_MODEL_DIR},
                platform=ecr_assets.Platform.LINUX_ARM64 if arm else ecr_assets.Platform.LINUX_AMD64,
            ),
            architecture=lambda_.Architecture.ARM_64 if arm else lambda_.Architecture.X86_64,
            memory_size=lam.memory_mb,
            timeout=Duration.seconds(lam.timeout_s),
            reserved_concurrent_executions=lam.reserved_concurrency,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group,
            role=self.role,
            environment={
                "POWERTOOLS_SERVICE_NAME": telemetry.SERVICE,
                "POWERTOOLS_METRICS_NAMESPACE": telemetry.NAMESPACE,
                "POWERTOOLS_LOG_LEVEL": "INFO",
                **(
                    capture_environment(model, self.spec.version, capture_bucket)
                    if capturing and capture_bucket is not None
                    else {}
                ),
            },
            current_version_options=lambda_.VersionOptions(
                # Old versions stay: rollback (CodeDeploy's or `mdk rollback`) needs them.
                removal_policy=RemovalPolicy.RETAIN,
                description=f"model {model.name} {self.spec.version}, sha256 {self.spec.sha256[:12]}",
            ),
        )
        self.version = self.function.current_version
        self.capture_alarm: cloudwatch.Alarm | None = None
        if capturing and capture_bucket is not None and data_key is not None:
            grant_capture(
                self,
                self.role,
                model=model.name,
                bucket=capture_bucket,
                data_key=data_key,
                bucket_in_nag=capture_bucket_in_nag,
            )
            self.capture_alarm = capture_alarm(
                self,
                "CaptureFailed",
                metric=self.model_metric(telemetry.CAPTURE_FAILED, "Sum"),
                description=f"{model.name} {self.spec.version}: captured predictions could not be written "
                "to S3 (the sender's retries ran out, or its queue was full); they are lost",
                topic=alarm_topic,
            )
        self.alias = lambda_.Alias(
            self,
            "Live",
            alias_name=ALIAS,
            version=self.version,
            # AWS refuses to change provisioned concurrency while the alias carries weights (mid-rollout);
            # see the README: change it between rollouts, not during one.
            provisioned_concurrent_executions=lam.provisioned_concurrency,
        )
        self.rollback_alarms = self._new_version_alarms(model, alarm_topic)
        for alarm in self.rollback_alarms:
            # The alarms must watch the new version before CodeDeploy starts shifting traffic to it.
            self.alias.node.add_dependency(alarm)
        self.pre_traffic_hook = self._pre_traffic_hook(settings)
        self.rollout_role = self._codedeploy_role()
        nag.acknowledge(self.function, nag.MODEL_FUNCTION_DLQ)
        nag.acknowledge(self.role, nag.XRAY_WILDCARD)
        self.deployment_group = codedeploy.LambdaDeploymentGroup(
            self,
            "Rollout",
            alias=self.alias,
            # Immutable to the group: it would attach AWSCodeDeployRoleForLambdaLimited to any role.
            role=self.rollout_role.without_policy_updates(),
            deployment_config=deployment_config(self, model.rollout),
            alarms=self.rollback_alarms,
            auto_rollback=codedeploy.AutoRollbackConfig(
                failed_deployment=True, stopped_deployment=True, deployment_in_alarm=True
            ),
            pre_hook=self.pre_traffic_hook,
        )
        hook_arn = Stack.of(self).get_logical_id(self.pre_traffic_hook.node.default_child)  # type: ignore[arg-type]
        function_id = Stack.of(self).get_logical_id(self.function.node.default_child)  # type: ignore[arg-type]
        nag.acknowledge(
            self.rollout_role,
            nag.CODEDEPLOY_ALARMS,
            nag.Acknowledged(
                nag.CODEDEPLOY_ALIAS.rule.replace("<FUNCTION>", f"<{function_id}.Arn>"),
                nag.CODEDEPLOY_ALIAS.reason,
            ),
            nag.Acknowledged(
                nag.CODEDEPLOY_HOOK_QUALIFIERS.rule.replace("<HOOK>", f"<{hook_arn}.Arn>"),
                nag.CODEDEPLOY_HOOK_QUALIFIERS.reason,
            ),
        )

    def _codedeploy_role(self) -> iam.Role:
        """CodeDeploy's service role, narrowed to this function: AWS's managed policy for it
        (AWSCodeDeployRoleForLambdaLimited) allows lambda:UpdateAlias on every function of the account.

        What CodeDeploy needs for a Lambda deployment, from that policy: read and update the alias,
        read its provisioned concurrency, read the group's alarms, invoke the pre-traffic hook (any
        qualifier of that one function). (AWS managed policy reference:
        https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSCodeDeployRoleForLambdaLimited.html)
        """
        role = iam.Role(
            self,
            "RolloutRole",
            assumed_by=iam.ServicePrincipal("codedeploy.amazonaws.com"),
            description=f"CodeDeploy rollouts of mdk model {self.model.name}: this function's alias only",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["lambda:GetAlias", "lambda:UpdateAlias", "lambda:GetProvisionedConcurrencyConfig"],
                resources=[self.function.function_arn, f"{self.function.function_arn}:*"],
            )
        )
        role.add_to_policy(iam.PolicyStatement(actions=["cloudwatch:DescribeAlarms"], resources=["*"]))
        hook = self.pre_traffic_hook.function_arn
        role.add_to_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[hook, f"{hook}:*"])
        )
        return role

    def version_metric(self, metric_name: str, statistic: str) -> cloudwatch.Metric:
        """An AWS/Lambda metric of the version this synth deploys, invoked through the alias.

        Alias-level metrics blend old and new versions (a 10 % canary dilutes an error rate ten times);
        the ExecutedVersion dimension isolates the new one.
        """
        return cloudwatch.Metric(
            namespace="AWS/Lambda",
            metric_name=metric_name,
            dimensions_map={
                "FunctionName": self.function.function_name,
                "Resource": f"{self.function.function_name}:{ALIAS}",
                "ExecutedVersion": self.version.version,
            },
            statistic=statistic,
            period=Duration.minutes(1),
        )

    def model_metric(self, metric_name: str, statistic: str) -> cloudwatch.Metric:
        """A metric the function emits (EMF) for this model version."""
        return cloudwatch.Metric(
            namespace=telemetry.NAMESPACE,
            metric_name=metric_name,
            dimensions_map={
                telemetry.DIM_MODEL: self.model.name,
                telemetry.DIM_VERSION: self.spec.version,
                telemetry.DIM_SERVICE: telemetry.SERVICE,
            },
            statistic=statistic,
            period=Duration.minutes(1),
        )

    def _new_version_alarms(self, model: ModelConfig, topic: sns.ITopic) -> list[cloudwatch.Alarm]:
        rollout = model.rollout
        specs = [
            (
                "NewVersionFunctionErrors",
                self.version_metric("Errors", "Sum"),
                rollout.max_errors,
                f"{model.name}: the new version failed {rollout.max_errors}+ invocations in a minute "
                "(crash, timeout, out of memory)",
            ),
            (
                "NewVersionServerErrors",
                self.model_metric(telemetry.SERVER_ERRORS, "Sum"),
                rollout.max_errors,
                f"{model.name} {self.spec.version}: {rollout.max_errors}+ server errors (5xx) in a minute",
            ),
            (
                "NewVersionLatencyP99",
                self.version_metric("Duration", "p99"),
                rollout.p99_latency_ms,
                f"{model.name}: the new version's p99 duration is above {rollout.p99_latency_ms} ms",
            ),
        ]
        return [
            rollback_alarm(
                self, alarm_id, metric=metric, threshold=threshold, description=description, topic=topic
            )
            for alarm_id, metric, threshold, description in specs
        ]

    def _pre_traffic_hook(self, settings: DeploySettings) -> lambda_.Function:
        code = write_function_context(
            {
                "lambda_handlers/__init__.py": HANDLERS_DIR / "__init__.py",
                "lambda_handlers/rollout_hooks.py": HANDLERS_DIR / "rollout_hooks.py",
                # The route table (standard library only) and its package, which imports nothing.
                "mdk_runtime/__init__.py": RUNTIME_DIR / "__init__.py",
                "mdk_runtime/routes.py": RUNTIME_DIR / "routes.py",
            },
            settings.build_dir / settings.prefix / "functions" / "rollout-hooks",
        )
        hook_logs = logs.LogGroup(
            self, "PreTrafficHookLogs", retention=LOG_RETENTION, removal_policy=settings.removal_policy
        )
        role = function_role(
            self, "PreTrafficHookRole", hook_logs, f"mdk pre-traffic hook of {self.model.name}"
        )
        hook = lambda_.Function(
            self,
            "PreTrafficHook",
            description=f"mdk: tries a new version of model {self.model.name} before it gets traffic",
            runtime=lambda_.Runtime.PYTHON_3_14,
            architecture=lambda_.Architecture.ARM_64,
            handler="lambda_handlers.rollout_hooks.pre_traffic",
            code=lambda_.Code.from_asset(str(code)),
            # Three calls to a version that may be cold: its timeout three times, and a margin.
            timeout=Duration.seconds(min(900, 3 * self.model.lambda_.timeout_s + 60)),
            memory_size=256,
            tracing=lambda_.Tracing.ACTIVE,
            logging_format=lambda_.LoggingFormat.JSON,
            log_group=hook_logs,
            role=role,
            environment={
                "MDK_TARGET_VERSION_ARN": self.version.function_arn,
                "MDK_MODEL_NAME": self.model.name,
            },
        )
        self.version.grant_invoke(hook)
        nag.acknowledge(hook, nag.HOOK_DLQ)
        nag.acknowledge(role, nag.XRAY_WILDCARD)
        return hook


def function_role(scope: Construct, construct_id: str, log_group: logs.ILogGroup, what: str) -> iam.Role:
    """A function role that may write to its own log group only (instead of AWSLambdaBasicExecutionRole,
    which may create and write any log group); tracing and grants add what else the function needs."""
    role = iam.Role(
        scope, construct_id, assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=f"{what}"
    )
    log_group.grant(role, "logs:CreateLogStream", "logs:PutLogEvents")
    return role
