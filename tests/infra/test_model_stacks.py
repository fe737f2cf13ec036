"""Template assertions for the stacks of a deployment (the shared stack and one stack per model): every
feature the deployment promises, resource by resource, and in which stack it lives."""

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
from tests.infra.layout import imported, stack_names
from tests.template_events import routes

CANARY_DEFAULT = "CodeDeployDefault.LambdaCanary10Percent5Minutes"


def _image_assets(synth: Synth, stack: str) -> dict[str, Any]:
    """The container images a stack's assets file publishes, by asset hash."""
    images: dict[str, Any] = json.loads((synth.outdir / f"{stack}.assets.json").read_text()).get(
        "dockerImages", {}
    )
    return images


def fn_id(synth: Synth, model: str) -> str:
    functions = resources(synth.merged_json, "AWS::Lambda::Function")
    return next(k for k, v in functions.items() if k.startswith(f"Model{model.replace('-', '')}Function"))


# ------------------------------------------------------------------------------------------------
# Per model: function, version, alias, rollout
# ------------------------------------------------------------------------------------------------


def test_one_shared_stack_and_one_stack_per_model(synth_repo_config: Synth) -> None:
    names = ["mdk-dev-shared", "mdk-dev-model-iris", "mdk-dev-model-digits"]
    assert [s.stack_name for s in synth_repo_config.stacks] == names == stack_names(synth_repo_config)
    for name in names:  # each its own template and assets file, deployable alone
        assert (synth_repo_config.outdir / f"{name}.template.json").is_file()
        assert (synth_repo_config.outdir / f"{name}.assets.json").is_file()
    assert not (synth_repo_config.outdir / "mdk-dev-serving.template.json").exists()
    # every model stack is deployed after the shared one, whose exports it imports
    for stack in synth_repo_config.stacks[1:]:
        assert [d.stack_name for d in stack.dependencies] == ["mdk-dev-shared"]


def test_only_lambda_models_get_a_function(synth_repo_config: Synth) -> None:
    def functions(template: dict[str, Any]) -> list[str]:
        found = resources(template, "AWS::Lambda::Function")
        return sorted(re.sub(r"[0-9A-F]{8}$", "", k) for k in found)

    # the batch pipeline has its trigger and status functions (no store in this config: no
    # predictions function); iris (lambda) gets its function and its pre-traffic hook in its own
    # stack; digits runs on SageMaker
    assert functions(synth_repo_config.shared_json) == ["BatchStatus", "BatchTrigger"]
    assert functions(synth_repo_config.model_json("iris")) == ["ModelirisFunction", "ModelirisPreTrafficHook"]
    assert functions(synth_repo_config.model_json("digits")) == []


def test_image_function_from_the_models_own_build_context(synth_repo_config: Synth) -> None:
    template = synth_repo_config.model("iris")
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
    assets = (synth_repo_config.outdir / "mdk-dev-model-iris.assets.json").read_text()
    assert '"MODEL_DIR": "model"' in assets
    assert '"platform": "linux/amd64"' in assets
    # iris's image is published with its stack alone
    for stack in ("mdk-dev-shared", "mdk-dev-model-iris", "mdk-dev-model-digits"):
        images = [i["displayName"] for i in _image_assets(synth_repo_config, stack).values()]
        assert ("Model-iris/Function/AssetImage" in images) == (stack == "mdk-dev-model-iris"), stack


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
    topic_id, _ = one(synth_repo_config.shared_json, "AWS::SNS::Topic")
    topic = imported(synth_repo_config, "alarm-topic-arn", {"Ref": topic_id})
    assert set(alarms) <= set(synth_repo_config.model_json("iris")["Resources"])
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [topic]
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
    assets = (synth_variant.outdir / "acme-prod-model-iris-fast.assets.json").read_text()
    assert '"platform": "linux/arm64"' in assets
    assert (
        '"platform": "linux/arm64"'
        not in (synth_variant.outdir / "acme-prod-model-iris-big-bang.assets.json").read_text()
    )


# ------------------------------------------------------------------------------------------------
# The API
# ------------------------------------------------------------------------------------------------


