"""The local CodeDeploy: alias traffic shifting on a shortened clock, and the stacks' applications and groups.

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

The alarms are evaluated by the local CloudWatch
(:class:`~mdk.local.cloud.services.cloudwatch.AlarmEvaluator`).
At deploy time this module creates the ``AWS::CodeDeploy::Application`` and ``DeploymentGroup`` resources
moto's CloudFormation skips, and reads which group shifts which alias (:func:`alias_groups`) and the
groups' and custom configs' settings (:func:`record_settings`).
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
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from mdk.local.cloud import moto_adapter
from mdk.local.cloud.registry import AliasChange, Completion, StackDeployment, completes
from mdk.local.cloud.services.cloudwatch import AlarmEvaluator
from mdk.local.cloud.services.lambda_ import FunctionRunner

log = logging.getLogger("mdk.local")
_PREDEFINED = re.compile(
    r"CodeDeployDefault\.Lambda(?P<kind>Canary|Linear)(?P<percent>\d+)Percent(?:Every)?(?P<minutes>\d+)Minutes?"
)


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


# ------------------------------------------------------------------ at deploy: the stacks' resources


def record_settings(ctx: Completion) -> None:
    """Keep the deployment groups' and custom deployment configs' resolved properties in the result: what
    :class:`LocalCodeDeploy` shifts by (moto has no custom deployment configs)."""
    for resource in ctx.prepared.deferred.values():
        if resource["Type"] == "AWS::CodeDeploy::DeploymentGroup":
            props = ctx.resolve(resource["Properties"])
            ctx.result.deployment_groups[props["DeploymentGroupName"]] = props
        if resource["Type"] == "AWS::CodeDeploy::DeploymentConfig":
            props = ctx.resolve(resource["Properties"])
            ctx.result.deployment_configs[props["DeploymentConfigName"]] = props


def alias_groups(ctx: Completion) -> dict[str, tuple[str, str, str | None]]:
    """Alias logical id -> (application, deployment group, pre-traffic hook) of the aliases whose
    ``UpdatePolicy`` hands their changes to CodeDeploy."""
    groups: dict[str, tuple[str, str, str | None]] = {}
    for logical, resource in ctx.prepared.deferred.items():
        policy = resource.get("UpdatePolicy", {}).get("CodeDeployLambdaAliasUpdate")
        if resource["Type"] == "AWS::Lambda::Alias" and policy:
            app = ctx.resolve(policy["ApplicationName"])
            group = ctx.resolve(policy["DeploymentGroupName"])
            hook = policy.get("BeforeAllowTrafficHook")
            hook_name = str(ctx.resolve(hook)) if hook else None
            groups[logical] = (str(app), str(group), hook_name)
    return groups


@completes("AWS::CodeDeploy::Application")
def application(ctx: Completion, logical: str, props: dict[str, Any]) -> None:
    try:
        ctx.client("codedeploy").create_application(
            applicationName=props["ApplicationName"], computePlatform=props.get("ComputePlatform", "Lambda")
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ApplicationAlreadyExistsException":
            raise


@completes("AWS::CodeDeploy::DeploymentGroup")
def deployment_group(ctx: Completion, logical: str, props: dict[str, Any]) -> None:
    kwargs: dict[str, Any] = {
        "applicationName": props["ApplicationName"],
        "deploymentGroupName": props["DeploymentGroupName"],
        "serviceRoleArn": props["ServiceRoleArn"],
        "deploymentConfigName": props.get("DeploymentConfigName", "CodeDeployDefault.LambdaAllAtOnce"),
    }
    if "AlarmConfiguration" in props:
        kwargs["alarmConfiguration"] = _lower_keys(props["AlarmConfiguration"])
    if "AutoRollbackConfiguration" in props:
        kwargs["autoRollbackConfiguration"] = _lower_keys(props["AutoRollbackConfiguration"])
    if "DeploymentStyle" in props:
        kwargs["deploymentStyle"] = _lower_keys(props["DeploymentStyle"])
    try:
        ctx.client("codedeploy").create_deployment_group(**kwargs)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "DeploymentGroupAlreadyExistsException":
            raise


def _lower_keys(node: Any) -> Any:
    if isinstance(node, dict):
        return {k[:1].lower() + k[1:]: _lower_keys(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_lower_keys(v) for v in node]
    return node
