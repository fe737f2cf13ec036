"""Every cdk-nag acknowledgement's reason is true of the template it was given for.

cdk-nag writes each acknowledged finding, with the construct it is about and the reason given, to the
assembly's ``validation-report.json``. Each reason of ``stacks/nag.py`` has a check here that reads
what the template really grants or wires (who may invoke a function, what a role's wildcard statements
allow, which queue is whose dead-letter queue); a reason without a check fails, so a new acknowledgement
cannot go unread.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
import pytest

from mdk.registry import model_parameter
from mdk_runtime import batch
from stacks import nag
from stacks.batch import transform_role_path
from tests.infra.conftest import Synth, resources


@dataclass(frozen=True)
class Finding:
    """One acknowledged finding: the rule, the reason, the template and the resource it is about."""

    rule: str
    reason: str
    stack: str
    template: dict[str, Any]
    logical_id: str
    app: dict[str, dict[str, Any]]  # every stack's template, by stack name (for the imports)

    @property
    def resource(self) -> dict[str, Any]:
        found: dict[str, Any] = self.template["Resources"][self.logical_id]
        return found


def findings(synth: Synth) -> list[Finding]:
    """The acknowledged findings of a synthesized app, each resolved to its resource."""
    report = json.loads((synth.outdir / "validation-report.json").read_text())
    where: dict[str, tuple[str, str]] = {}
    for stack in synth.stacks:
        for construct in stack.node.find_all():
            if cdk.CfnElement.is_cfn_element(construct):
                where[construct.node.path] = (stack.stack_name, stack.get_logical_id(construct))  # type: ignore[arg-type]
    found = []
    for plugin in report["pluginReports"]:
        assert plugin["violations"] == [], plugin["violations"]
        for violation in plugin["suppressedViolations"]:
            for violating in violation["violatingConstructs"]:
                name, logical_id = where[violating["constructPath"]]
                found.append(
                    Finding(
                        violation["ruleName"],
                        violation["reason"],
                        name,
                        synth.json[name],
                        logical_id,
                        synth.json,
                    )
                )
    return found


# -- reading the template --------------------------------------------------------------------------


def _refs(value: Any) -> set[str]:
    """Logical ids a value refers to (Ref, Fn::GetAtt), at any depth."""
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            return {value["Ref"]}
        if "Fn::GetAtt" in value:
            return {value["Fn::GetAtt"][0]}
        return set().union(*(_refs(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_refs(v) for v in value)) if value else set()
    return set()


def _function_of(template: dict[str, Any], logical_id: str) -> str:
    """The function a function, version or alias logical id stands for."""
    resource = template["Resources"].get(logical_id, {})
    if resource.get("Type") in ("AWS::Lambda::Alias", "AWS::Lambda::Version"):
        [target] = _refs(resource["Properties"]["FunctionName"])
        return _function_of(template, target)
    return logical_id


def _nag_rendered(value: Any) -> str:
    """A value as cdk-nag writes it in a rule's name: a Ref as ``<Id>``, a Fn::GetAtt as ``<Id.Attr>``, an
    import (a model stack's view of the shared stack) as the export's name, a Fn::Join joined."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return f"<{value['Ref']}>"
    if "Fn::GetAtt" in value:
        return f"<{value['Fn::GetAtt'][0]}.{value['Fn::GetAtt'][1]}>"
    if "Fn::ImportValue" in value:
        return str(value["Fn::ImportValue"])
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(_nag_rendered(p) for p in parts)
    raise AssertionError(f"no rendering of {value}")


def _exported(f: Finding, name: str) -> tuple[dict[str, Any], Any]:
    """What the import of export ``name`` stands for: the exporting stack's template and the value."""
    [found] = [
        (template, output["Value"])
        for template in f.app.values()
        for output in template.get("Outputs", {}).values()
        if output.get("Export", {}).get("Name") == name
    ]
    return found


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_statements(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    """Every statement a role holds: inline policies and the AWS::IAM::Policy resources attached to it."""
    role = template["Resources"][role_id]["Properties"]
    statements = [s for p in role.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"].get("Roles", []):
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def roles_of(finding: Finding) -> list[str]:
    """The roles an IAM finding is about (its role, or the roles its policy is attached to)."""
    if finding.resource["Type"] == "AWS::IAM::Role":
        return [finding.logical_id]
    return [r["Ref"] for r in finding.resource["Properties"]["Roles"]]


def star_actions(template: dict[str, Any], role_id: str) -> set[str]:
    """The actions a role may take on every resource (``Resource: "*"``)."""
    return {
        action
        for s in role_statements(template, role_id)
        if "*" in _listed(s["Resource"])
        for action in _listed(s["Action"])
    }


def _imports(value: Any) -> set[str]:
    """Export names a value imports (Fn::ImportValue), at any depth."""
    if isinstance(value, dict):
        if "Fn::ImportValue" in value:
            return {str(value["Fn::ImportValue"])}
        return set().union(*(_imports(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_imports(v) for v in value)) if value else set()
    return set()


def _refs_into(f: Finding, where: str, value: Any) -> set[str]:
    """Logical ids of the finding's stack that a value in stack ``where`` refers to: by Ref or Fn::GetAtt
    in the same stack, or from another stack by importing an export the finding's stack makes."""
    found = _refs(value) if where == f.stack else set()
    outputs = f.template.get("Outputs", {}).values()
    exported = {o["Export"]["Name"]: o["Value"] for o in outputs if "Export" in o}
    for name in _imports(value) & exported.keys():
        found |= _refs(exported[name])
    return found


def invokers(f: Finding, function_id: str) -> dict[str, set[str]]:
    """Who may invoke a function of the finding's stack (any qualifier), in any stack of the app:
    resource-policy principals, IAM roles, rule targets."""
    found: dict[str, set[str]] = {"principals": set(), "roles": set(), "rules": set()}

    def this_function(where: str, value: Any) -> bool:
        return any(_function_of(f.template, r) == function_id for r in _refs_into(f, where, value))

    for where, template in f.app.items():
        for permission in resources(template, "AWS::Lambda::Permission").values():
            props = permission["Properties"]
            if this_function(where, props["FunctionName"]):
                found["principals"].add(props["Principal"])
        for role_id in resources(template, "AWS::IAM::Role"):
            for s in role_statements(template, role_id):
                if any(a in ("lambda:InvokeFunction", "lambda:*") for a in _listed(s["Action"])) and (
                    this_function(where, s["Resource"])
                ):
                    found["roles"].add(role_id)
        for rule_id, rule in resources(template, "AWS::Events::Rule").items():
            if any(this_function(where, t["Arn"]) for t in rule["Properties"].get("Targets", [])):
                found["rules"].add(rule_id)
    return found


def _assumed_by(template: dict[str, Any], role_id: str) -> str:
    [statement] = template["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    principal: str = statement["Principal"]["Service"]
    return principal


def _own_role(template: dict[str, Any], function_id: str) -> str:
    [role] = _refs(template["Resources"][function_id]["Properties"]["Role"])
    return role


def _statements_on(finding: Finding, fragment: str) -> list[dict[str, Any]]:
    """The statements of the finding's policy whose resources mention ``fragment`` (a prefix, a name)."""
    policy = finding.resource["Properties"]["PolicyDocument"]["Statement"]
    chosen = [s for s in policy if fragment in json.dumps(s["Resource"])]
    assert chosen, (finding.logical_id, fragment)
    return chosen


def _actions(statements: list[dict[str, Any]]) -> set[str]:
    return {a for s in statements for a in _listed(s["Action"])}


# -- the checks, one per reason ----------------------------------------------------------------------


def _xray_only(f: Finding) -> None:
    for role in roles_of(f):
        assert star_actions(f.template, role) == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}, role


def _api_gateway_only(f: Finding) -> None:
    who = invokers(f, f.logical_id)
    assert who == {"principals": {"apigateway.amazonaws.com"}, "roles": set(), "rules": set()}, who


def _model_function_invokers(f: Finding) -> None:
    who = invokers(f, f.logical_id)
    assert who["principals"] == {"apigateway.amazonaws.com"}
    assert who["rules"] == set()
    hooks = {r for r in who["roles"] if "PreTrafficHook" in r}
    assert len(hooks) == 1, who  # the pre-traffic hook, on the new version
    assert who["roles"] - hooks == {_own_role(f.template, f.logical_id)}, who  # the shadow mirror
    assert not resources(f.template, "AWS::Lambda::EventInvokeConfig").keys() & {f.logical_id}


def _codedeploy_only(f: Finding) -> None:
    who = invokers(f, f.logical_id)
    assert who["principals"] == set()
    assert who["rules"] == set()
    assert who["roles"], who
    assert all(_assumed_by(f.template, r) == "codedeploy.amazonaws.com" for r in who["roles"]), who


def _eventbridge_with_failure_destination(f: Finding) -> None:
    who = invokers(f, f.logical_id)
    assert who["principals"] == {"events.amazonaws.com"}, who
    assert who["rules"], who
    configs = [
        c["Properties"]
        for c in resources(f.template, "AWS::Lambda::EventInvokeConfig").values()
        if f.logical_id in _refs(c["Properties"]["FunctionName"])
    ]
    [config] = configs
    assert config["MaximumRetryAttempts"] == 2
    assert config["Qualifier"] == "$LATEST"  # the rules invoke the unqualified function
    [queue] = _refs(config["DestinationConfig"]["OnFailure"]["Destination"])
    assert f.template["Resources"][queue]["Type"] == "AWS::SQS::Queue"


def _codedeploy_role(f: Finding) -> None:
    [role] = roles_of(f)
    assert _assumed_by(f.template, role) == "codedeploy.amazonaws.com"
    assert "ManagedPolicyArns" not in f.template["Resources"][role]["Properties"]
    statements = role_statements(f.template, role)
    assert star_actions(f.template, role) == {"cloudwatch:DescribeAlarms"}
    alias = [s for s in statements if "lambda:UpdateAlias" in _listed(s["Action"])]
    assert len({_function_of(f.template, r) for s in alias for r in _refs(s["Resource"])}) == 1
    hook = [s for s in statements if "lambda:InvokeFunction" in _listed(s["Action"])]
    [hook_id] = {r for s in hook for r in _refs(s["Resource"])}
    assert "MDK_TARGET_VERSION_ARN" in json.dumps(f.template["Resources"][hook_id]["Properties"])
    granted = _actions(statements)
    assert granted == {
        "cloudwatch:DescribeAlarms",
        "lambda:GetAlias",
        "lambda:UpdateAlias",
        "lambda:GetProvisionedConcurrencyConfig",
        "lambda:InvokeFunction",
    }, granted


def _apigateway_logging_role(f: Finding) -> None:
    props = f.resource["Properties"]
    assert _assumed_by(f.template, f.logical_id) == "apigateway.amazonaws.com"
    assert "AmazonAPIGatewayPushToCloudWatchLogs" in json.dumps(props["ManagedPolicyArns"])
    assert len(props["ManagedPolicyArns"]) == 1
    assert "Policies" not in props
    [account] = resources(f.template, "AWS::ApiGateway::Account").values()
    assert _refs(account["Properties"]["CloudWatchRoleArn"]) == {f.logical_id}


def _iam_or_api_keys(f: Finding) -> None:
    method = f.resource["Properties"]
    assert method["AuthorizationType"] in ("AWS_IAM", "NONE"), method["AuthorizationType"]
    if method["AuthorizationType"] == "NONE":
        assert method["ApiKeyRequired"] is True


def _api_keys(f: Finding) -> None:
    assert f.resource["Properties"]["ApiKeyRequired"] is True
    # The consumers' keys and usage plans are the access stack's: it finds this API by its export.
    api = f.resource["Properties"]["RestApiId"]
    assert any(
        o["Value"] == api and o["Export"]["Name"].endswith("-api-id") for o in f.template["Outputs"].values()
    )


def _model_invoke_routes(f: Finding) -> None:
    props = f.resource["Properties"]
    [statement] = props["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Action"]) == ("Allow", "execute-api:Invoke")
    parts = statement["Resource"]["Fn::Join"][1]
    [api] = _refs(parts) - {"AWS::Partition", "AWS::Region", "AWS::AccountId"}
    assert f.template["Resources"][api]["Type"] == "AWS::ApiGateway::RestApi"  # this stack's own API
    model = props["ManagedPolicyName"].rsplit("-invoke-", 1)[1]
    [stage] = resources(f.template, "AWS::ApiGateway::Stage").values()
    assert parts[-1] == f"/{stage['Properties']['StageName']}/*/models/{model}/*"


def _no_web_acl(f: Finding) -> None:
    assert not resources(f.template, "AWS::WAFv2::WebACLAssociation")
    assert f.resource["Type"] == "AWS::ApiGateway::Stage"


def _subscription_dlq(f: Finding) -> None:
    policies = [
        s["Properties"].get("RedrivePolicy") for s in resources(f.template, "AWS::SNS::Subscription").values()
    ]
    assert any(p and _refs(p["deadLetterTargetArn"]) == {f.logical_id} for p in policies)


def _batch_dlq(f: Finding) -> None:
    destinations = [
        c["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]
        for c in resources(f.template, "AWS::Lambda::EventInvokeConfig").values()
    ]
    targets = [
        t.get("DeadLetterConfig", {}).get("Arn")
        for r in resources(f.template, "AWS::Events::Rule").values()
        for t in r["Properties"].get("Targets", [])
    ]
    assert any(f.logical_id in _refs(d) for d in destinations)
    assert any(f.logical_id in _refs(t) for t in targets if t)
    alarms = [
        a["Properties"]
        for a in resources(f.template, "AWS::CloudWatch::Alarm").values()
        if f.logical_id
        in _refs(a["Properties"].get("Dimensions", [])) | _refs(a["Properties"].get("Metrics", []))
    ]
    # It alarms to the alarm topic while it holds any message.
    assert any(
        a["Threshold"] == 0 and a["ComparisonOperator"] == "GreaterThanThreshold" and a["AlarmActions"]
        for a in alarms
    ), alarms


def _access_log_bucket(f: Finding) -> None:
    logging = [
        b["Properties"]["LoggingConfiguration"]
        for b in resources(f.template, "AWS::S3::Bucket").values()
        if "LoggingConfiguration" in b["Properties"]
    ]
    assert logging
    assert all(_refs(c["DestinationBucketName"]) == {f.logical_id} for c in logging)


def _sagemaker_role_wildcards(f: Finding) -> None:
    for role in roles_of(f):
        actions = star_actions(f.template, role)
        assert actions - {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"} <= {
            "ec2:CreateNetworkInterface",
            "ec2:CreateNetworkInterfacePermission",
            "ec2:DeleteNetworkInterface",
            "ec2:DeleteNetworkInterfacePermission",
            "ec2:DescribeNetworkInterfaces",
            "ec2:DescribeVpcs",
            "ec2:DescribeDhcpOptions",
            "ec2:DescribeSubnets",
            "ec2:DescribeSecurityGroups",
        }, actions
        for s in role_statements(f.template, role):
            if "cloudwatch:PutMetricData" in _listed(s["Action"]):
                assert s["Condition"]["StringLike"]["cloudwatch:namespace"] == [
                    "/aws/sagemaker/*",
                    "AWS/SageMaker",
                ]


def _capture_prefix(f: Finding) -> None:
    [statement] = _statements_on(f, "/capture/")
    assert _actions([statement]) == {"s3:PutObject"}
    assert f.rule == f"AwsSolutions-IAM5[Resource::{_nag_rendered(statement['Resource'])}]"  # this grant
    # the bucket: the shared stack's data capture bucket, by the export the model stack imports
    separator, parts = statement["Resource"]["Fn::Join"]
    [imported] = [p for p in parts if isinstance(p, dict) and "Fn::ImportValue" in p]
    shared, value = _exported(f, imported["Fn::ImportValue"])
    assert shared["Resources"][value["Ref"]]["Type"] == "AWS::S3::Bucket"
    assert value["Ref"].startswith("StorageDataCapture")
    # the prefix: where this stack's endpoint (or function) writes its captures, every version's
    granted = separator.join(_nag_rendered(p) for p in parts[parts.index(imported) :])
    assert granted.endswith("/*")
    configs = resources(f.template, "AWS::SageMaker::EndpointConfig").values()
    if configs:
        [config] = configs
        destination = _nag_rendered(config["Properties"]["DataCaptureConfig"]["DestinationS3Uri"])
    else:  # a Lambda model: its function's MDK_CAPTURE_PREFIX in the same bucket
        [function] = [
            r
            for r in resources(f.template, "AWS::Lambda::Function").values()
            if "MDK_CAPTURE_PREFIX" in r["Properties"].get("Environment", {}).get("Variables", {})
        ]
        variables = function["Properties"]["Environment"]["Variables"]
        destination = f"{_nag_rendered(variables['MDK_CAPTURE_BUCKET'])}/{variables['MDK_CAPTURE_PREFIX']}"
    assert (destination.removeprefix("s3://") + "/").startswith(granted.removesuffix("*"))


def _endpoint_log_streams(f: Finding) -> None:
    [statement] = _statements_on(f, "/aws/sagemaker/Endpoints/")
    rendered = json.dumps(statement["Resource"])
    assert rendered.count("log-group:/aws/sagemaker/Endpoints/") == 2  # the group and its streams
    assert "TransformJobs" not in rendered


def _deployment(f: Finding) -> str:
    """``<project>-<stage>``: the name of the app's shared stack, less ``-shared``."""
    [shared] = [name for name in f.app if name.endswith("-shared")]
    return shared.removesuffix("-shared")


def _job_prefix(f: Finding) -> str:
    # the batch pipeline's grants (the shared stack) and the models' transform roles (their stacks)
    assert f.stack.endswith("-shared") or "-model-" in f.stack, f.stack
    return batch.job_prefix(_deployment(f))


def _transform_log_streams(f: Finding) -> None:
    [statement] = _statements_on(f, "/aws/sagemaker/TransformJobs")
    streams = [r for r in _listed(statement["Resource"]) if "log-stream" in json.dumps(r)]
    assert len(streams) == 1
    assert json.dumps(streams[0]).endswith(f':log-stream:{_job_prefix(f)}*"]]}}'), streams


def _this_deployments_jobs(f: Finding) -> None:
    prefix = _job_prefix(f)
    for s in _statements_on(f, "transform-job/"):
        for r in _listed(s["Resource"]):
            assert json.dumps(r).endswith(f':transform-job/{prefix}*"]]}}'), r
    [rule] = [
        r["Properties"]
        for r in resources(f.template, "AWS::Events::Rule").values()
        if "TransformJobName" in json.dumps(r["Properties"].get("EventPattern", {}))
    ]
    assert rule["EventPattern"]["detail"]["TransformJobName"] == [{"prefix": prefix}]


def _read_only(fragment: str) -> Callable[[Finding], None]:
    def check(f: Finding) -> None:
        assert _actions(_statements_on(f, fragment)) <= {"s3:GetObject", "s3:GetObjectVersion"}

    return check


def _no_delete(fragment: str, allowed: set[str]) -> Callable[[Finding], None]:
    def check(f: Finding) -> None:
        actions = _actions(_statements_on(f, fragment))
        assert actions <= allowed, actions

    return check


def _transform_prefixes(f: Finding) -> None:
    assert _actions(_statements_on(f, "/staging/")) == {"s3:GetObject"}
    assert _actions(_statements_on(f, "/results/")) == {"s3:PutObject", "s3:AbortMultipartUpload"}


def _transform_roles(f: Finding) -> None:
    project, stage = _deployment(f).rsplit("-", 1)
    path = transform_role_path(project, stage)
    [statement] = [s for s in _statements_on(f, ":role/") if "iam:PassRole" in _listed(s["Action"])]
    assert _actions([statement]) == {"iam:PassRole"}
    assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    assert _nag_rendered(statement["Resource"]).endswith(f":iam::<AWS::AccountId>:role{path}*")
    # the roles under that path: each a model's transform role (assumed by SageMaker), in its own stack
    under = [
        (stack, logical_id, role["Properties"])
        for stack, template in f.app.items()
        for logical_id, role in resources(template, "AWS::IAM::Role").items()
        if str(role["Properties"].get("Path", "")).startswith(path)
    ]
    assert under
    for stack, logical_id, role in under:
        model = stack.split("-model-", 1)[1]
        assert role["Path"] == path
        assert logical_id.startswith(f"BatchModel{model.replace('-', '')}ExecutionRole"), (stack, logical_id)
        assert _assumed_by(f.app[stack], logical_id) == "sagemaker.amazonaws.com"


def _registry_entries(f: Finding) -> None:
    project, stage = _deployment(f).rsplit("-", 1)
    entries = model_parameter(project, stage, "")
    [statement] = _statements_on(f, ":parameter/")
    assert _actions([statement]) == {"ssm:GetParameter"}
    assert _nag_rendered(statement["Resource"]).endswith(f":parameter{entries}*")
    # under that path: the models' entries, each written by its model's stack
    names = {
        (stack, p["Properties"]["Name"])
        for stack, template in f.app.items()
        for p in resources(template, "AWS::SSM::Parameter").values()
        if str(p["Properties"].get("Name", "")).startswith(entries)
    }
    assert names
    assert all(name == entries + stack.split("-model-", 1)[1] for stack, name in names), names


def _shadow_mirror(f: Finding) -> None:
    props = f.resource["Properties"]
    [statement] = props["PolicyDocument"]["Statement"]
    assert _listed(statement["Action"]) == ["lambda:InvokeFunction"]
    [function_id] = _refs(statement["Resource"])
    assert json.dumps(statement["Resource"]).endswith(':*"]]}')
    assert [r["Ref"] for r in props["Roles"]] == [_own_role(f.template, function_id)]  # itself, no other


CHECKS: dict[str, Callable[[Finding], None]] = {
    nag.XRAY_WILDCARD.reason: _xray_only,
    nag.SYNC_ONLY_DLQ.reason: _api_gateway_only,
    nag.MODEL_FUNCTION_DLQ.reason: _model_function_invokers,
    nag.HOOK_DLQ.reason: _codedeploy_only,
    nag.ASYNC_FAILURE_DESTINATION.reason: _eventbridge_with_failure_destination,
    nag.CODEDEPLOY_ALIAS.reason: _codedeploy_role,
    nag.CODEDEPLOY_ALARMS.reason: _codedeploy_role,
    nag.CODEDEPLOY_HOOK_QUALIFIERS.reason: _codedeploy_role,
    nag.APIGW_LOGGING_ROLE.reason: _apigateway_logging_role,
    nag.NOT_COGNITO.reason: _iam_or_api_keys,
    nag.API_KEY_AUTH.reason: _api_keys,
    nag.NO_WAF.reason: _no_web_acl,
    nag.SNS_DLQ[0].reason: _subscription_dlq,
    nag.BATCH_DLQ[0].reason: _batch_dlq,
    nag.ACCESS_LOG_BUCKET.reason: _access_log_bucket,
    nag.SAGEMAKER_ROLE_WILDCARDS.reason: _sagemaker_role_wildcards,
    nag.CAPTURE_PREFIX_REASON: _capture_prefix,
    nag.SAGEMAKER_LOG_STREAMS_REASON: _endpoint_log_streams,
    nag.TRANSFORM_LOG_STREAMS_REASON: _transform_log_streams,
    nag.BATCH_JOBS_REASON: _this_deployments_jobs,
    nag.BATCH_INCOMING_REASON: _read_only("/incoming/"),
    nag.BATCH_STAGING_REASON: _no_delete("/staging/", {"s3:PutObject", "s3:AbortMultipartUpload"}),
    nag.BATCH_RESULTS_REASON: _no_delete(
        "/results/", {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"}
    ),
    nag.TRANSFORM_PREFIXES_REASON: _transform_prefixes,
    nag.SHADOW_MIRROR_REASON: _shadow_mirror,
    nag.TRANSFORM_ROLES_REASON: _transform_roles,
    nag.BATCH_REGISTRY_REASON: _registry_entries,
    nag.MODEL_INVOKE_ROUTES_REASON: _model_invoke_routes,
}


@pytest.mark.parametrize("which", ["synth_repo_config", "synth_variant", "synth_sagemaker"])
def test_every_acknowledgement_is_true_of_what_the_template_grants(
    which: str, request: pytest.FixtureRequest
) -> None:
    synth: Synth = request.getfixturevalue(which)
    checked = 0
    for finding in findings(synth):
        check = CHECKS.get(finding.reason)
        assert check is not None, f"no check for the reason given to {finding.rule}: {finding.reason}"
        try:
            check(finding)
        except AssertionError as exc:
            raise AssertionError(f"{finding.rule} on {finding.logical_id}: untrue: {finding.reason}") from exc
        checked += 1
    assert checked > 10
