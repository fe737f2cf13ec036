"""Template assertions for the serving stack: every feature the deployment promises, resource by resource."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match

from mdk.bundle import model_spec
from stacks.settings import DeploySettings, SettingsError
from tests.infra.conftest import REPO, Synth, dumps, one, resources, synth_config, write_config

CANARY_DEFAULT = "CodeDeployDefault.LambdaCanary10Percent5Minutes"


def fn_id(synth: Synth, model: str) -> str:
    functions = resources(synth.merged_json, "AWS::Lambda::Function")
    return next(k for k, v in functions.items() if k.startswith(f"Model{model.replace('-', '')}Function"))


# ------------------------------------------------------------------------------------------------
# Per model: function, version, alias, rollout
# ------------------------------------------------------------------------------------------------


def test_only_lambda_models_get_a_function(synth_repo_config: Synth) -> None:
    assert [s.stack_name for s in synth_repo_config.stacks] == ["mdk-dev-serving"]
    functions = resources(synth_repo_config.merged_json, "AWS::Lambda::Function")
    # iris (lambda) gets its function and its pre-traffic hook; digits runs on SageMaker; the batch
    # pipeline has its trigger and status functions (no store in this config: no predictions route)
    assert sorted(re.sub(r"[0-9A-F]{8}$", "", k) for k in functions) == [
        "BatchStatus",
        "BatchTrigger",
        "ModelirisFunction",
        "ModelirisPreTrafficHook",
    ]


def test_image_function_from_the_models_own_build_context(synth_repo_config: Synth) -> None:
    template = synth_repo_config.merged
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "PackageType": "Image",
            "Architectures": ["x86_64"],
            "MemorySize": 1024,
            "Timeout": 10,
            "TracingConfig": {"Mode": "Active"},
            "Environment": {
                "Variables": {
                    "POWERTOOLS_SERVICE_NAME": "mdk-inference",
                    "POWERTOOLS_METRICS_NAMESPACE": "mdk",
                    "POWERTOOLS_LOG_LEVEL": "INFO",
                }
            },
            "LoggingConfig": {"LogGroup": Match.any_value()},
        },
    )
    context = synth_repo_config.outdir / "build" / "mdk-dev" / "images" / "iris"
    assert (context / "Dockerfile").read_bytes() == (REPO / "lambda_handlers" / "Dockerfile").read_bytes()
    assert (context / "model" / "model.onnx").read_bytes() == (
        REPO / "models/iris/v1/model.onnx"
    ).read_bytes()
    assert not (context / "lambda_handlers" / "rollout_hooks.py").exists()  # not part of the image
    assets = (synth_repo_config.outdir / "mdk-dev-serving.assets.json").read_text()
    assert '"MODEL_DIR": "model"' in assets
    assert '"platform": "linux/amd64"' in assets


def test_alias_live_on_the_current_version_with_a_codedeploy_update_policy(synth_repo_config: Synth) -> None:
    template = synth_repo_config.merged_json
    version_id, version = one(template, "AWS::Lambda::Version")
    assert version["DeletionPolicy"] == "Retain"  # rollback needs the old versions
    _alias_id, alias = one(template, "AWS::Lambda::Alias")
    assert alias["Properties"]["Name"] == "live"
    assert alias["Properties"]["FunctionVersion"] == {"Fn::GetAtt": [version_id, "Version"]}
    update = alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
    hook_id = next(k for k in resources(template, "AWS::Lambda::Function") if "PreTrafficHook" in k)
    assert update["BeforeAllowTrafficHook"] == {"Ref": hook_id}
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    rollback_alarms = sorted(k for k in alarms if "NewVersion" in k)
    assert sorted(alias["DependsOn"]) == rollback_alarms  # the alarms watch the new version before shifting


def test_canary_rollout_with_automatic_rollback_on_failure_and_alarm(synth_repo_config: Synth) -> None:
    template = synth_repo_config.merged_json
    _, group = one(template, "AWS::CodeDeploy::DeploymentGroup")
    props = group["Properties"]
    assert props["DeploymentConfigName"] == CANARY_DEFAULT
    assert props["AutoRollbackConfiguration"] == {
        "Enabled": True,
        "Events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_REQUEST", "DEPLOYMENT_STOP_ON_ALARM"],
    }
    assert props["AlarmConfiguration"]["Enabled"] is True
    names = sorted(a["Name"]["Ref"] for a in props["AlarmConfiguration"]["Alarms"])
    assert len(names) == 3
    assert all("NewVersion" in n for n in names)


def test_rollback_alarms_watch_the_new_version_only(synth_repo_config: Synth) -> None:
    template = synth_repo_config.merged_json
    version_id, _ = one(template, "AWS::Lambda::Version")
    alarms = {
        k: v["Properties"]
        for k, v in resources(template, "AWS::CloudWatch::Alarm").items()
        if "NewVersion" in k
    }
    by_metric = {p["MetricName"]: p for p in alarms.values()}
    executed = {"Name": "ExecutedVersion", "Value": {"Fn::GetAtt": [version_id, "Version"]}}
    for metric in ("Errors", "Duration"):
        assert by_metric[metric]["Namespace"] == "AWS/Lambda"
        assert executed in by_metric[metric]["Dimensions"]
        assert {
            "Name": "Resource",
            "Value": {"Fn::Join": ["", [{"Ref": fn_id(synth_repo_config, "iris")}, ":live"]]},
        } in by_metric[metric]["Dimensions"]
    assert by_metric["Errors"]["Statistic"] == "Sum"
    assert by_metric["Errors"]["Threshold"] == 1
    assert by_metric["Duration"]["ExtendedStatistic"] == "p99"
    assert by_metric["Duration"]["Threshold"] == 1000
    version = model_spec(synth_repo_config.config.model("iris")).version
    server = by_metric["ServerErrors"]
    assert server["Namespace"] == "mdk"
    assert server["Dimensions"] == [
        {"Name": "Model", "Value": "iris"},
        {"Name": "ModelVersion", "Value": version},
        {"Name": "service", "Value": "mdk-inference"},
    ]
    topic_id, _ = one(template, "AWS::SNS::Topic")
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["Period"] == 60


def test_pre_traffic_hook_invokes_the_new_version_and_reports_to_codedeploy(synth_repo_config: Synth) -> None:
    template = synth_repo_config.merged_json
    version_id, _ = one(template, "AWS::Lambda::Version")
    _hook_id, hook = next(
        (k, v) for k, v in resources(template, "AWS::Lambda::Function").items() if "PreTrafficHook" in k
    )
    props = hook["Properties"]
    assert props["Handler"] == "lambda_handlers.rollout_hooks.pre_traffic"
    assert props["Runtime"] == "python3.14"
    assert props["Environment"]["Variables"] == {
        "MDK_TARGET_VERSION_ARN": {"Ref": version_id},
        "MDK_MODEL_NAME": "iris",
    }
    policies = dumps(resources(template, "AWS::IAM::Policy"))
    assert '"Action": "lambda:InvokeFunction"' in policies
    assert f'{{"Ref": "{version_id}"}}' in policies
    assert "codedeploy:PutLifecycleEventHookExecutionStatus" in policies
    code = synth_repo_config.outdir / "build" / "mdk-dev" / "functions" / "rollout-hooks"
    assert sorted(p.name for p in (code / "lambda_handlers").iterdir()) == ["__init__.py", "rollout_hooks.py"]


def test_function_roles_write_only_their_own_log_group(synth_repo_config: Synth) -> None:
    template = synth_repo_config.merged_json
    roles = resources(template, "AWS::IAM::Role")
    lambda_roles = {k: v for k, v in roles.items() if "lambda.amazonaws.com" in dumps(v)}
    assert len(lambda_roles) == 4  # iris, its hook, the batch trigger and status functions
    for role in lambda_roles.values():
        assert "ManagedPolicyArns" not in role["Properties"]  # no AWSLambdaBasicExecutionRole
    lambda_policies = {
        k: v
        for k, v in resources(template, "AWS::IAM::Policy").items()
        if any(r["Ref"] in lambda_roles for r in v["Properties"]["Roles"]) and "DefaultPolicy" in k
    }
    assert len(lambda_policies) == 4
    # The one other policy: iris may invoke its own versions (shadow mirroring), nothing else.
    [mirror] = [k for k in resources(template, "AWS::IAM::Policy") if k.startswith("RegistryMirroriris")]
    statement = template["Resources"][mirror]["Properties"]["PolicyDocument"]["Statement"]
    assert [s["Action"] for s in statement] == ["lambda:InvokeFunction"]
    assert dumps(statement[0]["Resource"]).startswith('{"Fn::Join": ["", [{"Fn::GetAtt": ["ModelirisFunction')
    for policy in lambda_policies.values():
        text = dumps(policy)
        assert "logs:CreateLogGroup" not in text
        assert '"Action": ["logs:CreateLogStream", "logs:PutLogEvents"]' in text


def test_custom_linear_rollout_arm64_and_concurrency(synth_variant: Synth) -> None:
    template = synth_variant.merged_json
    configs = resources(template, "AWS::CodeDeploy::DeploymentConfig")
    assert len(configs) == 1
    routing = next(iter(configs.values()))["Properties"]["TrafficRoutingConfig"]
    assert routing == {
        "Type": "TimeBasedLinear",
        "TimeBasedLinear": {"LinearInterval": 4, "LinearPercentage": 15},
    }
    groups = [g["Properties"] for g in resources(template, "AWS::CodeDeploy::DeploymentGroup").values()]
    assert sorted(
        str(g["DeploymentConfigName"]) for g in groups if isinstance(g["DeploymentConfigName"], str)
    ) == ["CodeDeployDefault.LambdaAllAtOnce"]
    fast = template["Resources"][fn_id(synth_variant, "iris-fast")]["Properties"]
    assert fast["Architectures"] == ["arm64"]
    assert fast["MemorySize"] == 3538
    assert fast["Timeout"] == 20
    assert fast["ReservedConcurrentExecutions"] == 50
    aliases = [a["Properties"] for a in resources(template, "AWS::Lambda::Alias").values()]
    assert [a.get("ProvisionedConcurrencyConfig") for a in aliases].count(
        {"ProvisionedConcurrentExecutions": 5}
    ) == 1
    alarms = [a["Properties"] for a in resources(template, "AWS::CloudWatch::Alarm").values()]
    assert any(a.get("MetricName") == "Duration" and a["Threshold"] == 250 for a in alarms)
    assert any(a.get("MetricName") == "Errors" and a.get("Threshold") == 3 for a in alarms)
    assets = (synth_variant.outdir / "acme-prod-serving.assets.json").read_text()
    assert '"platform": "linux/arm64"' in assets


# ------------------------------------------------------------------------------------------------
# The API
# ------------------------------------------------------------------------------------------------


def test_one_regional_rest_api_with_routes_per_model(synth_repo_config: Synth) -> None:
    template = synth_repo_config.merged
    template.has_resource_properties(
        "AWS::ApiGateway::RestApi",
        {"EndpointConfiguration": {"Types": ["REGIONAL"]}, "BinaryMediaTypes": ["application/x-npy"]},
    )
    parts = sorted(
        r["Properties"]["PathPart"]
        for r in resources(synth_repo_config.merged_json, "AWS::ApiGateway::Resource").values()
    )
    # iris (Lambda): predict, metadata, health; digits (SageMaker): predict
    assert parts == ["digits", "health", "iris", "metadata", "models", "predict", "predict"]
    methods = [
        m["Properties"]
        for m in resources(synth_repo_config.merged_json, "AWS::ApiGateway::Method").values()
        if m["Properties"]["Integration"]["Type"] == "AWS_PROXY"
    ]
    assert sorted(m["HttpMethod"] for m in methods) == ["GET", "GET", "POST"]
    alias_id, _ = one(synth_repo_config.merged_json, "AWS::Lambda::Alias")
    for method in methods:
        assert method["AuthorizationType"] == "AWS_IAM"
        assert method["Integration"]["Type"] == "AWS_PROXY"
        assert f'{{"Ref": "{alias_id}"}}' in dumps(
            method["Integration"]["Uri"]
        )  # the live alias, not $LATEST
    predict = next(m for m in methods if m["HttpMethod"] == "POST")
    assert "RequestValidatorId" in predict
    assert "application/json" in predict["RequestModels"]
    template.has_resource_properties("AWS::ApiGateway::RequestValidator", {"ValidateRequestBody": True})


def test_stage_throttling_access_logs_tracing_and_no_payload_logging(synth_repo_config: Synth) -> None:
    synth_repo_config.merged.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "StageName": "dev",
            "TracingEnabled": True,
            "AccessLogSetting": {
                "DestinationArn": Match.any_value(),
                "Format": Match.string_like_regexp('"requestId"'),
            },
            "MethodSettings": [
                Match.object_like(
                    {
                        "DataTraceEnabled": False,
                        "LoggingLevel": "ERROR",
                        "MetricsEnabled": True,
                        "ThrottlingRateLimit": 100,
                        "ThrottlingBurstLimit": 200,
                    }
                )
            ],
        },
    )


def test_gateway_refusals_use_the_functions_error_shape(synth_repo_config: Synth) -> None:
    responses = [
        r["Properties"]
        for r in resources(synth_repo_config.merged_json, "AWS::ApiGateway::GatewayResponse").values()
    ]
    kinds = sorted(r["ResponseType"] for r in responses)
    assert kinds == [
        "BAD_REQUEST_BODY",
        "DEFAULT_4XX",
        "DEFAULT_5XX",
        "INTEGRATION_TIMEOUT",
        "QUOTA_EXCEEDED",
        "REQUEST_TOO_LARGE",
        "THROTTLED",
    ]
    for response in responses:
        template = response["ResponseTemplates"]["application/json"]
        assert template.startswith('{"error": {"code": "')
    throttled = next(r for r in responses if r["ResponseType"] == "THROTTLED")
    assert throttled["ResponseTemplates"]["application/json"] == (
        '{"error": {"code": "throttled", "message": $context.error.messageString}}'
    )


def test_api_keys_usage_plan_and_waf_sized_for_ml_payloads(synth_variant: Synth) -> None:
    template = synth_variant.merged_json
    methods = [m["Properties"] for m in resources(template, "AWS::ApiGateway::Method").values()]
    assert len(methods) == 7  # two models, three routes each, and the stored predictions of iris-fast
    assert all(m["ApiKeyRequired"] is True and m["AuthorizationType"] == "NONE" for m in methods)
    # No consumers listed: the one default consumer's key and plan, in the access stack, reach every model
    # (tests/infra/test_access_constructs.py has consumers of their own models).
    access = synth_variant.json["acme-prod-access"]
    _, plan = one(access, "AWS::ApiGateway::UsagePlan")
    assert plan["Properties"]["Quota"] == {"Limit": 50000, "Period": "DAY"}
    assert [s["ApiId"] for s in plan["Properties"]["ApiStages"]] == [
        {"Fn::ImportValue": "acme-prod-model-iris-fast-api-id"},
        {"Fn::ImportValue": "acme-prod-model-iris-big-bang-api-id"},
    ]
    throttles = [t for s in plan["Properties"]["ApiStages"] for t in s["Throttle"].values()]
    assert len(throttles) == 7
    assert all(t == {"RateLimit": 20, "BurstLimit": 40} for t in throttles)
    one(access, "AWS::ApiGateway::ApiKey")
    one(access, "AWS::ApiGateway::UsagePlanKey")
    for model in ("iris-fast", "iris-big-bang"):
        own = synth_variant.model_json(model)
        assert not resources(own, "AWS::ApiGateway::UsagePlan")
        assert not resources(own, "AWS::ApiGateway::ApiKey")
    _, acl = one(template, "AWS::WAFv2::WebACL")
    rules = {r["Name"]: r for r in acl["Properties"]["Rules"]}
    assert rules["RateLimitPerIp"]["Statement"]["RateBasedStatement"] == {
        "Limit": 500,
        "AggregateKeyType": "IP",
    }
    common = rules["AWSManagedRulesCommonRuleSet"]["Statement"]["ManagedRuleGroupStatement"]
    # the 8 KB body limit would block real prediction requests: counted, not blocking
    assert common["RuleActionOverrides"] == [{"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}}]
    assert {"AWSManagedRulesKnownBadInputsRuleSet", "AWSManagedRulesAmazonIpReputationList"} <= set(rules)
    for model in ("iris-fast", "iris-big-bang"):  # the shared web ACL on every model's stage
        own = synth_variant.model_json(model)
        _, association = one(own, "AWS::WAFv2::WebACLAssociation")
        stage_id, _ = one(own, "AWS::ApiGateway::Stage")
        assert dumps(association["Properties"]["ResourceArn"]).endswith(
            f'"/stages/", {{"Ref": "{stage_id}"}}]]}}'
        )
    outputs = access["Outputs"]
    assert any(k.startswith("ConsumersApiKeyIdDefault") for k in outputs)


def test_cognito_authorizer(tmp_path: Path) -> None:
    arn = "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AbCdEf123"
    path = write_config(tmp_path, f"""
        api: {{auth: cognito, cognito_user_pool_arn: "{arn}"}}
        models:
          - {{name: iris, artifact: MODELS/iris/v1/model.onnx, runtime: lambda}}
    """)  # fmt: skip
    synth = synth_config(path, tmp_path / "out")
    _, authorizer = one(synth.merged_json, "AWS::ApiGateway::Authorizer")
    assert authorizer["Properties"]["Type"] == "COGNITO_USER_POOLS"
    assert authorizer["Properties"]["ProviderARNs"] == [arn]
    methods = [m["Properties"] for m in resources(synth.merged_json, "AWS::ApiGateway::Method").values()]
    assert all(m["AuthorizationType"] == "COGNITO_USER_POOLS" for m in methods)


def test_outputs_name_the_api_and_each_route(synth_repo_config: Synth) -> None:
    outputs = synth_repo_config.merged_json["Outputs"]
    assert any(k.startswith("ModelApiApiUrl") for k in outputs)
    route = next(v for k, v in outputs.items() if k.startswith("ModelApiRouteIris"))
    assert "/models/iris/predict" in dumps(route["Value"])
    assert any(k.startswith("AlarmTopicArn") for k in outputs)


# ------------------------------------------------------------------------------------------------
# Alarms and dashboards
# ------------------------------------------------------------------------------------------------


def test_alarm_topic_is_encrypted_and_tls_only(synth_repo_config: Synth, synth_variant: Synth) -> None:
    template = synth_repo_config.merged_json
    _, topic = one(template, "AWS::SNS::Topic")
    assert "KmsMasterKeyId" in topic["Properties"]
    _, policy = one(template, "AWS::SNS::TopicPolicy")
    assert '"aws:SecureTransport": "false"' in dumps(policy)
    assert '"Effect": "Deny"' in dumps(policy)
    key = next(k for name, k in resources(template, "AWS::KMS::Key").items() if name.startswith("AlarmsKey"))
    assert key["Properties"]["EnableKeyRotation"] is True
    assert "cloudwatch.amazonaws.com" in dumps(key["Properties"]["KeyPolicy"])
    _, subscription = one(synth_variant.merged_json, "AWS::SNS::Subscription")
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == "ml-oncall@example.com"


def test_dashboard_per_model_with_the_traffic_split(synth_repo_config: Synth, synth_variant: Synth) -> None:
    dashboards = resources(synth_repo_config.merged_json, "AWS::CloudWatch::Dashboard")
    dashboard = next(d for name, d in dashboards.items() if name.startswith("Monitoringiris"))
    body = dumps(dashboard["Properties"]["DashboardBody"])
    assert "{AWS/Lambda,FunctionName,Resource,ExecutedVersion}" in body  # invocations by version
    for metric in (
        "Latency",
        "Instances",
        "ClientErrors",
        "ServerErrors",
        "ColdStart",
        "InitDuration",
        "Throttles",
        "ConcurrentExecutions",
    ):
        assert metric in body, metric
    assert dashboard["Properties"]["DashboardName"] == "mdk-dev-iris"
    # two models, and the batch pipeline's
    assert len(resources(synth_variant.merged_json, "AWS::CloudWatch::Dashboard")) == 3


def test_monitoring_alarms_notify_the_topic(synth_repo_config: Synth) -> None:
    template = synth_repo_config.merged_json
    topic_id, _ = one(template, "AWS::SNS::Topic")
    facade = {
        k: v["Properties"]
        for k, v in resources(template, "AWS::CloudWatch::Alarm").items()
        if k.startswith("Monitoringiris")
    }
    names = sorted(p["AlarmName"] for p in facade.values())
    assert names == [
        "mdk-dev-iris-Fault-Count-Critical",
        "mdk-dev-iris-Latency-P99-Warning",
        "mdk-dev-iris-Throttled-Count-Warning",
        "mdk-dev-iris-model-timeouts-Critical",
    ]
    assert all(p["AlarmActions"] == [{"Ref": topic_id}] for p in facade.values())
    # Predictions stopped at their deadline (504) alarm on the first one, for the deployed version.
    timeouts = next(p for p in facade.values() if p["AlarmName"] == "mdk-dev-iris-model-timeouts-Critical")
    assert timeouts["MetricName"] == "ErrorsByCode"
    dims = {d["Name"]: d["Value"] for d in timeouts["Dimensions"]}
    assert dims.pop("ModelVersion")  # the artifact's version, as the function reports it
    assert dims == {"Model": "iris", "service": "mdk-inference", "ErrorCode": "inference_timeout"}
    assert (timeouts["Threshold"], timeouts["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert timeouts["TreatMissingData"] == "notBreaching"


# ------------------------------------------------------------------------------------------------
# Hygiene
# ------------------------------------------------------------------------------------------------


def test_stack_names_stage_tags_and_retention(synth_repo_config: Synth, synth_variant: Synth) -> None:
    assert [s.stack_name for s in synth_variant.stacks] == ["acme-prod-serving"]
    for synth, policy in ((synth_repo_config, "Retain"), (synth_variant, "Delete")):
        log_groups = resources(synth.merged_json, "AWS::Logs::LogGroup")
        assert log_groups
        assert {g["DeletionPolicy"] for g in log_groups.values()} == {policy}
    function = synth_variant.merged_json["Resources"][fn_id(synth_variant, "iris-fast")]
    assert {"Key": "mdk:stage", "Value": "prod"} in function["Properties"]["Tags"]
    assert {"Key": "mdk:project", "Value": "acme"} in function["Properties"]["Tags"]


def test_templates_are_environment_agnostic(synth_repo_config: Synth, synth_variant: Synth) -> None:
    for synth in (synth_repo_config, synth_variant):
        text = dumps(synth.merged_json["Resources"])
        assert not re.search(r"\b\d{12}\b", text), "a hard-coded account id"
        assert not re.search(
            r"\b(us|eu|ap|sa|ca|me|af)-(east|west|north|south|central|northeast|southeast)-\d\b", text
        )
        for kind in (
            "AWS::Lambda::Function",
            "AWS::SNS::Topic",
            "AWS::ApiGateway::RestApi",
            "AWS::IAM::Role",
        ):
            for resource in resources(synth.merged_json, kind).values():
                props = resource["Properties"]
                assert "FunctionName" not in props
                assert "TopicName" not in props
                assert "RoleName" not in props


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"stage": "Prod!"}, "context 'stage': expected lowercase letters and digits"),
        ({"destroy": "yes"}, "context 'destroy': expected true or false, got 'yes'"),
    ],
)
def test_bad_context_is_refused_with_its_name(context: dict[str, str], message: str) -> None:
    import aws_cdk as cdk

    with pytest.raises(SettingsError, match=re.escape(message)):
        DeploySettings.from_context(cdk.App(context=context), "mdk")


# ------------------------------------------------------------------------------------------------
# A changed model rolls out; an unchanged one does not
# ------------------------------------------------------------------------------------------------

ROLLOUT_CONFIG = """
    models:
      - {name: iris, artifact: MODELS/iris/IRIS/model.onnx, runtime: lambda}
      - {name: digits, artifact: MODELS/digits/v1/model.onnx, runtime: sagemaker}
