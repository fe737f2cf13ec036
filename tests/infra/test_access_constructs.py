"""The per-model access constructs (stacks/access.py) on a small app: a dummy REST API per model in one
stack, the policies, plans, scopes and clients in another, as the model and access stacks will hold them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_apigateway as apigw
from cdk_nag import AwsSolutionsChecks, ServerlessChecks

from mdk.config import Consumer, parse_config
from mdk_runtime import routes
from stacks.access import (
    ConsumerClients,
    ConsumerPlans,
    ModelInvokePolicy,
    ModelScopes,
    ModelStage,
    api_id_export,
    invoke_policy_name,
    model_scope,
)
from stacks.limits import check_assembly
from tests.infra.conftest import REPO, Synth, resources, synth_config, write_config
from tests.infra.layout import exports

PREFIX = "acme-dev"
POOL = "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_Abc"
MODELS = {"iris": "lambda", "digits": "sagemaker", "text": "lambda"}
CONSUMERS = [
    Consumer(name="fraud-team", models=("iris", "digits"), rate=5, burst=10, quota_per_day=1000),
    Consumer(name="web", models=("text",), rate=50, burst=100, quota_per_day=None),
]


# What cdk-nag says of the bare dummy APIs, which stand in for the model stacks' own (checked there).
DUMMY_API_FINDINGS = [
    "AwsSolutions::AwsSolutions-APIG1",
    "AwsSolutions::AwsSolutions-APIG2",
    "AwsSolutions::AwsSolutions-APIG3",
    "AwsSolutions::AwsSolutions-APIG4",
    "AwsSolutions::AwsSolutions-APIG6",
    "AwsSolutions::AwsSolutions-COG4",
    "AwsSolutions::AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
    "AmazonAPIGatewayPushToCloudWatchLogs]",
    "Serverless::Serverless-APIGWAccessLogging",
    "Serverless::Serverless-APIGWDefaultThrottling",
    "Serverless::Serverless-APIGWXrayEnabled",
]


def _dummy_api(stack: cdk.Stack, model: str, runtime: str) -> str:
    """A REST API with ``model``'s routes; its id exported by name, as a model stack exports it."""
    api = apigw.RestApi(stack, f"Api-{model}", deploy_options=apigw.StageOptions(stage_name="dev"))
    below = api.root.add_resource(routes.PREFIX).add_resource(model)
    for route in routes.served(runtime):
        below.add_resource(route.action).add_method(route.method)
    cdk.CfnOutput(stack, f"ApiId-{model}", value=api.rest_api_id, export_name=api_id_export(PREFIX, model))
    return cdk.Fn.import_value(api_id_export(PREFIX, model))


