"""stacks.limits: each AWS quota crossed is reported with the stack, the limit, its documented value, the
count and what to do; a template within every limit gives no problem. Templates are written by hand (a
dict, or a cdk.out directory with its manifest); one plain CDK app shows the cx_api.CloudAssembly path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sns as sns

from stacks.limits import ASSEMBLY, QUOTAS, Limits, LimitsError, check_assembly, usage

CFN_PAGE = "https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-limits.html"
APIGW_PAGE = "https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-execution-service-limits-table.html"


def resources(kind: str, count: int, prefix: str = "R", **properties: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"Type": kind}
    if properties:
        body["Properties"] = properties
    return {f"{prefix}{i}": dict(body) for i in range(count)}


def rest_api(
    name: str = "Api", *, children: int = 0, authorizers: int = 0, stages: int = 1, endpoint: str = "REGIONAL"
) -> dict[str, Any]:
    """A REST API with ``children`` resources under its root, its authorizers and stages."""
    ref = {"Ref": name}
    properties = (
        {"Name": name, "EndpointConfiguration": {"Types": [endpoint]}} if endpoint else {"Name": name}
    )
    out: dict[str, Any] = {name: {"Type": "AWS::ApiGateway::RestApi", "Properties": properties}}
    out |= resources("AWS::ApiGateway::Resource", children, f"{name}Res", RestApiId=ref, PathPart="p")
    out |= resources(
        "AWS::ApiGateway::Authorizer", authorizers, f"{name}Auth", RestApiId=ref, Type="COGNITO_USER_POOLS"
    )
    out |= resources("AWS::ApiGateway::Stage", stages, f"{name}Stage", RestApiId=ref)
    return out


def template(**sections: dict[str, Any]) -> dict[str, Any]:
    return {"Resources": {}, **{name.capitalize(): value for name, value in sections.items()}}


def only(problems: list[str], needle: str) -> str:
    found = [p for p in problems if needle in p]
    assert len(found) == 1, f"expected one problem with {needle!r}: {problems}"
    return found[0]


def test_a_deployment_inside_every_limit_has_no_problem() -> None:
    """Every count exactly at its limit passes: the limits are maxima, not counts to stay under."""
    shared = template(
        resources={
            **resources("AWS::ApiGateway::UsagePlan", 300, "Plan"),
            **resources("AWS::ApiGateway::ApiKey", 10, "Key"),
            **resources(
                "AWS::ApiGateway::UsagePlanKey", 10, "PlanKey", KeyId={"Ref": "Key0"}, KeyType="API_KEY"
            ),
            "Scopes": {
                "Type": "AWS::Cognito::UserPoolResourceServer",
                "Properties": {
                    "Scopes": [{"ScopeName": f"m{i}", "ScopeDescription": "m"} for i in range(100)]
                },
            },
            **resources("AWS::SNS::Topic", 500 - 300 - 10 - 10 - 1, "Topic"),
        },
        outputs={f"O{i}": {"Value": "v"} for i in range(200)},
        parameters={f"P{i}": {"Type": "String"} for i in range(200)},
        mappings={f"M{i}": {"k": {"v": "x"}} for i in range(200)},
    )
    shared["Resources"]["X" * 255] = {"Type": "AWS::SNS::Topic"}
    del shared["Resources"]["Topic0"]
    model = template(resources=rest_api(children=299, authorizers=10, stages=10))
    assert len(shared["Resources"]) == 500
    assert check_assembly({"acme-dev-shared": shared, "acme-dev-model-a": model}) == []


def test_501_resources_from_a_plain_cdk_app(tmp_path: Path) -> None:
    """A cx_api.CloudAssembly and its cdk.out directory read the same; CDK's own resource check is off
    here (context 0), so this is the kit's check that speaks."""
    app = cdk.App(outdir=str(tmp_path), context={"@aws-cdk/core:stackResourceLimit": 0})
    stack = cdk.Stack(
        app,
        "Topics",
        stack_name="acme-dev-model-big",
        synthesizer=cdk.DefaultStackSynthesizer(generate_bootstrap_version_rule=False),
    )
    for i in range(501):
        sns.Topic(stack, f"T{i}")
    assembly = app.synth()
    counted = len(assembly.get_stack_by_name("acme-dev-model-big").template["Resources"])
    assert counted >= 501  # the topics, and CDK's metadata resource where the app adds one
    for source in (assembly, tmp_path, str(tmp_path)):
        problem = only(check_assembly(source), "resources per template")
        assert problem.startswith("stack acme-dev-model-big: ")
        assert f"{counted:,} resources" in problem
        assert "CloudFormation's limit of 500 resources per template" in problem
        assert CFN_PAGE in problem
        assert "another stack" in problem


