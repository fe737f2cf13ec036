"""CodeDeploy and CloudWatch alarms of the local cloud, on a shortened clock.

When a deploy changes the version of an alias that a CodeDeploy deployment group manages (the stack's
``UpdatePolicy: CodeDeployLambdaAliasUpdate``), :class:`LocalCodeDeploy` does what CodeDeploy does:

1. creates the deployment (visible to ``mdk status`` and ``aws deploy``), with the Lambda AppSpec;
2. runs the BeforeAllowTraffic hook (the stack's pre-traffic function) and waits for the status it reports
   with ``PutLifecycleEventHookExecutionStatus``; a failure ends the deployment, the alias untouched;
3. shifts the alias's weights by the deployment config (``CodeDeployDefault.LambdaCanary10Percent5Minutes``,
   linear ones, all-at-once or the stack's custom config), one simulated minute lasting
   :attr:`minute_s` seconds, evaluating the group's alarms at every tick; an alarm in ALARM (or a
   ``StopDeployment`` with rollback) puts the alias back on the old version;
4. promotes: the alias on the new version, no routing.

:class:`AlarmEvaluator` evaluates alarms from the metrics the functions emitted into the local CloudWatch:
the alarm's statistic (Sum, Average, Minimum, Maximum, SampleCount or a percentile) over its window,
compared with its threshold; missing data as the alarm says. It runs in the background for every alarm
and on demand during a rollout (then over everything since the traffic shift began).
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from mdk.local.cloud import moto_adapter
from mdk.local.cloud.deploy import AliasChange, StackDeployment
from mdk.local.cloud.functions import FunctionRunner

log = logging.getLogger("mdk.local")
_PREDEFINED = re.compile(
    r"CodeDeployDefault\.Lambda(?P<kind>Canary|Linear)(?P<percent>\d+)Percent(?:Every)?(?P<minutes>\d+)Minutes?"
)
_COMPARE = {
    "GreaterThanThreshold": lambda v, t: v > t,
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}


@dataclass(frozen=True)
class Steps:
    """Traffic percentages for the new version and the simulated minutes each lasts before the next."""

    percents: tuple[float, ...]
    interval_minutes: int

    @classmethod
    def from_config(cls, name: str, custom: dict[str, dict[str, Any]]) -> Steps:
        if name in custom:
            routing = custom[name].get("TrafficRoutingConfig", {})
            kind = routing.get("Type", "AllAtOnce")
            if kind == "TimeBasedCanary":
                canary = routing["TimeBasedCanary"]
                return cls((float(canary["CanaryPercentage"]),), int(canary["CanaryInterval"]))
            if kind == "TimeBasedLinear":
                linear = routing["TimeBasedLinear"]
                return cls._linear(float(linear["LinearPercentage"]), int(linear["LinearInterval"]))
            return cls((), 0)
        match = _PREDEFINED.fullmatch(name)
        if match is None:
            return cls((), 0)  # CodeDeployDefault.LambdaAllAtOnce and anything unknown: all at once
        percent, minutes = float(match.group("percent")), int(match.group("minutes"))
        if match.group("kind") == "Canary":
            return cls((percent,), minutes)
        return cls._linear(percent, minutes)

    @classmethod
    def _linear(cls, percent: float, minutes: int) -> Steps:
        count = math.ceil(100 / percent) - 1
        return cls(tuple(min(100.0, percent * (i + 1)) for i in range(count)), minutes)


class AlarmEvaluator:
    def __init__(
        self, *, cloudwatch: Any, region: str, minute_s: float, sns: Any = None, sqs: Any = None
    ) -> None:
        self.cloudwatch = cloudwatch
        self.sns = sns
        self.sqs = sqs
        self._previous_round: datetime | None = None  # when the last background round began
        self.region = region
        self.minute_s = minute_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def evaluate(self, names: list[str], since: datetime | None = None) -> dict[str, str]:
        """Evaluate the named alarms now, set their state, return it by name."""
        if not names:
            return {}
        states = {}
        for alarm in self.cloudwatch.describe_alarms(AlarmNames=names).get("MetricAlarms", []):
            state, reason = self._state(alarm, since)
            states[alarm["AlarmName"]] = state
            if state != alarm["StateValue"]:
                self.cloudwatch.set_alarm_state(
                    AlarmName=alarm["AlarmName"], StateValue=state, StateReason=reason
                )
                log.info("alarm %s: %s (%s)", alarm["AlarmName"], state, reason)
                self._notify(alarm, state, reason)
        return states

    _ACTIONS: ClassVar[dict[str, str]] = {
        "ALARM": "AlarmActions",
        "OK": "OKActions",
        "INSUFFICIENT_DATA": "InsufficientDataActions",
    }

    def _notify(self, alarm: dict[str, Any], state: str, reason: str) -> None:
        """What CloudWatch sends to the SNS topics among the alarm's actions for the new state."""
        if self.sns is None or not alarm.get("ActionsEnabled", True):
            return
        topics = [a for a in alarm.get(self._ACTIONS[state], []) if a.startswith("arn:aws:sns:")]
        if not topics:
            return
        name = alarm["AlarmName"]
        message = {
            "AlarmName": name,
            "AlarmDescription": alarm.get("AlarmDescription"),
            "AWSAccountId": moto_adapter.ACCOUNT,
            "NewStateValue": state,
            "NewStateReason": reason,
            "StateChangeTime": datetime.now(UTC).isoformat(),
            "Region": self.region,
            "AlarmArn": alarm.get("AlarmArn"),
            "OldStateValue": alarm["StateValue"],
            "Trigger": {
                "MetricName": alarm.get("MetricName"),
                "Namespace": alarm.get("Namespace"),
                "Statistic": alarm.get("Statistic"),
                "Dimensions": [{"name": d["Name"], "value": d["Value"]} for d in alarm.get("Dimensions", [])],
                "Period": alarm.get("Period"),
                "Threshold": alarm.get("Threshold"),
                "ComparisonOperator": alarm.get("ComparisonOperator"),
            },
        }
        for topic in topics:
            try:
                self.sns.publish(
                    TopicArn=topic,
                    Subject=f'{state}: "{name}" in {self.region}'[:100],
                    Message=json.dumps(message),
                )
            except Exception as exc:  # noqa: BLE001 - a lost notification must not stop evaluation
                log.warning("alarm %s: could not notify %s: %s", name, topic, exc)

    def _state(self, alarm: dict[str, Any], since: datetime | None) -> tuple[str, str]:
        single = single_metric(alarm)
        if single is None:
            return alarm["StateValue"], "metric math alarms are not evaluated locally"
        alarm = {**alarm, **single}
        if since is None:
            periods = int(alarm.get("EvaluationPeriods", 1))
            window = timedelta(seconds=periods * int(alarm.get("Period", 60)) / 60 * self.minute_s)
            since = datetime.now(UTC) - window
            if self._previous_round is not None:
                # A simulated window can be shorter than the time between two rounds: reach back to the
                # round before (and a margin for metrics still on their way), or data points would fall
                # between evaluations. CloudWatch sees every data point in some period; so must we.
                since = min(since, self._previous_round - timedelta(seconds=2))
        dimensions = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
        values = moto_adapter.metric_values(
            self.region, alarm["Namespace"], alarm["MetricName"], dimensions, since
        )
        if not values.count:
            missing = alarm.get("TreatMissingData", "missing")
            if missing == "breaching":
                return "ALARM", "no data (treated as breaching)"
            return (
                "OK" if missing in ("notBreaching", "ignore") else "INSUFFICIENT_DATA"
            ), "no data in the window"
        statistic = alarm.get("ExtendedStatistic") or alarm.get("Statistic", "Average")
        value = values.statistic(statistic)
        threshold = float(alarm["Threshold"])
        breaching = _COMPARE[alarm["ComparisonOperator"]](value, threshold)
        verdict = "crossed" if breaching else "within"
        points = f"{values.count:g} data points"
        reason = f"{statistic} {value:g} over {points}: {verdict} threshold {threshold:g} (local)"
        return ("ALARM" if breaching else "OK"), reason

    @property
    def retention_s(self) -> float:
        """How long the local CloudWatch keeps data points: 60 simulated minutes (2 min at 2 s a minute),
        longer than any alarm window or canary step of the example configs."""
        return max(60.0, 60 * self.minute_s)

    def start(self, every_s: float = 2.0) -> None:
        def loop() -> None:
            while not self._stop.wait(every_s):
                started = datetime.now(UTC)
                try:
                    cutoff = datetime.now(UTC) - timedelta(seconds=self.retention_s)
                    moto_adapter.prune_metrics(self.region, cutoff)
                    alarms = self.cloudwatch.describe_alarms().get("MetricAlarms", [])
                    self._queue_metrics(alarms)
                    names = [a["AlarmName"] for a in alarms]
                    for start in range(0, len(names), 100):
                        self.evaluate(names[start : start + 100])
                    self._previous_round = started
                except Exception as exc:  # noqa: BLE001 - the loop outlives a failed round
                    log.warning("alarm evaluation failed: %s", exc)

        self._thread = threading.Thread(target=loop, daemon=True, name="mdk-alarms")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    _QUEUE_METRICS: ClassVar[dict[str, str]] = {
        "ApproximateNumberOfMessagesVisible": "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible": "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed": "ApproximateNumberOfMessagesDelayed",
    }

    def _queue_metrics(self, alarms: list[dict[str, Any]]) -> None:
        """The AWS/SQS gauges that alarms watch (a dead-letter queue's depth), read from the local queues
        at every tick as SQS reports them to CloudWatch every minute."""
        if self.sqs is None:
            return
        data: list[dict[str, Any]] = []
        for described in alarms:
            alarm = single_metric(described) or described
            attribute = self._QUEUE_METRICS.get(alarm.get("MetricName", ""))
            dims = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
            if alarm.get("Namespace") != "AWS/SQS" or attribute is None or "QueueName" not in dims:
                continue
            try:
                url = self.sqs.get_queue_url(QueueName=dims["QueueName"])["QueueUrl"]
                value = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[attribute])["Attributes"]
            except Exception as exc:  # noqa: BLE001 - a missing queue: no data, as on AWS
                log.debug("queue %s: %s", dims["QueueName"], exc)
                continue
            data.append(
                {
                    "MetricName": alarm["MetricName"],
                    "Dimensions": [{"Name": "QueueName", "Value": dims["QueueName"]}],
                    "Value": float(value.get(attribute, 0)),
                    "Unit": "Count",
                    "Timestamp": datetime.now(UTC),
                }
            )
        if data:
            self.cloudwatch.put_metric_data(Namespace="AWS/SQS", MetricData=data)


