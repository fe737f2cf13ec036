"""What serves a model's traffic, and moving it by hand: status, rollout, promote, rollback.

Lambda models: the ``live`` alias (a primary version and at most one weighted extra version) and the
model's CodeDeploy deployment group. SageMaker models: the endpoint's production variants and their
weights. Every change is one API call on the alias or the endpoint (never a CloudFormation update),
so a rollback takes effect in seconds; the CLI records each version it makes live in the registry's
history, which is where ``rollback`` goes back to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mdk.ops.context import Ops, OpsError
from mdk.registry import Deployed, LambdaTopology

IN_FLIGHT = ["Created", "Queued", "InProgress", "Baking", "Ready"]


@dataclass
class ModelStatus:
    model: str
    runtime: str
    version: str
    traffic: list[dict[str, Any]]  # per version or variant: name, weight, and details
    deployment: dict[str, Any] | None = None  # an in-flight CodeDeploy deployment / endpoint update
    alarms: dict[str, str] = field(default_factory=dict)
    shadow: dict[str, Any] | None = None
    endpoint_status: str | None = None

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


# -- Lambda ---------------------------------------------------------------------------------------------


def _lambda(deployed: Deployed) -> LambdaTopology:
    assert deployed.lambda_ is not None
    return deployed.lambda_


def _alias(ops: Ops, fn: LambdaTopology) -> tuple[str, dict[str, float]]:
    alias = ops.call("lambda", "get_alias", FunctionName=fn.function_name, Name=fn.alias)
    weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    return alias["FunctionVersion"], {str(k): float(v) for k, v in weights.items()}


def _versions(ops: Ops, fn: LambdaTopology) -> dict[str, dict[str, Any]]:
    versions: dict[str, dict[str, Any]] = {}
    paginator = ops.client("lambda").get_paginator("list_versions_by_function")
    pages = ops.attempt(
        "listing the function's versions", lambda: list(paginator.paginate(FunctionName=fn.function_name))
    )
    for page in pages:
        for v in page.get("Versions", []):
            if v["Version"] != "$LATEST":
                versions[v["Version"]] = v
    return versions


def _in_flight(ops: Ops, fn: LambdaTopology) -> dict[str, Any] | None:
    ids = ops.call(
        "codedeploy",
        "list_deployments",
        applicationName=fn.codedeploy_application,
        deploymentGroupName=fn.deployment_group,
        includeOnlyStatuses=IN_FLIGHT,
    ).get("deployments", [])
    if not ids:
        return None
    info = ops.call("codedeploy", "get_deployment", deploymentId=ids[0])["deploymentInfo"]
    current, target = _appspec_versions(info)
    return {
        "id": info["deploymentId"],
        "status": info.get("status"),
        "from_version": current,
        "to_version": target,
        "overview": info.get("deploymentOverview"),
        "config": info.get("deploymentConfigName"),
    }


def _appspec_versions(info: dict[str, Any]) -> tuple[str | None, str | None]:
    """CurrentVersion and TargetVersion of a Lambda deployment's AppSpec (what CodeDeploy shifts)."""
    revision = info.get("revision") or {}
    content = (revision.get("appSpecContent") or revision.get("string") or {}).get("content")
    try:
        spec = json.loads(content) if content else {}
    except ValueError:
        return None, None
    for resource in spec.get("Resources", []):
        for item in resource.values():
            props = item.get("Properties", {}) if isinstance(item, dict) else {}
            if "TargetVersion" in props:
                return _str(props.get("CurrentVersion")), _str(props.get("TargetVersion"))
    return None, None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _lambda_status(ops: Ops, deployed: Deployed) -> ModelStatus:
    fn = _lambda(deployed)
    primary, weights = _alias(ops, fn)
    versions = _versions(ops, fn)
    traffic: list[dict[str, Any]] = [
        {"version": primary, "weight": round(1 - sum(weights.values()), 6), "role": "primary"}
    ]
    traffic += [{"version": v, "weight": w, "role": "candidate"} for v, w in weights.items()]
    for entry in traffic:
        info = versions.get(str(entry["version"]), {})
        entry["description"] = info.get("Description", "")
        entry["last_modified"] = info.get("LastModified", "")
    shadow = None
    if deployed.shadow_parameter:
        text = ops.parameter(deployed.shadow_parameter)
        setting = json.loads(text) if text else {}
        if setting.get("candidate"):
            shadow = {"candidate": str(setting["candidate"]), "sample": setting.get("sample", 0)}
    return ModelStatus(
        model=deployed.model,
        runtime="lambda",
        version=deployed.version,
        traffic=traffic,
        deployment=_in_flight(ops, fn),
        alarms=ops.alarm_states(deployed.alarms),
        shadow=shadow,
    )


