"""A synthesized CloudFormation template, made deployable onto moto's CloudFormation.

moto creates resources in template order, skips several types the kit uses and mishandles a few
properties; :func:`prepare` returns a template it deploys faithfully plus the resources the deployer
creates itself through the service APIs afterwards (:data:`DEFERRED`):

* resources are ordered by their dependencies (Ref, Fn::GetAtt, Fn::Sub, DependsOn);
* functions get the physical names AWS would give them (``<stack>-<logical id>``), so references to
  deferred resources (an alias ARN in an API integration, an alarm name in a guardrail) can be written as
  literals before anything exists;
* property shapes moto reads differently (KMS key tags, SSM parameter tags as a map) are rewritten.
"""

from __future__ import annotations

import copy
import graphlib
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mdk.local.cloud.moto_adapter import ACCOUNT

#: Created by the deployer through the service APIs: moto's CloudFormation skips or mishandles them.
DEFERRED = frozenset(
    {
        "AWS::Lambda::Alias",
        "AWS::Lambda::Permission",
        "AWS::Lambda::EventInvokeConfig",
        "AWS::CloudWatch::Alarm",
        "AWS::CodeDeploy::Application",
        "AWS::CodeDeploy::DeploymentGroup",
        "AWS::CodeDeploy::DeploymentConfig",
        "AWS::ApiGateway::Stage",
        "AWS::ApiGateway::Account",
        "AWS::ApiGateway::GatewayResponse",
        "AWS::ApiGateway::Model",
        "AWS::ApiGateway::RequestValidator",
        "AWS::ApiGateway::Authorizer",
        "AWS::ApiGateway::ApiKey",
        "AWS::ApiGateway::UsagePlan",
        "AWS::ApiGateway::UsagePlanKey",
        "AWS::Cognito::UserPoolResourceServer",
        "AWS::Cognito::UserPoolClient",
        "AWS::ApplicationAutoScaling::ScalableTarget",
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        "AWS::S3::BucketPolicy",
        "AWS::SNS::TopicPolicy",
        "AWS::SQS::QueuePolicy",
        "AWS::Scheduler::Schedule",
        "AWS::CDK::Metadata",
    }
)
_SUB_NAME = re.compile(r"\$\{([A-Za-z0-9]+)(\.[A-Za-z0-9.]+)?\}")


@dataclass
class Prepared:
    template: dict[str, Any]  # what moto's CloudFormation gets
    deferred: dict[str, dict[str, Any]]  # logical id -> resource (references already substituted), in order
    names: dict[str, str] = field(default_factory=dict)  # logical id -> physical name chosen here
    order: list[str] = field(default_factory=list)  # every resource, dependencies first


def physical_name(stack: str, logical_id: str, limit: int = 64) -> str:
    name = f"{stack}-{logical_id}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9]}-{digest}"


