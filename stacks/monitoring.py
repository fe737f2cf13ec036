"""A dashboard and alarms per model, with cdk-monitoring-constructs (a model with batch on: its batch
runs and records too; the shared batch dashboard shows the totals)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sns as sns
from cdk_monitoring_constructs import (
    AlarmFactoryDefaults,
    CustomMetricGroup,
    CustomMetricSearch,
    CustomMetricWithAlarm,
    CustomThreshold,
    DefaultDashboardFactory,
    ErrorCountThreshold,
    LatencyThreshold,
    MetricStatistic,
    MonitoringFacade,
    SnsAlarmActionStrategy,
)
from constructs import Construct

from mdk.config import ModelConfig
from mdk_runtime import telemetry
from stacks.batch import model_groups
from stacks.lambda_model import ALIAS, LambdaModel
from stacks.sagemaker_model import SageMakerModel
from stacks.settings import DeploySettings


class ModelMonitoring(Construct):
    """The model's dashboard: the alias's latency p50/p99, errors, throttles and concurrency (with alarms
    to the topic), the model's own metrics (service-side latency, instances, errors by code, cold starts,
    init duration) and the traffic split between versions during a rollout."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        served: LambdaModel,
        settings: DeploySettings,
        alarm_topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        name = served.model.name
        prefix = f"{settings.prefix}-{name}"
        self.facade = MonitoringFacade(
            self,
            "Facade",
            alarm_factory_defaults=AlarmFactoryDefaults(
                alarm_name_prefix=settings.prefix,
                actions_enabled=True,
                action=SnsAlarmActionStrategy(on_alarm_topic=alarm_topic),
            ),
            dashboard_factory=DefaultDashboardFactory(
                self,
                "Dashboards",
                dashboard_name_prefix=prefix,
                create_dashboard=True,
                create_summary_dashboard=False,
                create_alarm_dashboard=False,
            ),
        )
        timeout_ms = served.model.lambda_.timeout_s * 1000
        self.facade.monitor_lambda_function(
            lambda_function=served.alias,
            human_readable_name=f"{name} (alias {ALIAS})",
            alarm_friendly_name=name,
            add_latency_p99_alarm={
                "Warning": LatencyThreshold(max_latency=Duration.millis(max(1, int(timeout_ms * 0.8))))
            },
            add_fault_count_alarm={"Critical": ErrorCountThreshold(max_error_count=5, datapoints_to_alarm=2)},
            add_throttles_count_alarm={"Warning": ErrorCountThreshold(max_error_count=1)},
        )
        function_name = served.function.function_name
        dims = {
            telemetry.DIM_MODEL: name,
            telemetry.DIM_SERVICE: telemetry.SERVICE,
        }

        def model_search(metric: str, statistic: MetricStatistic, label: str) -> CustomMetricSearch:
            return CustomMetricSearch(
                namespace=telemetry.NAMESPACE,
                search_query=f'MetricName="{metric}"',
                dimensions_map=dims,
                statistic=statistic,
                label=label,
                period=Duration.minutes(1),
            )

        self.facade.monitor_custom(
            alarm_friendly_name=f"{name}-model",
            human_readable_name=f"{name}: model metrics by version",
            metric_groups=[
                CustomMetricGroup(
                    title="Traffic split: invocations by executed version",
                    metrics=[
                        cloudwatch.MathExpression(
                            expression=(
                                "SEARCH('{AWS/Lambda,FunctionName,Resource,ExecutedVersion} "
                                f'MetricName="Invocations" FunctionName="{function_name}" '
                                f"Resource=\"{function_name}:{ALIAS}\"', 'Sum', 60)"
                            ),
                            using_metrics={},
                            label="version",
                            period=Duration.minutes(1),
                        )
                    ],
                ),
                CustomMetricGroup(
                    title="Service-side latency (ms) p50 / p99 by model version",
                    metrics=[
                        model_search(
                            telemetry.LATENCY, MetricStatistic.P50, "p50 ${PROP('Dim.ModelVersion')}"
                        ),
                        model_search(
                            telemetry.LATENCY, MetricStatistic.P99, "p99 ${PROP('Dim.ModelVersion')}"
                        ),
                    ],
                ),
                CustomMetricGroup(
                    title="Instances scored and errors by kind",
                    metrics=[
                        model_search(
                            telemetry.INSTANCES, MetricStatistic.SUM, "instances ${PROP('Dim.ModelVersion')}"
                        ),
                        model_search(
                            telemetry.CLIENT_ERRORS, MetricStatistic.SUM, "4xx ${PROP('Dim.ModelVersion')}"
                        ),
                        model_search(
                            telemetry.SERVER_ERRORS, MetricStatistic.SUM, "5xx ${PROP('Dim.ModelVersion')}"
                        ),
                    ],
                ),
                CustomMetricGroup(
                    title="Predictions stopped at the deadline (504 inference_timeout)",
                    metrics=[
                        CustomMetricWithAlarm(
                            metric=cloudwatch.Metric(
                                namespace=telemetry.NAMESPACE,
                                metric_name=telemetry.ERRORS_BY_CODE,
                                dimensions_map={
                                    **dims,
                                    telemetry.DIM_VERSION: served.spec.version,
                                    telemetry.DIM_ERROR_CODE: telemetry.INFERENCE_TIMEOUT,
                                },
                                statistic="Sum",
                                period=Duration.minutes(1),
                            ),
                            alarm_friendly_name="timeouts",
                            add_alarm={
                                # One request the model could not answer in time is worth a look: the
                                # function's timeout (or the input limits) no longer fit the model.
                                "Critical": CustomThreshold(
                                    threshold=1,
                                    comparison_operator=(
                                        cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
                                    ),
                                    datapoints_to_alarm=1,
                                    evaluation_periods=1,
                                    treat_missing_data_override=cloudwatch.TreatMissingData.NOT_BREACHING,
                                    alarm_description_override=(
                                        f"{name} {served.spec.version}: predictions stopped at the "
                                        "request's deadline (answered 504 inference_timeout): the model is "
                                        "too slow for the function's timeout on some inputs"
                                    ),
                                )
                            },
                        )
                    ],
                ),
                CustomMetricGroup(
                    title="Cold starts and init duration (ms)",
                    metrics=[
                        cloudwatch.Metric(
                            namespace=telemetry.NAMESPACE,
                            metric_name=telemetry.COLD_START,
                            dimensions_map={
                                "function_name": function_name,
                                telemetry.DIM_SERVICE: telemetry.SERVICE,
                            },
                            statistic="Sum",
                            label="cold starts",
                            period=Duration.minutes(1),
                        ),
                        model_search(
                            telemetry.INIT_DURATION,
                            MetricStatistic.MAX,
                            "init ms ${PROP('Dim.ModelVersion')}",
                        ),
                    ],
                ),
            ],
        )
        monitor_batch(self.facade, served.model)