def _require_version(ops: Ops, deployed: Deployed, version: str) -> None:
    versions = _versions(ops, _lambda(deployed))
    if version not in versions:
        known = ", ".join(sorted(versions, key=_version_order)) or "none"
        raise OpsError(f"model {deployed.model} has no version {version!r} (versions: {known})")


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 30, version)


def _set_alias(ops: Ops, fn: LambdaTopology, primary: str, weights: dict[str, float]) -> None:
    ops.call(
        "lambda",
        "update_alias",
        FunctionName=fn.function_name,
        Name=fn.alias,
        FunctionVersion=primary,
        RoutingConfig={"AdditionalVersionWeights": weights},
    )


def _refuse_in_flight(ops: Ops, fn: LambdaTopology, force: bool) -> None:
    deployment = _in_flight(ops, fn)
    if deployment is not None and not force:
        raise OpsError(
            f"CodeDeploy deployment {deployment['id']} ({deployment['status']}) is shifting this alias: "
            "wait for it, `mdk rollback` it, or pass --force"
        )


def _refuse_alarms(ops: Ops, deployed: Deployed, force: bool) -> None:
    firing = [name for name, state in ops.alarm_states(deployed.alarms).items() if state == "ALARM"]
    if firing and not force:
        raise OpsError(f"alarm in ALARM: {', '.join(firing)}; promote anyway with --force")


# -- SageMaker --------------------------------------------------------------------------------------------


def _endpoint(ops: Ops, deployed: Deployed) -> dict[str, Any]:
    assert deployed.sagemaker is not None
    endpoint: dict[str, Any] = ops.call(
        "sagemaker", "describe_endpoint", EndpointName=deployed.sagemaker.endpoint_name
    )
    return endpoint


def _variant_weights(endpoint: dict[str, Any]) -> dict[str, float]:
    return {
        v["VariantName"]: float(v.get("CurrentWeight", v.get("DesiredWeight", 0.0)))
        for v in endpoint.get("ProductionVariants", [])
    }


def _sagemaker_status(ops: Ops, deployed: Deployed) -> ModelStatus:
    endpoint = _endpoint(ops, deployed)
    weights = _variant_weights(endpoint)
    total = sum(weights.values()) or 1.0
    traffic = [
        {
            "variant": v["VariantName"],
            "weight": round(weights[v["VariantName"]] / total, 6),
            "instances": v.get("CurrentInstanceCount"),
            "desired_instances": v.get("DesiredInstanceCount"),
            "role": "production",
        }
        for v in endpoint.get("ProductionVariants", [])
    ]
    traffic += [
        {
            "variant": v["VariantName"],
            "weight": v.get("CurrentWeight"),
            "instances": v.get("CurrentInstanceCount"),
            "role": "shadow",
        }
        for v in endpoint.get("ShadowProductionVariants", [])
    ]
    updating = endpoint.get("EndpointStatus") in ("Updating", "SystemUpdating")
    return ModelStatus(
        model=deployed.model,
        runtime="sagemaker",
        version=deployed.version,
        traffic=traffic,
        deployment={"status": endpoint["EndpointStatus"], "config": endpoint.get("EndpointConfigName")}
        if updating
        else None,
        alarms=ops.alarm_states(deployed.alarms),
        endpoint_status=endpoint.get("EndpointStatus"),
    )