"""
# everything of the serving stack that belongs to the iris model (and the API that routes to it)


def _image_assets(synth: Synth) -> set[str]:
    text = (synth.outdir / "mdk-dev-serving.assets.json").read_text()
    return set(json.loads(text).get("dockerImages", {}))


def _synth_iris(tmp_path: Path, name: str, version: str) -> Synth:
    path = write_config(tmp_path / name, ROLLOUT_CONFIG.replace("IRIS", version))
    return synth_config(path, tmp_path / name / "out", with_nag=False)


def test_unchanged_config_synthesizes_identically(tmp_path: Path) -> None:
    first = _synth_iris(tmp_path, "a", "v1")
    second = _synth_iris(tmp_path, "b", "v1")
    assert first.merged_json == second.merged_json
    assert _image_assets(first) == _image_assets(second)


def test_changed_artifact_changes_the_image_and_publishes_a_new_version(tmp_path: Path) -> None:
    before = _synth_iris(tmp_path, "a", "v1")
    after = _synth_iris(tmp_path, "b", "v2")
    # iris's image changes; the SageMaker serving image (no model inside) does not
    assert len(_image_assets(before) - _image_assets(after)) == 1
    version_before, _ = one(before.merged_json, "AWS::Lambda::Version")
    version_after, _ = one(after.merged_json, "AWS::Lambda::Version")
    assert version_before != version_after  # a new AWS::Lambda::Version: the alias update starts a rollout
    image_before = before.merged_json["Resources"][fn_id(before, "iris")]["Properties"]["Code"]
    image_after = after.merged_json["Resources"][fn_id(after, "iris")]["Properties"]["Code"]
    assert image_before != image_after


def _owned_by(synth: Synth, prefixes: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in synth.merged_json["Resources"].items() if k.startswith(prefixes)}


def test_a_change_to_another_model_leaves_this_one_alone(tmp_path: Path) -> None:
    before = _synth_iris(tmp_path, "a", "v1")
    other = tmp_path / "other-digits"
    shutil.copytree(REPO / "models", other)
    (other / "digits" / "v1" / "model.onnx").write_bytes((REPO / "models/iris/v2/model.onnx").read_bytes())
    text = ROLLOUT_CONFIG.replace("IRIS", "v1").replace("MODELS/digits", f"{other}/digits")
    after = synth_config(write_config(tmp_path / "c", text), tmp_path / "c" / "out", with_nag=False)
    # iris's function, version, alias, hook, alarms, deployment group and dashboard do not move ...
    iris = ("Modeliris", "Monitoringiris")
    assert _owned_by(before, iris) == _owned_by(after, iris)
    # ... while digits gets a new SageMaker model and endpoint config under the same endpoint
    digits_before, digits_after = (
        _owned_by(before, ("Endpointdigits",)),
        _owned_by(after, ("Endpointdigits",)),
    )
    changed = sorted(k for k in digits_before if digits_before[k] != digits_after.get(k))
    assert [re.sub(r"[0-9A-F]{8}$", "", k) for k in changed] == [
        "EndpointdigitsExecutionRoleDefaultPolicy",  # may read the new artifact object
        "EndpointdigitsModel",  # a new artifact: CloudFormation replaces the model (a new generated name),
    ]  # hence the endpoint config that names it, and the endpoint rolls out the new config (blue/green)
    endpoint_before = next(
        v
        for k, v in digits_before.items()
        if k.startswith("EndpointdigitsEndpoint") and v["Type"] == "AWS::SageMaker::Endpoint"
    )
    endpoint_after = next(
        v
        for k, v in digits_after.items()
        if k.startswith("EndpointdigitsEndpoint") and v["Type"] == "AWS::SageMaker::Endpoint"
    )
    assert endpoint_before["Properties"]["EndpointName"] == endpoint_after["Properties"]["EndpointName"]