def monitor_batch(facade: MonitoringFacade, model: ModelConfig) -> None:
    """The model's batch runs and records on its dashboard, if it takes batch files."""
    if model.batch.enabled:
        facade.monitor_custom(
            alarm_friendly_name=f"{model.name}-batch",
            human_readable_name=f"{model.name}: batch transform",
            metric_groups=model_groups(model.name),
        )


class EndpointMonitoring(Construct):
    """A SageMaker endpoint's dashboard and alarms: cdk-monitoring-constructs has no SageMaker monitor,
    so these are its custom metric groups on ``AWS/SageMaker`` and ``/aws/sagemaker/Endpoints``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        served: SageMakerModel,
        settings: DeploySettings,
        alarm_topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        name = served.model.name
        self.facade = MonitoringFacade(
            self,
            "Facade",
            alarm_factory_defaults=AlarmFactoryDefaults(
                alarm_name_prefix=settings.prefix,
                actions_enabled=True,
                action=SnsAlarmActionStrategy(on_alarm_topic=alarm_topic),
            ),
            dashboard_factory=DefaultDashboardFactory(
                self,
                "Dashboards",
                dashboard_name_prefix=f"{settings.prefix}-{name}",
                create_dashboard=True,
                create_summary_dashboard=False,
                create_alarm_dashboard=False,
            ),
        )
        p99_us = served.model.rollout.p99_latency_ms * 1000
        groups = []
        for variant in served.variant_names:

            def metric(
                metric_name: str,
                statistic: str,
                label: str,
                namespace: str = "AWS/SageMaker",
                variant: str = variant,
            ) -> cloudwatch.Metric:
                return cloudwatch.Metric(
                    namespace=namespace,
                    metric_name=metric_name,
                    dimensions_map={"EndpointName": served.endpoint_name, "VariantName": variant},
                    statistic=statistic,
                    label=label,
                    period=Duration.minutes(1),
                )

            groups += [
                CustomMetricGroup(
                    title=f"{variant}: invocations and errors",
                    metrics=[
                        metric("Invocations", "Sum", "invocations"),
                        metric("Invocation4XXErrors", "Sum", "4xx"),
                        CustomMetricWithAlarm(
                            metric=metric("Invocation5XXErrors", "Sum", "5xx"),
                            alarm_friendly_name=f"{variant}-5xx",
                            add_alarm={
                                "Critical": CustomThreshold(
                                    threshold=5,
                                    comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                                    datapoints_to_alarm=2,
                                    evaluation_periods=3,
                                )
                            },
                        ),
                    ],
                ),
                CustomMetricGroup(
                    title=f"{variant}: model and overhead latency (µs)",
                    metrics=[
                        metric("ModelLatency", "p50", "model p50"),
                        CustomMetricWithAlarm(
                            metric=metric("ModelLatency", "p99", "model p99"),
                            alarm_friendly_name=f"{variant}-latency",
                            add_alarm={
                                "Warning": CustomThreshold(
                                    threshold=p99_us,
                                    comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                                    datapoints_to_alarm=3,
                                    evaluation_periods=5,
                                )
                            },
                        ),
                        metric("OverheadLatency", "p99", "overhead p99"),
                    ],
                ),
                CustomMetricGroup(
                    title=f"{variant}: utilisation (%)",
                    metrics=[
                        metric(m, "Average", m, "/aws/sagemaker/Endpoints")
                        for m in (
                            "CPUUtilization",
                            "MemoryUtilization",
                            "GPUUtilization",
                            "GPUMemoryUtilization",
                        )
                    ],
                ),
            ]
        self.facade.monitor_custom(
            alarm_friendly_name=name,
            human_readable_name=f"{name}: SageMaker endpoint",
            metric_groups=groups,
        )
        monitor_batch(self.facade, served.model)