def _set_weights(ops: Ops, deployed: Deployed, weights: dict[str, float]) -> None:
    assert deployed.sagemaker is not None
    ops.call(
        "sagemaker",
        "update_endpoint_weights_and_capacities",
        EndpointName=deployed.sagemaker.endpoint_name,
        DesiredWeightsAndCapacities=[{"VariantName": k, "DesiredWeight": v} for k, v in weights.items()],
    )


def _primary_variant(deployed: Deployed) -> str:
    assert deployed.sagemaker is not None
    return deployed.sagemaker.variants[0]


# -- the commands -------------------------------------------------------------------------------------


def status(ops: Ops, model: str) -> ModelStatus:
    deployed = ops.deployed(model)
    return _lambda_status(ops, deployed) if deployed.runtime == "lambda" else _sagemaker_status(ops, deployed)


def rollout(ops: Ops, model: str, to: str, percent: float, *, force: bool = False) -> dict[str, Any]:
    """Send ``percent`` of the traffic to version (Lambda) or variant (SageMaker) ``to``."""
    if not 0 < percent <= 100:
        raise OpsError(f"--percent: expected more than 0 and at most 100, got {percent:g}")
    deployed = ops.deployed(model)
    share = round(percent / 100, 6)
    if deployed.runtime == "sagemaker":
        endpoint = _endpoint(ops, deployed)
        weights = _variant_weights(endpoint)
        if to not in weights:
            raise OpsError(f"model {model} has no variant {to!r} (variants: {', '.join(weights)})")
        others = {k: v for k, v in weights.items() if k != to}
        rest = sum(others.values())
        new = {to: share}
        for name, weight in others.items():  # the rest keep their proportions among themselves
            new[name] = round((1 - share) * (weight / rest if rest else 1 / len(others)), 6)
        _set_weights(ops, deployed, new)
        return {"model": model, "variant": to, "weights": new}
    fn = _lambda(deployed)
    _require_version(ops, deployed, to)
    _refuse_in_flight(ops, fn, force)
    primary, _ = _alias(ops, fn)
    if to == primary:
        raise OpsError(f"version {to} already is the primary version of {model}; roll out another one")
    if share >= 1:
        _set_alias(ops, fn, to, {})
        ops.record(model, to, previous=primary, action="mdk rollout 100%")
        return {"model": model, "primary": to, "weights": {}}
    _set_alias(ops, fn, primary, {to: share})
    return {"model": model, "primary": primary, "weights": {to: share}}


def promote(ops: Ops, model: str, *, variant: str | None = None, force: bool = False) -> dict[str, Any]:
    """The candidate takes all traffic; refused while one of the model's alarms is in ALARM."""
    deployed = ops.deployed(model)
    _refuse_alarms(ops, deployed, force)
    if deployed.runtime == "sagemaker":
        weights = _variant_weights(_endpoint(ops, deployed))
        primary = _primary_variant(deployed)
        candidates = {k: v for k, v in weights.items() if k != primary and v > 0}
        chosen = variant or (max(candidates, key=candidates.__getitem__) if candidates else None)
        if chosen is None:
            raise OpsError(f"nothing to promote: variant {primary} takes all traffic of {model}")
        if chosen not in weights:
            raise OpsError(f"model {model} has no variant {chosen!r} (variants: {', '.join(weights)})")
        new = {k: (1.0 if k == chosen else 0.0) for k in weights}
        _set_weights(ops, deployed, new)
        return {"model": model, "variant": chosen, "weights": new}
    fn = _lambda(deployed)
    _refuse_in_flight(ops, fn, force)
    primary, weights = _alias(ops, fn)
    if not weights:
        raise OpsError(
            f"nothing to promote: version {primary} takes all traffic of {model} "
            f"(start with `mdk rollout {model} --to VERSION --percent 10`)"
        )
    candidate = max(weights, key=weights.__getitem__)
    _set_alias(ops, fn, candidate, {})
    ops.record(model, candidate, previous=primary, action="mdk promote")
    return {"model": model, "primary": candidate, "previous": primary}