def references(node: Any, known: dict[str, Any]) -> Iterator[str]:
    """Logical ids ``node`` refers to."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str) and value in known:
                yield value
            elif key == "Fn::GetAtt":
                name = value[0] if isinstance(value, list) else str(value).split(".")[0]
                if name in known:
                    yield name
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                yield from (m.group(1) for m in _SUB_NAME.finditer(text) if m.group(1) in known)
                if not isinstance(value, str):
                    yield from references(value[1], known)
            else:
                yield from references(value, known)
    elif isinstance(node, list):
        for item in node:
            yield from references(item, known)


def dependency_order(resources: dict[str, Any]) -> list[str]:
    graph: dict[str, set[str]] = {}
    for logical_id, resource in resources.items():
        depends = resource.get("DependsOn", [])
        depends = [depends] if isinstance(depends, str) else list(depends)
        graph[logical_id] = set(references(resource.get("Properties", {}), resources)) | set(depends)
    return list(graphlib.TopologicalSorter(graph).static_order())


def prepare(template: dict[str, Any], stack: str, region: str) -> Prepared:
    template = copy.deepcopy(template)
    resources: dict[str, Any] = template["Resources"]
    order = dependency_order(resources)
    names: dict[str, str] = {}
    literals: dict[tuple[str, str | None], str] = {}  # (logical id, attribute or None for Ref) -> value
    for logical_id in order:
        resource = resources[logical_id]
        kind, props = resource["Type"], resource.setdefault("Properties", {})
        if kind == "AWS::Lambda::Function":
            names[logical_id] = props.setdefault("FunctionName", physical_name(stack, logical_id))
        elif kind == "AWS::KMS::Key":
            props.pop("Tags", None)  # moto reads TagKey/TagValue
        elif kind == "AWS::SSM::Parameter" and isinstance(props.get("Tags"), dict):
            props["Tags"] = [{"Key": k, "Value": v} for k, v in props["Tags"].items()]
        if kind not in DEFERRED:
            continue
        _deferred_literals(logical_id, kind, props, names, literals, stack=stack, region=region)
        names[logical_id] = literals[(logical_id, None)]
    substituted = _substitute(resources, literals)
    kept = {k: substituted[k] for k in order if substituted[k]["Type"] not in DEFERRED}
    deferred = {k: substituted[k] for k in order if substituted[k]["Type"] in DEFERRED}
    for resource in kept.values():  # moto's change set path ignores DependsOn; dropping stale ones is safe
        if "DependsOn" in resource:
            depends = resource["DependsOn"]
            depends = [depends] if isinstance(depends, str) else depends
            resource["DependsOn"] = [d for d in depends if d in kept]
            if not resource["DependsOn"]:
                del resource["DependsOn"]
    template["Resources"] = kept
    template.pop("Rules", None)  # the bootstrap version rule: there is no bootstrap stack locally
    template.get("Parameters", {}).pop("BootstrapVersion", None)
    outputs = template.get("Outputs", {})
    template["Outputs"] = _substitute(outputs, literals)
    return Prepared(template=template, deferred=deferred, names=names, order=order)


_NAME_PROPERTY = {
    "AWS::CodeDeploy::Application": ("ApplicationName", 100),
    "AWS::CodeDeploy::DeploymentGroup": ("DeploymentGroupName", 100),
    "AWS::CodeDeploy::DeploymentConfig": ("DeploymentConfigName", 100),
}


def _deferred_literals(
    logical_id: str,
    kind: str,
    props: dict[str, Any],
    names: dict[str, str],
    literals: dict[tuple[str, str | None], str],
    *,
    stack: str,
    region: str,
) -> None:
    """What Ref and Fn::GetAtt of a deferred resource return, chosen now (names set where AWS names)."""
    if kind == "AWS::Lambda::Alias":
        function = props["FunctionName"]
        function_name = names[function["Ref"]] if isinstance(function, dict) else str(function)
        arn = f"arn:aws:lambda:{region}:{ACCOUNT}:function:{function_name}:{props['Name']}"
        literals[(logical_id, None)] = literals[(logical_id, "AliasArn")] = arn
    elif kind == "AWS::CloudWatch::Alarm":
        name = props.setdefault("AlarmName", physical_name(stack, logical_id, 255))
        literals[(logical_id, None)] = name
        literals[(logical_id, "Arn")] = f"arn:aws:cloudwatch:{region}:{ACCOUNT}:alarm:{name}"
    elif kind in _NAME_PROPERTY:
        key, limit = _NAME_PROPERTY[kind]
        literals[(logical_id, None)] = props.setdefault(key, physical_name(stack, logical_id, limit))
    elif kind == "AWS::ApiGateway::Stage":
        literals[(logical_id, None)] = str(props["StageName"])
    else:
        literals[(logical_id, None)] = physical_name(stack, logical_id, 255)


def _substitute(node: Any, literals: dict[tuple[str, str | None], str]) -> Any:
    if isinstance(node, dict):
        if set(node) == {"Ref"} and (node["Ref"], None) in literals:
            return literals[(node["Ref"], None)]
        if set(node) == {"Fn::GetAtt"}:
            value = node["Fn::GetAtt"]
            name, attribute = (value[0], value[1]) if isinstance(value, list) else str(value).split(".", 1)
            if (name, attribute) in literals:
                return literals[(name, attribute)]
        return {key: _substitute(value, literals) for key, value in node.items()}
    if isinstance(node, list):
        return [_substitute(item, literals) for item in node]
    return node