@pytest.mark.parametrize(
    ("section", "limit", "label"),
    [
        ("outputs", 200, "outputs per template"),
        ("parameters", 200, "parameters per template"),
        ("mappings", 200, "mappings per template"),
    ],
)
def test_each_template_section_has_its_limit(section: str, limit: int, label: str) -> None:
    values = {"outputs": {"Value": "v"}, "parameters": {"Type": "String"}, "mappings": {"k": {"v": "x"}}}
    over = template(**{section: {f"X{i}": values[section] for i in range(limit + 1)}})
    problem = only(check_assembly({"acme-dev-shared": over}), label)
    assert (
        f"stack acme-dev-shared: {limit + 1:,} {section}, over CloudFormation's limit of {limit:,} {label}"
        in problem
    )
    assert CFN_PAGE in problem


def test_template_size_is_the_file_in_cdk_out(tmp_path: Path) -> None:
    """CDK uploads the template file as an asset: its bytes on disk are what S3 holds, whitespace too."""
    body = template(
        resources={"T": {"Type": "AWS::SNS::Topic", "Properties": {"DisplayName": "x" * 900_000}}}
    )
    (tmp_path / "acme-dev-shared.template.json").write_text(json.dumps(body, indent=60_000))
    manifest = {
        "version": "48.0.0",
        "artifacts": {
            "SharedStack": {
                "type": "aws:cloudformation:stack",
                "properties": {
                    "templateFile": "acme-dev-shared.template.json",
                    "stackName": "acme-dev-shared",
                },
            }
        },
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    size = (tmp_path / "acme-dev-shared.template.json").stat().st_size
    assert size > 1_000_000 > len(json.dumps(body))
    problem = only(check_assembly(tmp_path), "bytes of template body")
    assert f"stack acme-dev-shared: a template of {size:,} bytes" in problem
    assert "limit of 1,000,000 bytes" in problem
    assert check_assembly({"acme-dev-shared": body}) == []  # the same template, written compactly


def test_a_logical_id_over_255_characters() -> None:
    long_id = "Model" + "x" * 251
    problem = only(
        check_assembly({"acme-dev-model-a": template(resources={long_id: {"Type": "AWS::SNS::Topic"}})}),
        "logical id",
    )
    assert "stack acme-dev-model-a: a logical id of 256 characters (Modelxxx" in problem
    assert "limit of 255 characters" in problem
    assert "Shorten" in problem


def test_300_resources_under_a_rest_api_root_is_301() -> None:
    """The root resource counts: 299 children fit, 300 do not."""
    assert check_assembly({"acme-dev-model-a": template(resources=rest_api(children=299))}) == []
    problem = only(
        check_assembly({"acme-dev-model-a": template(resources=rest_api(children=300))}), "per REST API"
    )
    assert problem.startswith("REST API Api in stack acme-dev-model-a: 301 resources, the root included")
    assert "API Gateway's limit of 300 resources per REST API" in problem
    assert APIGW_PAGE in problem
    assert "limits.resources_per_api" in problem


def test_an_inline_openapi_body_counts_its_paths_and_their_parents() -> None:
    paths: dict[str, Any] = {
        f"/models/m{i}/{action}": {} for i in range(100) for action in ("predict", "explain")
    }
    body = {
        "Api": {
            "Type": "AWS::ApiGateway::RestApi",
            "Properties": {"Body": {"openapi": "3.0.1", "paths": paths}},
        }
    }
    counted = {u.limit: u.count for u in usage({"s": template(resources=body)}) if u.stack == "s"}
    assert counted["resources_per_api"] == 1 + 1 + 100 + 200  # root, /models, /models/mN, the actions
    assert "per REST API" in " ".join(check_assembly({"s": template(resources=body)}))


def test_resources_of_an_imported_api_add_up_across_stacks() -> None:
    imported = {"Fn::ImportValue": "acme-dev-shared:ApiId"}
    one = template(resources=resources("AWS::ApiGateway::Resource", 150, "A", RestApiId=imported))
    two = template(resources=resources("AWS::ApiGateway::Resource", 150, "B", RestApiId=imported))
    problem = only(check_assembly({"acme-dev-model-a": one, "acme-dev-model-b": two}), "per REST API")
    assert "REST API (imported acme-dev-shared:ApiId) in stack acme-dev-model-a: 301 resources" in problem


def test_authorizers_and_stages_per_api() -> None:
    api = template(resources=rest_api(authorizers=11, stages=10))
    api["Resources"]["Deploy"] = {
        "Type": "AWS::ApiGateway::Deployment",
        "Properties": {"RestApiId": {"Ref": "Api"}, "StageName": "legacy"},  # creates an 11th stage
    }
    problems = check_assembly({"acme-dev-model-a": api})
    assert (
        "REST API Api in stack acme-dev-model-a: 11 authorizers, over API Gateway's limit of 10 authorizers per REST API"
        in only(problems, "authorizers")
    )
    assert (
        "REST API Api in stack acme-dev-model-a: 11 stages, over API Gateway's limit of 10 stages per REST API"
        in only(problems, "stages")
    )


def test_regional_apis_are_counted_over_the_whole_assembly() -> None:
    stacks = {f"acme-dev-model-m{i}": template(resources=rest_api(f"Api{i}")) for i in range(601)}
    problem = only(check_assembly(stacks), "regional APIs")
    assert problem.startswith(
        "this synth's stacks together (other stacks in the account and Region count too): 601 regional REST APIs"
    )
    assert "limit of 600 regional APIs per Region (not adjustable)" in problem
    assert "does not raise" in problem
    assert check_assembly(dict(list(stacks.items())[:600])) == []


def test_an_api_without_endpoint_configuration_is_edge_optimized() -> None:
    """CloudFormation's default endpoint type is EDGE, whose quota is 120 per Region."""
    stacks = {f"s{i}": template(resources=rest_api(f"Api{i}", endpoint="")) for i in range(121)}
    problem = only(check_assembly(stacks), "edge-optimized")
    assert (
        "121 edge-optimized REST APIs, over API Gateway's limit of 120 edge-optimized APIs per Region"
        in problem
    )
    assert "REGIONAL" in problem


def test_usage_plans_and_api_keys_per_region() -> None:
    plans = {
        f"s{i}": template(resources=resources("AWS::ApiGateway::UsagePlan", 101, "Plan")) for i in range(3)
    }
    assert "303 usage plans, over API Gateway's limit of 300 usage plans per account per Region" in only(
        check_assembly(plans), "usage plans per account"
    )
    keys = {f"s{i}": template(resources=resources("AWS::ApiGateway::ApiKey", 477, "Key")) for i in range(21)}
    assert "10,017 API keys, over API Gateway's limit of 10,000 API keys per account per Region" in only(
        check_assembly(keys), "API keys per account"
    )


def test_usage_plans_per_api_key() -> None:
    body = {
        "Key": {"Type": "AWS::ApiGateway::ApiKey"},
        **resources("AWS::ApiGateway::UsagePlan", 11, "Plan"),
        **{
            f"PlanKey{i}": {
                "Type": "AWS::ApiGateway::UsagePlanKey",
                "Properties": {
                    "KeyId": {"Ref": "Key"},
                    "KeyType": "API_KEY",
                    "UsagePlanId": {"Ref": f"Plan{i}"},
                },
            }
            for i in range(11)
        },
    }
    problem = only(check_assembly({"acme-dev-access": template(resources=body)}), "per API key")
    assert problem.startswith("API key Key in stack acme-dev-access: 11 usage plans on one API key")
    assert "limit of 10 usage plans per API key" in problem


def test_custom_scopes_per_resource_server() -> None:
    server = {
        "Server": {
            "Type": "AWS::Cognito::UserPoolResourceServer",
            "Properties": {"Scopes": [{"ScopeName": f"m{i}", "ScopeDescription": "m"} for i in range(101)]},
        }
    }
    problem = only(check_assembly({"acme-dev-shared": template(resources=server)}), "scopes")
    assert problem.startswith("resource server Server in stack acme-dev-shared: 101 custom scopes")
    assert "Amazon Cognito's limit of 100 custom scopes per resource server" in problem
    assert "API_CreateResourceServer.html" in problem


def test_one_export_name_in_two_stacks() -> None:
    output = {"Value": "v", "Export": {"Name": "acme-dev-shared:TopicArn"}}
    problems = check_assembly({"a": template(outputs={"O": output}), "b": template(outputs={"P": output})})
    assert problems == [
        "export 'acme-dev-shared:TopicArn' is declared by 2 outputs: a (O), b (P); CloudFormation requires export "
        'names unique per account and Region ("CloudFormation template Outputs syntax", '
        "https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/outputs-section-structure.html). "
        "Rename all but one of them."
    ]


def test_stacks_of_a_nested_assembly_are_read(tmp_path: Path) -> None:
    """A CDK Stage writes its stacks into a nested assembly, named in the top manifest."""
    nested = tmp_path / "assembly-Prod"
    nested.mkdir()
    over = template(resources=resources("AWS::SNS::Topic", 501))
    (nested / "big.template.json").write_text(json.dumps(over))
    (nested / "manifest.json").write_text(
        json.dumps(
            {
                "artifacts": {
                    "ProdBig": {
                        "type": "aws:cloudformation:stack",
                        "properties": {"templateFile": "big.template.json", "stackName": "prod-big"},
                    }
                }
            }
        )
    )
    (tmp_path / "manifest.json").write_text(
        json.dumps(
            {
                "artifacts": {
                    "assembly-Prod": {
                        "type": "cdk:cloud-assembly",
                        "properties": {"directoryName": "assembly-Prod"},
                    }
                }
            }
        )
    )
    assert only(check_assembly(tmp_path), "resources per template").startswith(
        "stack prod-big: 501 resources"
    )


def test_an_adjustable_limit_can_be_raised_and_a_fixed_one_cannot() -> None:
    api = {"acme-dev-model-a": template(resources=rest_api(children=400))}
    assert check_assembly(api, Limits(resources_per_api=600)) == []
    assert check_assembly(api, Limits().override({"resources_per_api": 600})) == []
    assert "limit of 300 resources per REST API" in only(check_assembly(api), "per REST API")
    with pytest.raises(
        LimitsError, match=r"limits\.regional_apis_per_region: 700 is over AWS's 600 .*does not raise"
    ):
        Limits(regional_apis_per_region=700)
    with pytest.raises(LimitsError, match=r"limits\.resources_per_stack: no such limit"):
        Limits().override({"resources_per_stack": 600})
    with pytest.raises(LimitsError, match="not a positive whole number"):
        Limits(stages_per_api=0)
    lowered = Limits(resources_per_template=400)  # lowering a fixed one is allowed: a margin of one's own
    assert "limit of 400 resources per template" in only(
        check_assembly({"s": template(resources=resources("AWS::SNS::Topic", 401))}, lowered), "per template"
    )


def test_usage_gives_the_headroom_under_every_limit_fullest_first() -> None:
    stacks = {
        "acme-dev-shared": template(resources=resources("AWS::SNS::Topic", 250)),
        "acme-dev-model-a": template(resources=rest_api(children=149, authorizers=1)),
    }
    found = usage(stacks)
    assert found == sorted(found, key=lambda u: -u.fraction)
    by_key = {(u.stack, u.limit, u.subject): u for u in found}
    shared = by_key[("acme-dev-shared", "resources_per_template", "")]
    assert (shared.count, shared.value, shared.fraction) == (250, 500, 0.5)
    api = by_key[("acme-dev-model-a", "resources_per_api", "Api")]
    assert (api.count, api.value, api.fraction) == (150, 300, 0.5)
    assert by_key[(ASSEMBLY, "regional_apis_per_region", "")].count == 1
    per_template = {limit for limit in QUOTAS if limit.endswith("_per_template")} | {
        "template_bytes",
        "logical_id_chars",
    }
    assert {u.limit for u in found if u.stack == "acme-dev-shared"} == per_template
    assert {u.limit for u in found if u.stack == ASSEMBLY} == {
        limit for limit in QUOTAS if limit.endswith("_per_region")
    }


def test_every_quota_cites_its_page_and_says_what_to_do() -> None:
    assert set(QUOTAS) == {f.name for f in Limits.__dataclass_fields__.values()}
    for name, quota in QUOTAS.items():
        title, url = quota.doc
        assert title, name
        assert url.startswith("https://docs.aws.amazon.com/"), name
        assert quota.advice.endswith("."), name
        assert ("limits." + name in quota.advice) == quota.adjustable, name