def rollback(ops: Ops, model: str) -> dict[str, Any]:
    """Back to the last good version, now: stop a deployment in flight and move the alias (or the
    variant weights) directly; never waits for CloudFormation or CodeDeploy."""
    deployed = ops.deployed(model)
    if deployed.runtime == "sagemaker":
        return _rollback_endpoint(ops, deployed)
    fn = _lambda(deployed)
    primary, weights = _alias(ops, fn)
    result: dict[str, Any] = {"model": model, "was": {"primary": primary, "weights": weights}}
    deployment = _in_flight(ops, fn)
    if deployment is not None:
        try:
            ops.call("codedeploy", "stop_deployment", deploymentId=deployment["id"], autoRollbackEnabled=True)
            result["stopped_deployment"] = deployment["id"]
        except OpsError as exc:
            # The alias still goes back below; the operator must know CodeDeploy may shift it again.
            result["warning"] = f"could not stop CodeDeploy deployment {deployment['id']}: {exc}"
        target = deployment.get("from_version") or primary
    elif weights:
        target = primary  # a manual canary: the candidate's share goes back to the primary
    else:
        target = _previous(ops, deployed, primary)
    _set_alias(ops, fn, target, {})
    if target != primary:
        ops.record(model, target, previous=primary, action="mdk rollback")
    result["now"] = {"primary": target, "weights": {}}
    return result


def _previous(ops: Ops, deployed: Deployed, primary: str) -> str:
    """The version that served before ``primary``: the CLI's history, else CodeDeploy's last deployment."""
    history = [e["version"] for e in ops.history(deployed.model)]
    if primary in history:
        earlier = history[: len(history) - 1 - history[::-1].index(primary)]
        for version in reversed(earlier):
            if version != primary:
                return str(version)
    fn = _lambda(deployed)
    ids = ops.call(
        "codedeploy",
        "list_deployments",
        applicationName=fn.codedeploy_application,
        deploymentGroupName=fn.deployment_group,
        includeOnlyStatuses=["Succeeded"],
    ).get("deployments", [])
    for deployment_id in ids:
        info = ops.call("codedeploy", "get_deployment", deploymentId=deployment_id)["deploymentInfo"]
        current, target = _appspec_versions(info)
        if target == primary and current and current != primary:
            return current
    raise OpsError(
        f"no previous version of {deployed.model} is known (not in the CLI's history, no succeeded "
        f"CodeDeploy deployment to version {primary}); choose one: `mdk rollout {deployed.model} "
        "--to VERSION --percent 100`"
    )


def _rollback_endpoint(ops: Ops, deployed: Deployed) -> dict[str, Any]:
    endpoint = _endpoint(ops, deployed)
    weights = _variant_weights(endpoint)
    primary = _primary_variant(deployed)
    result: dict[str, Any] = {"model": deployed.model, "was": {"weights": weights}}
    if any(w > 0 for k, w in weights.items() if k != primary):
        new = {k: (1.0 if k == primary else 0.0) for k in weights}
        _set_weights(ops, deployed, new)
        result["now"] = {"weights": new}
        return result
    assert deployed.sagemaker is not None
    if endpoint.get("EndpointStatus") == "Updating" and deployed.sagemaker.rollback_alarms:
        # A guardrail deployment in flight rolls back when one of its alarms fires: fire it now.
        alarm = deployed.sagemaker.rollback_alarms[0]
        ops.call(
            "cloudwatch",
            "set_alarm_state",
            AlarmName=alarm,
            StateValue="ALARM",
            StateReason="mdk rollback: an operator rolled the deployment back",
        )
        result["now"] = {"rollback_alarm": alarm, "note": "SageMaker rolls the update back on this alarm"}
        return result
    raise OpsError(
        f"nothing to roll back: variant {primary} takes all traffic of {deployed.model} and no update "
        "is in flight"
    )