def single_metric(alarm: dict[str, Any]) -> dict[str, Any] | None:
    """The alarm's one metric as the plain alarm keys (Namespace, MetricName, Dimensions, Period,
    Statistic or ExtendedStatistic): as described for a plain alarm, or from a ``Metrics`` list holding a
    single labelled MetricStat (how cdk-monitoring-constructs writes its alarms). None for metric math."""
    if "MetricName" in alarm:
        return alarm
    queries = alarm.get("Metrics") or []
    if len(queries) != 1 or "MetricStat" not in queries[0]:
        return None
    stat = queries[0]["MetricStat"]
    metric = stat["Metric"]
    statistic = str(stat["Stat"])
    plain = {
        "Namespace": metric["Namespace"],
        "MetricName": metric["MetricName"],
        "Dimensions": metric.get("Dimensions", []),
        "Period": stat["Period"],
    }
    key = (
        "Statistic"
        if statistic in ("Sum", "Average", "Minimum", "Maximum", "SampleCount")
        else "ExtendedStatistic"
    )
    plain[key] = statistic
    return plain


@dataclass
class Deployment:
    id: str
    change: AliasChange
    group: dict[str, Any]
    steps: Steps
    status: str = "Created"
    message: str = ""
    hook_status: dict[str, str] = field(default_factory=dict)
    stop_requested: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class LocalCodeDeploy:
    def __init__(
        self, *, session: Any, region: str, runner: FunctionRunner, alarms: AlarmEvaluator, minute_s: float
    ) -> None:
        self.lambda_client = session.client("lambda", region_name=region)
        self.codedeploy = session.client("codedeploy", region_name=region)
        self.region = region
        self.runner = runner
        self.alarms = alarms
        self.minute_s = minute_s
        self.deployments: dict[str, Deployment] = {}
        self.hook_timeout_s = 120.0
        moto_adapter.HOOKS.hook_status = self._hook_reported
        moto_adapter.HOOKS.stop_deployment = self._stop_requested

    # called by the deployer
    def start(self, stack: StackDeployment, change: AliasChange) -> Deployment:
        group = stack.deployment_groups.get(change.deployment_group or "", {})
        config = group.get("DeploymentConfigName", "CodeDeployDefault.LambdaAllAtOnce")
        steps = Steps.from_config(config, stack.deployment_configs)
        hooks = [change.before_traffic_hook] if change.before_traffic_hook else []
        appspec = {
            "version": 0.0,
            "Resources": [
                {
                    change.function: {
                        "Type": "AWS::Lambda::Function",
                        "Properties": {
                            "Name": change.function,
                            "Alias": change.alias,
                            "CurrentVersion": change.from_version,
                            "TargetVersion": change.to_version,
                        },
                    }
                }
            ],
            "Hooks": [{"BeforeAllowTraffic": hook} for hook in hooks],
        }
        created = self.codedeploy.create_deployment(
            applicationName=change.application,
            deploymentGroupName=change.deployment_group,
            deploymentConfigName=config,
            revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": json.dumps(appspec)}},
            description=f"mdk local: {change.alias} {change.from_version} -> {change.to_version}",
        )
        deployment = Deployment(created["deploymentId"], change, group, steps)
        self.deployments[deployment.id] = deployment
        threading.Thread(
            target=self._run, args=(deployment, hooks), daemon=True, name=f"mdk-deploy-{deployment.id[:8]}"
        ).start()
        log.info(
            "CodeDeploy %s: %s %s -> %s (%s)",
            deployment.id,
            change.function,
            change.from_version,
            change.to_version,
            config,
        )
        return deployment

    def _hook_reported(self, deployment_id: str, execution_id: str, status: str) -> None:
        deployment = self.deployments.get(deployment_id)
        if deployment is not None:
            deployment.hook_status[execution_id] = status

    def _stop_requested(self, deployment_id: str, auto_rollback: bool) -> None:
        deployment = self.deployments.get(deployment_id)
        if deployment is not None:
            deployment.stop_requested = True

    # ---------------------------------------------------------------------------------- the run

    def _set(self, deployment: Deployment, status: str, message: str = "") -> None:
        deployment.status, deployment.message = status, message
        moto_adapter.set_deployment(deployment.id, self.region, status=status, message=message or None)

    def _route(self, change: AliasChange, percent: float) -> None:
        if percent >= 100:
            self.lambda_client.update_alias(
                FunctionName=change.function,
                Name=change.alias,
                FunctionVersion=change.to_version,
                RoutingConfig={"AdditionalVersionWeights": {}},
            )
        elif percent <= 0:
            self.lambda_client.update_alias(
                FunctionName=change.function,
                Name=change.alias,
                FunctionVersion=change.from_version,
                RoutingConfig={"AdditionalVersionWeights": {}},
            )
        else:
            self.lambda_client.update_alias(
                FunctionName=change.function,
                Name=change.alias,
                FunctionVersion=change.from_version,
                RoutingConfig={"AdditionalVersionWeights": {change.to_version: round(percent / 100, 4)}},
            )

    def _run(self, deployment: Deployment, hooks: list[str]) -> None:
        change = deployment.change
        try:
            self._set(deployment, "InProgress")
            for hook in hooks:
                if not self._run_hook(deployment, hook):
                    self._set(
                        deployment,
                        "Failed",
                        f"BeforeAllowTraffic hook {hook} reported Failed: no traffic shifted",
                    )
                    return
            alarm_names = [
                a["Name"] for a in deployment.group.get("AlarmConfiguration", {}).get("Alarms", [])
            ]
            shift_started = datetime.now(UTC)
            for percent in deployment.steps.percents:
                self._route(change, percent)
                log.info(
                    "CodeDeploy %s: %s%% of %s:%s on version %s",
                    deployment.id[:8],
                    percent,
                    change.function,
                    change.alias,
                    change.to_version,
                )
                deadline = time.monotonic() + deployment.steps.interval_minutes * self.minute_s
                while True:
                    reason = self._why_stop(deployment, alarm_names, shift_started)
                    if reason:
                        self._route(change, 0)
                        self._set(
                            deployment,
                            "Stopped" if deployment.stop_requested else "Failed",
                            f"{reason}; rolled back to version {change.from_version}",
                        )
                        log.warning("CodeDeploy %s: %s; rolled back", deployment.id[:8], reason)
                        return
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(min(0.25, self.minute_s / 4))
            reason = self._why_stop(deployment, alarm_names, shift_started)
            if reason:
                self._route(change, 0)
                self._set(deployment, "Failed", f"{reason}; rolled back to version {change.from_version}")
                return
            self._route(change, 100)
            self._set(deployment, "Succeeded", f"version {change.to_version} serves all traffic")
            log.info("CodeDeploy %s: promoted version %s", deployment.id[:8], change.to_version)
        except Exception as exc:
            log.exception("CodeDeploy %s failed", deployment.id)
            try:
                self._route(change, 0)
            finally:
                self._set(deployment, "Failed", f"local CodeDeploy error: {exc}")
        finally:
            deployment.done.set()

    def _why_stop(self, deployment: Deployment, alarms: list[str], since: datetime) -> str | None:
        if deployment.stop_requested:
            return "stopped by request (StopDeployment)"
        states = self.alarms.evaluate(alarms, since=since)
        firing = sorted(name for name, state in states.items() if state == "ALARM")
        return f"alarm {', '.join(firing)} in ALARM" if firing else None

    def _run_hook(self, deployment: Deployment, hook: str) -> bool:
        execution = str(uuid.uuid4())
        payload = json.dumps(
            {"DeploymentId": deployment.id, "LifecycleEventHookExecutionId": execution}
        ).encode()
        result = self.runner.invoke(hook, None, payload)
        if result.errored:
            log.warning("pre-traffic hook %s failed: %s", hook, result.payload[:500])
            return False
        deadline = time.monotonic() + self.hook_timeout_s
        while time.monotonic() < deadline:
            status = deployment.hook_status.get(execution)
            if status is not None:
                log.info("CodeDeploy %s: BeforeAllowTraffic %s", deployment.id[:8], status)
                return status == "Succeeded"
            time.sleep(0.05)
        return False