@pytest.fixture(scope="module")
def access(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Templates by stack name: ``apis`` (dummy APIs), ``iam``, ``plans`` and ``cognito``."""
    outdir = tmp_path_factory.mktemp("access")
    app = cdk.App(outdir=str(outdir))
    apis_stack = cdk.Stack(app, "apis")
    apis = {m: _dummy_api(apis_stack, m, runtime) for m, runtime in MODELS.items()}
    iam_stack = cdk.Stack(app, "iam")
    for model, api in apis.items():
        ModelInvokePolicy(
            iam_stack, f"Invoke-{model}", rest_api_id=api, stage="dev", model=model, prefix=PREFIX
        )
    plans_stack = cdk.Stack(app, "plans")
    stages = {
        m: ModelStage(
            rest_api_id=api,
            stage_name="dev",
            routes=tuple(sorted(routes.api_routes(m, MODELS[m], store=m == "iris"))),
        )
        for m, api in apis.items()
    }
    ConsumerPlans(plans_stack, "Plans", consumers=CONSUMERS, stages=stages, prefix=PREFIX)
    cognito_stack = cdk.Stack(app, "cognito")
    scopes = ModelScopes(cognito_stack, "Scopes", user_pool_arn=POOL, prefix=PREFIX, models=list(MODELS))
    ConsumerClients(cognito_stack, "Clients", scopes=scopes, consumers=CONSUMERS)
    cdk.Validations.of(apis_stack).acknowledge(
        *(cdk.Acknowledgment(id=rule, reason="a bare dummy API") for rule in DUMMY_API_FINDINGS)
    )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app), ServerlessChecks(app))
    assembly = app.synth()  # raises on any finding not acknowledged
    report = json.loads((Path(outdir) / "validation-report.json").read_text())
    assert all(not plugin["violations"] for plugin in report["pluginReports"])
    return {s.stack_name: s.template for s in assembly.stacks}


def _model_of(api_id: Any) -> str:
    """The model whose API an ``Fn::ImportValue`` of a model stack's export names."""
    name: str = api_id["Fn::ImportValue"]
    return name.removeprefix(f"{PREFIX}-model-").removesuffix("-api-id")


def test_each_invoke_policy_names_only_its_models_routes(access: dict[str, dict[str, Any]]) -> None:
    template = access["iam"]
    policies = resources(template, "AWS::IAM::ManagedPolicy")
    assert len(policies) == len(MODELS)
    by_name = {p["Properties"]["ManagedPolicyName"]: p["Properties"] for p in policies.values()}
    assert set(by_name) == {f"{PREFIX}-invoke-{m}" for m in MODELS}
    for model in MODELS:
        [statement] = by_name[f"{PREFIX}-invoke-{model}"]["PolicyDocument"]["Statement"]
        assert statement["Effect"] == "Allow"
        assert statement["Action"] == "execute-api:Invoke"
        parts = statement["Resource"]["Fn::Join"][1]
        assert parts[:7] == [
            "arn:",
            {"Ref": "AWS::Partition"},
            ":execute-api:",
            {"Ref": "AWS::Region"},
            ":",
            {"Ref": "AWS::AccountId"},
            ":",
        ]
        assert _model_of(parts[7]) == model  # this model's API ...
        assert parts[8:] == [f"/dev/*/models/{model}/*"]  # ... its stage, any method, its routes only
    outputs = template["Outputs"]
    arns = [o for o in outputs.values() if "attach to the roles and users" in o["Description"]]
    assert len(arns) == len(MODELS)
    assert all(set(o["Value"]) == {"Ref"} for o in arns)


def test_invoke_policy_names_stay_within_iam_s_128_characters() -> None:
    assert invoke_policy_name("p-dev", "iris") == "p-dev-invoke-iris"
    long = invoke_policy_name("a" * 100, "m" * 32)
    assert len(long) == 128
    assert long != invoke_policy_name("a" * 100, "m" * 31 + "n")  # a hash of the whole name keeps them apart


def test_each_plan_lists_only_its_consumers_models(access: dict[str, dict[str, Any]]) -> None:
    template = access["plans"]
    plans = {
        p["Properties"]["UsagePlanName"]: p["Properties"]
        for p in resources(template, "AWS::ApiGateway::UsagePlan").values()
    }
    assert set(plans) == {f"{PREFIX}-fraud-team", f"{PREFIX}-web"}
    fraud = plans[f"{PREFIX}-fraud-team"]
    assert [(_model_of(st["ApiId"]), st["Stage"]) for st in fraud["ApiStages"]] == [
        ("iris", "dev"),
        ("digits", "dev"),
    ]
    iris, digits = fraud["ApiStages"]
    # The consumer's own throttle on each route of each of its models; no plan-wide bucket.
    limit = {"RateLimit": 5, "BurstLimit": 10}
    assert iris["Throttle"] == {
        "/models/iris/predict/POST": limit,
        "/models/iris/metadata/GET": limit,
        "/models/iris/health/GET": limit,
        "/models/iris/predictions/{id}/GET": limit,
    }
    assert digits["Throttle"] == {"/models/digits/predict/POST": limit}
    assert "Throttle" not in fraud
    assert fraud["Quota"] == {"Limit": 1000, "Period": "DAY"}
    web = plans[f"{PREFIX}-web"]
    [text] = web["ApiStages"]
    assert _model_of(text["ApiId"]) == "text"
    assert text["Throttle"] == {
        f"/models/text/{route.action}/{route.method}": {"RateLimit": 50, "BurstLimit": 100}
        for route in routes.served("lambda")
    }
    assert "Quota" not in web


def test_each_consumer_has_its_own_enabled_key_in_its_own_plan(access: dict[str, dict[str, Any]]) -> None:
    template = access["plans"]
    keys = resources(template, "AWS::ApiGateway::ApiKey")
    assert {k["Properties"]["Name"] for k in keys.values()} == {f"{PREFIX}-fraud-team", f"{PREFIX}-web"}
    assert all(k["Properties"]["Enabled"] is True and "Value" not in k["Properties"] for k in keys.values())
    plans = resources(template, "AWS::ApiGateway::UsagePlan")
    memberships = [m["Properties"] for m in resources(template, "AWS::ApiGateway::UsagePlanKey").values()]
    assert len(memberships) == 2
    pairs = {
        (
            keys[m["KeyId"]["Ref"]]["Properties"]["Name"],
            plans[m["UsagePlanId"]["Ref"]]["Properties"]["UsagePlanName"],
        )
        for m in memberships
    }
    assert pairs == {(f"{PREFIX}-fraud-team",) * 2, (f"{PREFIX}-web",) * 2}
    assert all(m["KeyType"] == "API_KEY" for m in memberships)
    outputs = [o for o in template["Outputs"].values() if "get-api-key" in o["Description"]]
    assert sorted(o["Value"]["Ref"] for o in outputs) == sorted(keys)


def test_one_scope_per_model_in_a_resource_server_of_the_users_pool(
    access: dict[str, dict[str, Any]],
) -> None:
    template = access["cognito"]
    [server] = resources(template, "AWS::Cognito::UserPoolResourceServer").values()
    props = server["Properties"]
    assert props["Identifier"] == PREFIX
    assert props["UserPoolId"] == "eu-west-1_Abc"
    assert [s["ScopeName"] for s in props["Scopes"]] == list(MODELS)
    assert model_scope(PREFIX, "iris") == f"{PREFIX}/iris"


def test_each_consumer_client_gets_client_credentials_and_its_models_scopes(
    access: dict[str, dict[str, Any]],
) -> None:
    template = access["cognito"]
    [server_id] = resources(template, "AWS::Cognito::UserPoolResourceServer")
    clients = {
        c["Properties"]["ClientName"]: c for c in resources(template, "AWS::Cognito::UserPoolClient").values()
    }
    assert set(clients) == {f"{PREFIX}-fraud-team", f"{PREFIX}-web"}
    expected = {"fraud-team": [f"{PREFIX}/iris", f"{PREFIX}/digits"], "web": [f"{PREFIX}/text"]}
    for name, scopes in expected.items():
        client = clients[f"{PREFIX}-{name}"]
        props = client["Properties"]
        assert props["AllowedOAuthScopes"] == scopes
        assert props["AllowedOAuthFlows"] == ["client_credentials"]
        assert props["AllowedOAuthFlowsUserPoolClient"] is True
        assert props["GenerateSecret"] is True
        assert props["UserPoolId"] == "eu-west-1_Abc"
        assert client["DependsOn"] == [server_id]  # the scopes exist before a client is allowed them
    outputs = [o for o in template["Outputs"].values() if "app client id" in o["Description"]]
    assert len(outputs) == 2


def test_a_consumer_of_a_model_without_a_stage_or_scope_is_refused() -> None:
    app = cdk.App()
    stack = cdk.Stack(app, "s")
    lost = [Consumer(name="x", models=("gone",), rate=1, burst=1, quota_per_day=None)]
    with pytest.raises(ValueError, match="consumer 'x': no API stage for model 'gone'"):
        ConsumerPlans(stack, "Plans", consumers=lost, stages={}, prefix=PREFIX)
    scopes = ModelScopes(stack, "Scopes", user_pool_arn=POOL, prefix=PREFIX, models=["iris"])
    with pytest.raises(ValueError, match="consumer 'x': no scope for model 'gone'"):
        ConsumerClients(stack, "Clients", scopes=scopes, consumers=lost)


# ------------------------------------------------------------------------------------------------
# Wired into the stacks (stacks/__init__.py build): one synth per auth mode
# ------------------------------------------------------------------------------------------------

CONSUMERS_CONFIG = """
    project: shop
    api:
      auth: api_key
      throttle_rate: 30
      throttle_burst: 60
      quota_per_day: 7000
      consumers:
        - {name: fraud, models: [iris], rate: 3, burst: 6, quota_per_day: 100}
        - {name: bi, models: [iris, digits]}
    models:
      - {name: iris, artifact: MODELS/iris/v1/model.onnx, runtime: lambda, throttle: {rate: 11, burst: 22}}
      - {name: digits, artifact: MODELS/digits/v1/model.onnx, runtime: sagemaker, batch: {enabled: false}}
"""
COGNITO_CONFIG = f"""
    project: shop
    api:
      auth: cognito
      cognito_user_pool_arn: "{POOL}"
      consumers: [{{name: partner, models: [digits]}}]
    models:
      - {{name: iris, artifact: MODELS/iris/v1/model.onnx, runtime: lambda}}
      - {{name: digits, artifact: MODELS/digits/v1/model.onnx, runtime: sagemaker, batch: {{enabled: false}}}}
"""


@pytest.fixture(scope="module")
def synth_consumers(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    directory = tmp_path_factory.mktemp("synth-consumers")
    return synth_config(write_config(directory, CONSUMERS_CONFIG), directory / "out")


@pytest.fixture(scope="module")
def synth_cognito(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    directory = tmp_path_factory.mktemp("synth-cognito")
    return synth_config(write_config(directory, COGNITO_CONFIG), directory / "out")


def _stage_throttle(template: dict[str, Any]) -> tuple[int, int]:
    [stage] = resources(template, "AWS::ApiGateway::Stage").values()
    [setting] = stage["Properties"]["MethodSettings"]
    assert (setting["ResourcePath"], setting["HttpMethod"]) == ("/*", "*")
    return setting["ThrottlingRateLimit"], setting["ThrottlingBurstLimit"]


def test_iam_each_model_stack_has_the_policy_of_its_own_routes(synth_repo_config: Synth) -> None:
    for model in ("iris", "digits"):
        template = synth_repo_config.model_json(model)
        [api] = resources(template, "AWS::ApiGateway::RestApi")
        [policy] = resources(template, "AWS::IAM::ManagedPolicy").values()
        props = policy["Properties"]
        assert props["ManagedPolicyName"] == f"mdk-dev-invoke-{model}"
        [statement] = props["PolicyDocument"]["Statement"]
        parts = statement["Resource"]["Fn::Join"][1]
        assert parts[7:] == [{"Ref": api}, f"/dev/*/models/{model}/*"]
        methods = resources(template, "AWS::ApiGateway::Method").values()
        assert {m["Properties"]["AuthorizationType"] for m in methods} == {"AWS_IAM"}
    assert not resources(synth_repo_config.shared_json, "AWS::IAM::ManagedPolicy")
    assert "mdk-dev-access" not in synth_repo_config.json  # no consumers with IAM


def test_api_key_each_consumer_plan_lists_only_its_models(synth_consumers: Synth) -> None:
    assert [s.stack_name for s in synth_consumers.stacks][-1] == "shop-dev-access"
    access = synth_consumers.json["shop-dev-access"]
    plans = {
        p["Properties"]["UsagePlanName"]: p["Properties"]
        for p in resources(access, "AWS::ApiGateway::UsagePlan").values()
    }
    assert set(plans) == {"shop-dev-fraud", "shop-dev-bi"}
    fraud, bi = plans["shop-dev-fraud"], plans["shop-dev-bi"]
    assert [s["ApiId"] for s in fraud["ApiStages"]] == [{"Fn::ImportValue": "shop-dev-model-iris-api-id"}]
    assert [s["ApiId"] for s in bi["ApiStages"]] == [
        {"Fn::ImportValue": "shop-dev-model-iris-api-id"},
        {"Fn::ImportValue": "shop-dev-model-digits-api-id"},
    ]
    # Every route the model's API has, at the consumer's rate (its own, or the API's)
    iris_routes = {f"{r['path']}/{r['method']}" for r in _methods(synth_consumers.model_json("iris"))}
    assert set(fraud["ApiStages"][0]["Throttle"]) == iris_routes
    assert all(t == {"RateLimit": 3, "BurstLimit": 6} for t in fraud["ApiStages"][0]["Throttle"].values())
    assert all(t == {"RateLimit": 30, "BurstLimit": 60} for t in bi["ApiStages"][0]["Throttle"].values())
    assert bi["ApiStages"][1]["Throttle"] == {
        "/models/digits/predict/POST": {"RateLimit": 30, "BurstLimit": 60}
    }
    assert (fraud["Quota"], bi["Quota"]) == (
        {"Limit": 100, "Period": "DAY"},
        {"Limit": 7000, "Period": "DAY"},
    )
    # each model stack exports its API's id by the name the plans import, and holds no key or plan
    for model in ("iris", "digits"):
        template = synth_consumers.model_json(model)
        [api] = resources(template, "AWS::ApiGateway::RestApi")
        assert exports(template)[f"shop-dev-model-{model}-api-id"] == {"Ref": api}
        assert not resources(template, "AWS::ApiGateway::UsagePlan")
        assert not resources(template, "AWS::ApiGateway::ApiKey")
    deps = {d.stack_name for d in synth_consumers.stacks[-1].dependencies}
    assert deps == {"shop-dev-model-iris", "shop-dev-model-digits"}


def _methods(template: dict[str, Any]) -> list[dict[str, str]]:
    """Each method of a model stack's API as ``{"path", "method"}`` (its resource path rebuilt)."""
    parts = {k: v["Properties"] for k, v in resources(template, "AWS::ApiGateway::Resource").items()}

    def path(resource: Any) -> str:
        if "Fn::GetAtt" in resource:  # the root
            return ""
        own = parts[resource["Ref"]]
        return f"{path(own['ParentId'])}/{own['PathPart']}"

    return [
        {"path": path(m["Properties"]["ResourceId"]), "method": m["Properties"]["HttpMethod"]}
        for m in resources(template, "AWS::ApiGateway::Method").values()
    ]


def test_each_model_stage_has_its_own_throttle(synth_consumers: Synth, synth_repo_config: Synth) -> None:
    assert _stage_throttle(synth_consumers.model_json("iris")) == (11, 22)  # its own
    assert _stage_throttle(synth_consumers.model_json("digits")) == (30, 60)  # the API's
    assert _stage_throttle(synth_repo_config.model_json("iris")) == (100, 200)  # the defaults


def test_cognito_methods_require_their_models_scope(synth_cognito: Synth) -> None:
    for model in ("iris", "digits"):
        methods = resources(synth_cognito.model_json(model), "AWS::ApiGateway::Method").values()
        assert methods
        for method in methods:
            assert method["Properties"]["AuthorizationType"] == "COGNITO_USER_POOLS"
            assert method["Properties"]["AuthorizationScopes"] == [f"shop-dev/{model}"]
    shared = synth_cognito.shared_json
    [server] = resources(shared, "AWS::Cognito::UserPoolResourceServer").values()
    assert server["Properties"]["Identifier"] == "shop-dev"
    assert [s["ScopeName"] for s in server["Properties"]["Scopes"]] == ["iris", "digits"]
    assert not resources(shared, "AWS::Cognito::UserPoolClient")
    # the consumers' clients are the access stack's, deployed after the scopes they are allowed
    [access] = [s for s in synth_cognito.stacks if s.stack_name == "shop-dev-access"]
    assert [d.stack_name for d in access.dependencies] == ["shop-dev-shared"]
    [client] = resources(synth_cognito.json["shop-dev-access"], "AWS::Cognito::UserPoolClient").values()
    assert client["Properties"]["ClientName"] == "shop-dev-partner"
    assert client["Properties"]["AllowedOAuthScopes"] == ["shop-dev/digits"]
    assert client["Properties"]["AllowedOAuthFlows"] == ["client_credentials"]


def test_300_consumers_fit_two_access_stacks_within_every_limit(tmp_path: Path) -> None:
    """AWS's 300 usage plans per Region, at three resources and one output per consumer, would pass a
    template's 500 resources: past 150 consumers the plans go to ``<prefix>-access-2``."""
    consumers = [{"name": f"c{i}", "models": ["iris"]} for i in range(300)]
    config = parse_config(
        {
            "project": "shop",
            "api": {"auth": "api_key", "consumers": consumers},
            "models": [{"name": "iris", "artifact": "models/iris/v1/model.onnx", "runtime": "lambda"}],
        },
        base_dir=REPO,
        check_models=False,
    )
    synth = synth_config(config, tmp_path / "out", with_nag=False)
    access = [s for s in synth.stacks if "-access" in s.stack_name]
    assert [s.stack_name for s in access] == ["shop-dev-access", "shop-dev-access-2"]
    plans = [resources(synth.json[s.stack_name], "AWS::ApiGateway::UsagePlan") for s in access]
    assert [len(p) for p in plans] == [150, 150]
    names = [p["Properties"]["UsagePlanName"] for found in plans for p in found.values()]
    assert names == [f"shop-dev-c{i}" for i in range(300)]
    assert {d.stack_name for s in access for d in s.dependencies} == {"shop-dev-model-iris"}
    assert check_assembly(synth.json) == []