def test_each_model_has_its_own_regional_rest_api_with_only_its_routes(synth_repo_config: Synth) -> None:
    assert not resources(synth_repo_config.shared_json, "AWS::ApiGateway::RestApi")
    expected = {
        "iris": [  # Lambda: predict, metadata, health
            ("GET", "/models/iris/health"),
            ("GET", "/models/iris/metadata"),
            ("POST", "/models/iris/predict"),
        ],
        "digits": [("POST", "/models/digits/predict")],  # SageMaker: predict
    }
    for name, want in expected.items():
        template = synth_repo_config.model_json(name)
        api_id, api = one(template, "AWS::ApiGateway::RestApi")
        assert api["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
        assert api["Properties"]["BinaryMediaTypes"] == ["application/x-npy"]
        assert sorted((r.verb, r.path) for r in routes(template)) == want
        for kind in ("Resource", "Method", "Stage", "Deployment", "RequestValidator", "GatewayResponse"):
            for resource in resources(template, f"AWS::ApiGateway::{kind}").values():
                assert resource["Properties"]["RestApiId"] == {"Ref": api_id}, kind
        _, validator = one(template, "AWS::ApiGateway::RequestValidator")
        assert validator["Properties"]["ValidateRequestBody"] is True
    iris = synth_repo_config.model_json("iris")
    methods = [
        m["Properties"]
        for m in resources(iris, "AWS::ApiGateway::Method").values()
        if m["Properties"]["Integration"]["Type"] == "AWS_PROXY"
    ]
    assert sorted(m["HttpMethod"] for m in methods) == ["GET", "GET", "POST"]
    alias_id, _ = one(iris, "AWS::Lambda::Alias")
    for method in methods:
        assert method["AuthorizationType"] == "AWS_IAM"
        assert method["Integration"]["Type"] == "AWS_PROXY"
        assert f'{{"Ref": "{alias_id}"}}' in dumps(
            method["Integration"]["Uri"]
        )  # the live alias, not $LATEST
    predict = next(m for m in methods if m["HttpMethod"] == "POST")
    assert "RequestValidatorId" in predict
    assert "application/json" in predict["RequestModels"]


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


@pytest.mark.parametrize("model", ["iris", "digits"])
def test_gateway_refusals_use_the_functions_error_shape(synth_repo_config: Synth, model: str) -> None:
    responses = [  # each model's API answers its own refusals
        r["Properties"]
        for r in resources(synth_repo_config.model_json(model), "AWS::ApiGateway::GatewayResponse").values()
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


def test_outputs_name_each_models_api_and_route(synth_repo_config: Synth) -> None:
    for model in ("iris", "digits"):  # in the model's own stack, naming its own API
        template = synth_repo_config.model_json(model)
        api_id, _ = one(template, "AWS::ApiGateway::RestApi")
        outputs = template["Outputs"]
        url = next(v for k, v in outputs.items() if k.startswith(f"ModelApi{model}ApiUrl"))
        assert {"Ref": api_id} in url["Value"]["Fn::Join"][1]
        route = next(v for k, v in outputs.items() if k.startswith(f"ModelApi{model}Route{model.title()}"))
        assert {"Ref": api_id} in route["Value"]["Fn::Join"][1]
        assert route["Value"]["Fn::Join"][1][-1] == f"/models/{model}/predict"
    assert any(k.startswith("AlarmTopicArn") for k in synth_repo_config.shared_json["Outputs"])


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
    template = synth_repo_config.model_json("iris")
    topic_id, _ = one(synth_repo_config.shared_json, "AWS::SNS::Topic")
    topic = imported(synth_repo_config, "alarm-topic-arn", {"Ref": topic_id})
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
    assert all(p["AlarmActions"] == [topic] for p in facade.values())
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
    assert [s.stack_name for s in synth_variant.stacks] == [
        "acme-prod-shared",
        "acme-prod-model-iris-fast",
        "acme-prod-model-iris-big-bang",
        "acme-prod-access",  # api_key auth: the consumers' keys and usage plans
    ]
    assert [s.stack_name for s in synth_variant.stacks] == stack_names(synth_variant)
    for synth, policy in ((synth_repo_config, "Retain"), (synth_variant, "Delete")):
        log_groups = resources(synth.merged_json, "AWS::Logs::LogGroup")
        assert log_groups
        assert {g["DeletionPolicy"] for g in log_groups.values()} == {policy}
    trigger = next(k for k in resources(synth_variant.shared_json, "AWS::Lambda::Function") if "Trigger" in k)
    for stack, function in (
        (synth_variant.shared_json, trigger),
        (synth_variant.model_json("iris-fast"), fn_id(synth_variant, "iris-fast")),
    ):  # the tags are the whole app's
        tags = stack["Resources"][function]["Properties"]["Tags"]
        assert {"Key": "mdk:stage", "Value": "prod"} in tags
        assert {"Key": "mdk:project", "Value": "acme"} in tags


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
      - {name: iris, artifact: MODELS/iris/IRIS/model.onnx, runtime: lambda, batch: {enabled: BATCH}}
      - {name: digits, artifact: MODELS/digits/v1/model.onnx, runtime: sagemaker}
"""
STACKS = ("mdk-dev-shared", "mdk-dev-model-iris", "mdk-dev-model-digits")


def _synth_iris(tmp_path: Path, name: str, version: str, *, batch: bool = True) -> Synth:
    text = ROLLOUT_CONFIG.replace("IRIS", version).replace("BATCH", str(batch).lower())
    return synth_config(write_config(tmp_path / name, text), tmp_path / name / "out", with_nag=False)


def _template(synth: Synth, stack: str) -> bytes:
    """A stack's template as `cdk deploy` uploads it: the bytes of ``<stack>.template.json``."""
    return (synth.outdir / f"{stack}.template.json").read_bytes()


def _assets(synth: Synth, stack: str) -> bytes:
    return (synth.outdir / f"{stack}.assets.json").read_bytes()


def _differences(before: Synth, after: Synth, stack: str) -> list[str]:
    """What differs between two syntheses of a stack, nothing ignored: each resource whose JSON differs
    (by its logical id, less CDK's hash suffix), and each other section of the template that does."""
    old, new = json.loads(_template(before, stack)), json.loads(_template(after, stack))
    found = []
    for section in sorted(set(old) | set(new)):
        if section != "Resources" and old.get(section) != new.get(section):
            found.append(section)
    res_old, res_new = old.get("Resources", {}), new.get("Resources", {})
    for logical in sorted(set(res_old) | set(res_new)):
        if res_old.get(logical) != res_new.get(logical):
            found.append(re.sub(r"[0-9A-F]{8}$", "", logical))
    return found


# A model's batch part, its stack's: the SageMaker model its transform jobs run (the artifact's tarball;
# its role may read that object) and its registry entry, which names that model and its version (the
# batch functions read it at run time; the shared stack names no model).
def _batch_part(model: str) -> list[str]:
    return [f"BatchModel{model}ExecutionRoleDefaultPolicy", f"BatchModel{model}Model"]


def test_unchanged_config_synthesizes_identically(tmp_path: Path) -> None:
    first = _synth_iris(tmp_path, "a", "v1")
    second = _synth_iris(tmp_path, "b", "v1")
    assert [s.stack_name for s in first.stacks] == [s.stack_name for s in second.stacks] == list(STACKS)
    for stack in STACKS:  # every stack's template and assets, byte for byte: no update, no new image
        assert _template(first, stack) == _template(second, stack), stack
        assert _assets(first, stack) == _assets(second, stack), stack


@pytest.mark.parametrize("batch", [False, True], ids=["iris-without-batch", "iris-with-batch"])
def test_changed_artifact_changes_only_its_models_stack_and_publishes_a_new_version(
    tmp_path: Path, batch: bool
) -> None:
    before = _synth_iris(tmp_path, "a", "v1", batch=batch)
    after = _synth_iris(tmp_path, "b", "v2", batch=batch)
    # digits's stack and its assets are untouched: not even a no-op update of its stack
    assert _template(before, "mdk-dev-model-digits") == _template(after, "mdk-dev-model-digits")
    assert _assets(before, "mdk-dev-model-digits") == _assets(after, "mdk-dev-model-digits")
    # the shared stack: untouched, batch or not (iris's batch part is its own stack's)
    assert _template(before, "mdk-dev-shared") == _template(after, "mdk-dev-shared")
    assert _assets(before, "mdk-dev-shared") == _assets(after, "mdk-dev-shared")
    if batch:
        assert set(_batch_part("iris")) <= set(_differences(before, after, "mdk-dev-model-iris"))
    # iris's stack publishes iris's new image ...
    images_before = _image_assets(before, "mdk-dev-model-iris")
    images_after = _image_assets(after, "mdk-dev-model-iris")
    # (with batch, also the serving image its transform jobs run: the same content, the same hash)
    assert len(images_before) == len(images_after) == (2 if batch else 1)
    assert len(images_before.keys() - images_after.keys()) == 1
    # ... and a new AWS::Lambda::Version: the alias update starts a rollout
    iris_before, iris_after = before.model_json("iris"), after.model_json("iris")
    version_before, _ = one(iris_before, "AWS::Lambda::Version")
    version_after, _ = one(iris_after, "AWS::Lambda::Version")
    assert version_before != version_after
    image_before = iris_before["Resources"][fn_id(before, "iris")]["Properties"]["Code"]
    image_after = iris_after["Resources"][fn_id(after, "iris")]["Properties"]["Code"]
    assert image_before != image_after


def test_adding_a_model_leaves_the_other_models_stacks_alone(tmp_path: Path) -> None:
    before = _synth_iris(tmp_path, "a", "v1")
    text = ROLLOUT_CONFIG.replace("IRIS", "v1").replace("BATCH", "true") + (
        "      - {name: iris-next, artifact: MODELS/iris/v2/model.onnx, runtime: lambda}\n"
    )
    after = synth_config(write_config(tmp_path / "c", text), tmp_path / "c" / "out", with_nag=False)
    assert [s.stack_name for s in after.stacks] == [*STACKS, "mdk-dev-model-iris-next"]
    for stack in ("mdk-dev-model-iris", "mdk-dev-model-digits"):  # (and removing it, the other way round)
        assert _template(before, stack) == _template(after, stack), stack
        assert _assets(before, stack) == _assets(after, stack), stack


def test_a_change_to_another_model_leaves_this_one_alone(tmp_path: Path) -> None:
    before = _synth_iris(tmp_path, "a", "v1")
    other = tmp_path / "other-digits"
    shutil.copytree(REPO / "models", other)
    (other / "digits" / "v1" / "model.onnx").write_bytes((REPO / "models/iris/v2/model.onnx").read_bytes())
    text = ROLLOUT_CONFIG.replace("IRIS", "v1").replace("BATCH", "true")
    text = text.replace("MODELS/digits", f"{other}/digits")
    after = synth_config(write_config(tmp_path / "c", text), tmp_path / "c" / "out", with_nag=False)
    # iris's stack (function, version, alias, hook, alarms, deployment group, dashboard, API, registry
    # entry) and its image do not move, nor does the shared stack ...
    assert _template(before, "mdk-dev-model-iris") == _template(after, "mdk-dev-model-iris")
    assert _assets(before, "mdk-dev-model-iris") == _assets(after, "mdk-dev-model-iris")
    assert _template(before, "mdk-dev-shared") == _template(after, "mdk-dev-shared")
    # ... while digits gets a new SageMaker model and endpoint config under the same endpoint, and a new
    # transform model for its batch jobs
    assert _differences(before, after, "mdk-dev-model-digits") == [
        *_batch_part("digits"),
        "EndpointdigitsExecutionRoleDefaultPolicy",  # may read the new artifact object
        "EndpointdigitsModel",  # a new artifact: CloudFormation replaces the model (a new generated name),
        # hence the endpoint config that names it, and the endpoint rolls out the new config (blue/green)
        "RegistryModeldigits",  # digits's registry entry names its new version
    ]
    for synth in (before, after):
        _, endpoint = one(synth.model_json("digits"), "AWS::SageMaker::Endpoint")
        assert endpoint["Properties"]["EndpointName"] == "mdk-dev-digits"
